"""pyupbit, Upbit's most used Python client, against the simulator with only its URLs
redirected (every ``https://api.upbit.com`` and ``wss://api.upbit.com`` it builds): quotation
calls, balances, limit/market buy and sell, get_order and cancel_order (GET with a form body,
DELETE with a JSON body, no query string) and its WebSocketManager (binary frames).

pyupbit is synchronous (requests) and the simulator runs on the test's event loop, so each call
goes through ``asyncio.to_thread``.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import time
import types
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("pyupbit")
import pyupbit
import pyupbit.request_api
import pyupbit.websocket_api
import requests
import websockets

from tests.integration.simkit import ACCESS, SECRET, running_sim, sim_in_thread

UPBIT_REST, UPBIT_WS = "https://api.upbit.com", "wss://api.upbit.com/websocket/v1"


@pytest.fixture
def redirect(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """Point pyupbit's REST and WebSocket URLs at whatever ``target`` holds; nothing else."""
    target: dict[str, str] = {}

    def url(u: str) -> str:
        return u.replace(UPBIT_REST, target["rest"]) if u.startswith(UPBIT_REST) else u

    shim = types.SimpleNamespace(
        get=lambda u, **kw: requests.get(url(u), timeout=10, **kw),
        post=lambda u, **kw: requests.post(url(u), timeout=10, **kw),
        delete=lambda u, **kw: requests.delete(url(u), timeout=10, **kw))
    monkeypatch.setattr(pyupbit.request_api, "requests", shim)
    ws_shim = types.SimpleNamespace(
        connect=lambda uri, **kw: websockets.connect(uri.replace(UPBIT_WS, target["ws"]), **kw),
        ConnectionClosed=websockets.ConnectionClosed)
    monkeypatch.setattr(pyupbit.websocket_api, "websockets", ws_shim)
    yield target


async def call(fn: Any, *args: Any) -> Any:
    return await asyncio.to_thread(fn, *args)


async def test_pyupbit_quotation_balances_orders(redirect: dict[str, str]) -> None:
    async with running_sim() as (server, ep):
        redirect.update(rest=ep["upbit"].rest, ws=ep["upbit"].ws)
        assert {"KRW-BTC", "KRW-ETH", "KRW-XRP"} <= set(await call(pyupbit.get_tickers, "KRW"))
        price = await call(pyupbit.get_current_price, "KRW-BTC")
        assert price > 0
        prices = await call(pyupbit.get_current_price, ["KRW-BTC", "KRW-ETH"])
        assert set(prices) == {"KRW-BTC", "KRW-ETH"}
        book = await call(pyupbit.get_orderbook, "KRW-BTC")
        units = book["orderbook_units"]
        assert units[0]["bid_price"] < units[0]["ask_price"]

        up = pyupbit.Upbit(ACCESS, SECRET)
        balances = await call(up.get_balances)
        assert {b["currency"] for b in balances} >= {"KRW", "BTC"}
        assert await call(up.get_balance, "KRW") == 50_000_000
        assert await call(up.get_balance, "KRW-BTC") == 1
        chance = await call(up.get_chance, "KRW-BTC")  # GET with a form body
        assert chance["market"]["id"] == "KRW-BTC"

        bid = int(units[0]["bid_price"] * 0.95) // 1000 * 1000
        placed = await call(up.buy_limit_order, "KRW-BTC", bid, 0.001)
        assert placed["state"] == "wait", placed
        got = await call(up.get_order, placed["uuid"])  # GET /v1/order, form body
        assert got["uuid"] == placed["uuid"] and got["state"] == "wait", got
        listed = await call(up.get_order, "KRW-BTC")  # the old GET /v1/orders list
        assert placed["uuid"] in [o["uuid"] for o in listed]
        cancelled = await call(up.cancel_order, placed["uuid"])  # DELETE, JSON body
        assert cancelled["uuid"] == placed["uuid"], cancelled
        assert (await call(up.get_individual_order, placed["uuid"]))["state"] == "cancel"

        ask = int(units[0]["ask_price"] * 1.05) // 1000 * 1000
        sell = await call(up.sell_limit_order, "KRW-BTC", ask, 0.001)
        assert sell["state"] == "wait", sell
        await call(up.cancel_order, sell["uuid"])
        buy = await call(up.buy_market_order, "KRW-XRP", 10_000)
        assert buy["ord_type"] == "price", buy
        sold = await call(up.sell_market_order, "KRW-XRP", 3)  # ~9,000 KRW: over the minimum
        assert sold["ord_type"] == "market", sold
        orders = server.venues["upbit"].exchange.orders
        assert orders[buy["uuid"]].state in ("done", "cancel") and orders[buy["uuid"]].fills
        assert orders[sold["uuid"]].state == "done"


def test_pyupbit_websocket_manager(redirect: dict[str, str]) -> None:
    """WebSocketManager runs in its own (forked) process; binary frames decode as JSON. pyupbit
    asks ``isOnlyRealtime`` in camelCase, which Upbit does not document (snake_case only): the
    simulator ignores it, so the first frame is a SNAPSHOT, then REALTIME."""
    if mp.get_start_method() != "fork":
        pytest.skip("the redirect reaches WebSocketManager's process only by fork")
    with sim_in_thread() as (_, ep):
        redirect.update(rest=ep["upbit"].rest, ws=ep["upbit"].ws)
        wm = pyupbit.WebSocketManager("orderbook", ["KRW-BTC", "KRW-ETH"])
        wm.alive = True  # what wm.get() does on its first call ...
        wm.start()
        queue = wm._WebSocketManager__q  # ... then read its queue with a deadline, never hang
        try:
            seen: dict[str, set[str]] = {}
            deadline = time.monotonic() + 15
            while len(seen) < 2 or not all(len(v) == 2 for v in seen.values()):
                assert time.monotonic() < deadline, seen
                frame = queue.get(timeout=10)
                assert frame != "ConnectionClosedError"
                seen.setdefault(frame["code"], set()).add(frame["stream_type"])
        finally:
            wm.terminate()
            wm.join(5)
