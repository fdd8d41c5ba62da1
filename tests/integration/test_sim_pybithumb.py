"""pybithumb (Bithumb's legacy v1.2.0 API client) against the simulator with only its base URL
(``BithumbHttp.base_url``) and its pubwss URL redirected: every public call (ticker, order book,
transactions, candlesticks), balance, trading fee, limit place / outstanding / detail / cancel,
market buy and sell by quantity, and its WebSocketManager for ticker (with the tickTypes it
asks), orderbookdepth and transaction."""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import time
import types
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("pybithumb")
import pybithumb
import pybithumb.core
import pybithumb.websocket
import websockets

from tests.integration.simkit import ACCESS, SECRET, sim_in_thread

PUBWSS = "wss://pubwss.bithumb.com/pub/ws"


@pytest.fixture
def bithumb_sim(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    with sim_in_thread() as (server, ep):
        rest = ep["bithumb"].rest
        monkeypatch.setattr(pybithumb.core.BithumbHttp, "base_url", property(lambda self: rest))
        pub = rest.replace("http://", "ws://") + "/pub/ws"
        monkeypatch.setattr(pybithumb.websocket, "websockets", types.SimpleNamespace(
            connect=lambda uri, **kw: websockets.connect(uri.replace(PUBWSS, pub), **kw)))
        yield server


def test_pybithumb_public_calls(bithumb_sim: Any) -> None:
    assert {"BTC", "ETH", "XRP"} <= set(pybithumb.get_tickers())
    assert pybithumb.get_current_price("BTC") > 0
    every = pybithumb.get_current_price("ALL")
    assert float(every["ETH"]["closing_price"]) > 0
    _, h, low, c = pybithumb.get_ohlc("BTC")["BTC"]
    assert low <= c <= h
    assert len(pybithumb.get_market_detail("BTC")) == 5
    book = pybithumb.get_orderbook("BTC", limit=10)
    assert len(book["bids"]) == 10 and book["bids"][0]["price"] < book["asks"][0]["price"]
    history = pybithumb.get_transaction_history("BTC", limit=5)
    assert history is not None and all(row["price"] > 0 for row in history)
    candles = pybithumb.get_candlestick("BTC", chart_intervals="1m")
    assert candles is not None and len(candles) >= 1 and (candles["high"] >= candles["low"]).all()


def test_pybithumb_private_calls(bithumb_sim: Any) -> None:
    bt = pybithumb.Bithumb(ACCESS, SECRET)
    assert bt.get_trading_fee("BTC") == pytest.approx(bithumb_sim.venues["bithumb"].exchange.fee_rate)
    coin, coin_used, krw, krw_used = bt.get_balance("BTC")
    assert (coin, coin_used, krw, krw_used) == (1, 0, 50_000_000, 0)

    bid = int(pybithumb.get_orderbook("BTC")["bids"][0]["price"] * 0.95) // 1000 * 1000
    desc = bt.buy_limit_order("BTC", bid, 0.001)
    assert isinstance(desc, tuple) and desc[0] == "bid", desc
    assert float(bt.get_outstanding_order(desc)) == pytest.approx(0.001)
    detail = bt.get_order_completed(desc)  # v1.2.0 data is an object: pybithumb returns it whole
    assert detail["data"]["order_status"] == "Pending", detail
    assert bt.cancel_order(desc) is True
    assert bt.get_outstanding_order(desc) is None  # 5600: nothing outstanding

    bought = bt.buy_market_order("XRP", 5)
    assert isinstance(bought, tuple), bought
    sold = bt.sell_market_order("XRP", 5)
    assert isinstance(sold, tuple), sold
    orders = bithumb_sim.venues["bithumb"].exchange.orders
    assert orders[bought[2]].fills and orders[sold[2]].state == "done"


@pytest.mark.parametrize("kind,ticktype", [("ticker", ["30M", "1H"]), ("orderbookdepth", None),
                                           ("transaction", None)])
def test_pybithumb_websocket_manager(bithumb_sim: Any, kind: str, ticktype: list[str] | None) -> None:
    if mp.get_start_method() != "fork":
        pytest.skip("the redirect reaches WebSocketManager's process only by fork")
    # pybithumb's process calls asyncio.get_event_loop(), which a plain script's main thread
    # answers; under pytest-asyncio the main thread has none set, so give the fork one.
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    wm = pybithumb.WebSocketManager(kind, ["BTC_KRW", "ETH_KRW"], ticktype=ticktype)
    wm.alive = True  # what wm.get() does on its first call ...
    wm.start()
    queue = wm._WebSocketManager__q  # ... then read its queue with a deadline, never hang
    try:
        ticks: list[str | None] = list(ticktype) if ticktype else [None]
        want = {(s, t) for s in ("BTC_KRW", "ETH_KRW") for t in ticks}
        seen: set[tuple[str, str | None]] = set()
        deadline = time.monotonic() + 20
        while not want <= seen:
            assert time.monotonic() < deadline, (want, seen)
            frame = queue.get(timeout=15)
            assert frame["type"] == kind, frame
            content = frame["content"]
            if kind == "ticker":
                seen.add((content["symbol"], content["tickType"]))
            else:
                seen.update((row["symbol"], None) for row in content["list"])
    finally:
        wm.terminate()
        wm.join(5)
        asyncio.set_event_loop(None)
        loop.close()
