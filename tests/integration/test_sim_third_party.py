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


TEN = ["KRW-BTC", "KRW-ETH", "KRW-XRP", "KRW-SOL", "KRW-DOGE", "KRW-ADA", "KRW-TRX", "KRW-LINK",
       "KRW-AVAX", "KRW-DOT"]


async def test_ccxt_pro_upbit_streams_ten_markets_on_one_connection() -> None:
    """ccxt.pro's Upbit resends ``[{ticket}, {orderbook, [A]}, {orderbook, [B]}, …]`` on every
    new watch: the items of one type are merged, so all ten keep streaming."""
    import asyncio
    async with running_sim(markets=TEN, rate_limits={"enabled": False}) as (server, ep):
        ex = upbit(ep["upbit"].rest, ep["upbit"].ws, pro=True)
        symbols = [m.split("-")[1] + "/KRW" for m in TEN]
        try:
            for symbol in symbols:  # subscribe one by one, as a user adding markets does
                await asyncio.wait_for(ex.watch_order_book(symbol), 5)
            for _ in range(2):  # then every one of them still gets fresh books
                books = await asyncio.wait_for(
                    asyncio.gather(*(ex.watch_order_book(s) for s in symbols)), 5)
                assert all(b["bids"] and b["asks"] for b in books)
            assert len(server.venues["upbit"].sockets) == 1
        finally:
            await ex.close()


async def test_bithumb_ws_merges_items_and_a_new_request_replaces() -> None:
    """What a Bithumb client must do to watch many markets (exchanges.md §2.5; ccxt.pro's
    Bithumb notes the venue replaces the socket's whole subscription list on every request):
    send ONE request carrying every code (one item with all codes, or several items of the
    type, which are merged) and resend the full list whenever it changes. ccxt.pro's Bithumb
    ``watch_order_book`` sends a one-code request per symbol, so on one connection only the
    last symbol streams — use one connection per market there, or a client that sends the
    union (karb's ``bithumb/ws.py`` does)."""
    import json

    import aiohttp
    async with running_sim(markets=TEN, rate_limits={"enabled": False}) as (_, ep), \
            aiohttp.ClientSession() as s:
        ws = await s.ws_connect(ep["bithumb"].ws)

        async def codes_seen(frames: int) -> set[str]:
            seen = set()
            for _ in range(frames):
                seen.add(json.loads((await ws.receive(timeout=5)).data)["code"])
            return seen

        items = [{"type": "orderbook", "codes": [m]} for m in TEN[:5]]
        items.append({"type": "orderbook", "codes": TEN[5:]})
        await ws.send_str(json.dumps([{"ticket": "t"}, *items]))
        assert await codes_seen(40) == set(TEN)
        await ws.send_str(json.dumps([{"ticket": "t"}, {"type": "orderbook", "codes": ["KRW-ETH"]}]))
        for _ in range(500):  # frames queued under the old subscription, up to the new snapshot
            frame = json.loads((await ws.receive(timeout=5)).data)
            if frame["stream_type"] == "SNAPSHOT":
                break
        assert frame["code"] == "KRW-ETH" and frame["stream_type"] == "SNAPSHOT"
        assert await codes_seen(10) == {"KRW-ETH"}
        await ws.close()
