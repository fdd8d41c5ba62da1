"""A third-party client, ccxt, with only its base URLs pointed at the simulator, works unchanged:
markets, ticker, order book, balances, limit order create / fetch / cancel, the WebSocket order
book, and a bad key raises ccxt's own AuthenticationError."""

from __future__ import annotations

from typing import Any

import pytest

ccxt = pytest.importorskip("ccxt.async_support")
ccxtpro = pytest.importorskip("ccxt.pro")

from tests.integration.simkit import ACCESS, SECRET, running_sim  # noqa: E402


def upbit(rest: str, ws: str, key: str = ACCESS, pro: bool = False) -> Any:
    ex = (ccxtpro if pro else ccxt).upbit({"apiKey": key, "secret": SECRET})
    ex.urls["api"] = {"public": rest, "private": rest, "ws": ws}
    return ex


def bithumb(rest: str, ws: str, generation: int = 2, key: str = ACCESS, pro: bool = False) -> Any:
    ex = (ccxtpro if pro else ccxt).bithumb({"apiKey": key, "secret": SECRET,
                                             "options": {"generation": generation}})
    ex.urls["api"]["public"] = ex.urls["api"]["private"] = rest
    if pro:
        pub = rest.replace("http", "ws") + "/pub/ws"
        ex.urls["api"]["ws"] = {"public": pub, "publicV2": ws, "publicGen2": ws,
                                "privateV2": ws, "privateGen2": ws}
    return ex


async def round_trip(ex: Any, tick: int = 1000) -> None:
    markets = await ex.load_markets()
    assert {"BTC/KRW", "ETH/KRW", "XRP/KRW"} <= set(markets)
    assert (await ex.fetch_ticker("BTC/KRW"))["last"] > 0
    book = await ex.fetch_order_book("BTC/KRW")
    assert book["bids"][0][0] < book["asks"][0][0]
    balance = await ex.fetch_balance()
    assert balance["total"]["KRW"] == 50_000_000 and balance["total"]["BTC"] == 1
    price = int(book["bids"][0][0] * 0.98) // tick * tick
    order = await ex.create_order("BTC/KRW", "limit", "buy", 0.001, price)
    fetched = await ex.fetch_order(order["id"], "BTC/KRW", {"side": "buy"})
    assert fetched["status"] == "open" and fetched["amount"] == 0.001
    await ex.cancel_order(order["id"], "BTC/KRW", {"side": "buy"})
    assert (await ex.fetch_order(order["id"], "BTC/KRW", {"side": "buy"}))["status"] == "canceled"


async def test_ccxt_upbit() -> None:
    async with running_sim(rate_limits={"enabled": False}) as (_, ep):
        ex = upbit(ep["upbit"].rest, ep["upbit"].ws)
        try:
            await round_trip(ex)
        finally:
            await ex.close()
        bad = upbit(ep["upbit"].rest, ep["upbit"].ws, key="not-a-key")
        try:
            with pytest.raises(ccxt.AuthenticationError):
                await bad.fetch_balance()
        finally:
            await bad.close()


@pytest.mark.parametrize("generation", [2, 1], ids=["current-api", "legacy-api"])
async def test_ccxt_bithumb(generation: int) -> None:
    async with running_sim(rate_limits={"enabled": False}) as (_, ep):
        ex = bithumb(ep["bithumb"].rest, ep["bithumb"].ws, generation)
        try:
            await round_trip(ex)
        finally:
            await ex.close()
        if generation == 1:  # ccxt maps only the legacy API's auth errors to AuthenticationError
            bad = bithumb(ep["bithumb"].rest, ep["bithumb"].ws, generation, key="not-a-key")
            try:
                with pytest.raises(ccxt.AuthenticationError):
                    await bad.fetch_balance()
            finally:
                await bad.close()


async def test_ccxt_pro_order_book_streams() -> None:
    async with running_sim() as (server, ep):
        for ex in (upbit(ep["upbit"].rest, ep["upbit"].ws, pro=True),
                   bithumb(ep["bithumb"].rest, ep["bithumb"].ws, pro=True)):
            try:
                seen = []
                for _ in range(3):
                    book = await ex.watch_order_book("BTC/KRW")
                    assert book["bids"][0][0] < book["asks"][0][0]
                    seen.append(book["nonce"] if book.get("nonce") else book["timestamp"])
                assert len(book["bids"]) >= 15
            finally:
                await ex.close()
