"""karb's venue clients against the simulator's real HTTP and WebSocket servers."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from typing import Any

import aiohttp
import pytest

from karb.exchanges.bithumb.legacy import LegacyBookProtocol
from karb.exchanges.bithumb.rest import BithumbClient
from karb.exchanges.bithumb.ws import BithumbBookProtocol
from karb.exchanges.credentials import Credentials, Secret
from karb.exchanges.errors import (AuthError, InsufficientFunds, InvalidOrder, OrderNotFound,
                                   OutcomeUnknown)
from karb.exchanges.types import OrderBook, OrderState
from karb.exchanges.upbit.rest import UpbitClient
from karb.exchanges.upbit.ws import UpbitBookProtocol
from karb.exchanges.v1api.client import V1Client
from karb.exchanges.wsstream import BookProtocol, BookStream
from karb.sim.server import Endpoint, SimServer
from tests.integration.simkit import running_sim

CREDS = Credentials(Secret("sim-access"), Secret("sim-secret"))
CLIENTS: dict[str, Callable[[str, Credentials], V1Client]] = {"upbit": UpbitClient,
                                                              "bithumb": BithumbClient}


async def until(check: Callable[[], object], timeout: float = 5.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


@asynccontextmanager
async def client_for(venue: str, **sim: Any
                     ) -> AsyncIterator[tuple[V1Client, SimServer, dict[str, Endpoint]]]:
    async with running_sim(**sim) as (server, ep):
        client = CLIENTS[venue](ep[venue].rest, CREDS)
        try:
            yield client, server, ep
        finally:
            await client.close()


@pytest.mark.parametrize("venue", ["upbit", "bithumb"])
async def test_every_call(venue: str) -> None:
    async with client_for(venue, rate_limits={"enabled": False}) as (c, server, _):
        assert {m.market for m in await c.markets()} == {"KRW-BTC", "KRW-ETH", "KRW-XRP"}
        (t,) = await c.ticker(["KRW-ETH"])
        assert t.market == "KRW-ETH" and t.last > 0 and t.ts_event > 10**18
        book = await c.orderbook("KRW-XRP")
        assert book.venue == venue and book.bids[0][0] < book.asks[0][0] and len(book.bids) == 30
        start = await c.balances()
        assert start["KRW"].free == 50_000_000
        # a crossing IOC limit buy: fills at book prices
        ask = server.model.book(venue, "KRW-XRP").asks[0]
        order = await c.place_limit_order("KRW-XRP", "buy", ask[0] * 1.0004, 5.0, f"{venue}-ioc", "ioc")
        done = await c.get_order(client_id=f"{venue}-ioc")
        assert done.order_id == order.order_id and done.state.final
        assert done.executed_volume == pytest.approx(5.0) and done.fills
        after = await c.balances()
        assert after["XRP"].free == pytest.approx(start["XRP"].free + 5.0)
        assert after["KRW"].free == pytest.approx(start["KRW"].free - done.executed_funds - done.paid_fee)
        # a resting limit order: open, listed, cancelled by client id
        bid = server.model.book(venue, "KRW-XRP").bids[0][0]
        rest = await c.place_limit_order("KRW-XRP", "buy", bid * 0.9, 5.0, f"{venue}-rest")
        assert [o.client_id for o in await c.open_orders("KRW-XRP")] == [f"{venue}-rest"]
        cancelled = await c.cancel_order(client_id=f"{venue}-rest")
        assert (await c.get_order(order_id=rest.order_id)).state == OrderState.CANCELLED
        assert cancelled.order_id == rest.order_id
        # market orders: buy with KRW, sell a volume
        buy = await c.place_market_order("KRW-ETH", "buy", 10_000.0, f"{venue}-mb")
        sell = await c.place_market_order("KRW-ETH", "sell", 0.002, f"{venue}-ms")
        for o in (buy, sell):
            final = await c.get_order(order_id=o.order_id)
            assert final.state.final and final.executed_volume > 0


@pytest.mark.parametrize("venue", ["upbit", "bithumb"])
async def test_typed_errors(venue: str) -> None:
    async with client_for(venue, rate_limits={"enabled": False}) as (c, server, ep):
        with pytest.raises(InsufficientFunds) as funds:
            await c.place_limit_order("KRW-BTC", "buy", 100_000_000, 10.0, f"{venue}-big")
        assert funds.value.name == "insufficient_funds_bid" and funds.value.status == 400
        with pytest.raises(InvalidOrder, match="under the 5000 KRW minimum"):
            await c.place_limit_order("KRW-XRP", "buy", 1000, 1.0, f"{venue}-small")
        with pytest.raises(OrderNotFound):
            await c.get_order(client_id="never-sent")
        with pytest.raises(InvalidOrder):  # client ids are unique forever, failed ones too
            await c.place_limit_order("KRW-BTC", "buy", 1_000_000, 0.01, f"{venue}-big")
        for bad in (Credentials(Secret("nobody"), Secret("sim-secret")),
                    Credentials(Secret("sim-access"), Secret("wrong"))):
            wrong = CLIENTS[venue](ep[venue].rest, bad)
            try:
                with pytest.raises(AuthError) as auth:
                    await wrong.balances()
                assert auth.value.status == 401
            finally:
                await wrong.close()


async def test_a_429_pauses_and_retries_a_safe_request() -> None:
    async with client_for("upbit") as (c, _, ep), aiohttp.ClientSession() as s:
        await s.post(f"{ep['upbit'].rest}/_sim/faults/fail_next", json={"count": 1, "status": 429})
        assert len(await c.markets()) == 3
        assert c.transport.limiter.throttled_429 == 1


async def test_hammering_the_simulator_never_meets_a_429_or_418() -> None:
    async with client_for("upbit") as (c, server, _):
        # 25 order-book requests as fast as the caller can ask: the limiter paces them
        results = await asyncio.gather(*(c.orderbook("KRW-BTC") for _ in range(25)))
        assert len(results) == 25 and c.transport.limiter.throttled_429 == 0
        assert c.transport.limiter.waits > 0


@pytest.mark.parametrize("venue", ["upbit", "bithumb"])
@pytest.mark.parametrize("fault", ["fail_next", "lose_response"])
async def test_an_order_without_an_answer_raises_outcome_unknown_and_is_never_resent(
        venue: str, fault: str) -> None:
    async with client_for(venue, rate_limits={"enabled": False}) as (c, server, ep), \
            aiohttp.ClientSession() as s:
        bid = server.model.book(venue, "KRW-XRP").bids[0][0]
        await c.price_tick_round("KRW-XRP", bid, "buy")  # Bithumb reads its tick once, first
        body = {"count": 1, "status": 503} if fault == "fail_next" else {"count": 1}
        await s.post(f"{ep[venue].rest}/_sim/faults/{fault}", json=body)
        requests = c.transport.requests
        with pytest.raises(OutcomeUnknown) as caught:
            await c.place_limit_order("KRW-XRP", "buy", bid * 0.95, 5.0, f"{venue}-{fault}")
        assert caught.value.client_id == f"{venue}-{fault}"
        assert c.transport.requests == requests + 1  # one POST: the client decides nothing
        placed = await (await s.get(f"{ep[venue].rest}/_sim/orders")).json()
        # a 503 before the engine: nothing placed; a lost answer: placed once
        expected = [] if fault == "fail_next" else [f"{venue}-{fault}"]
        assert [o["client_id"] for o in placed] == expected


async def stream(protocol: BookProtocol, url: str, markets: list[str], **kw: object
                 ) -> tuple[BookStream, list[OrderBook], asyncio.Task[None]]:
    books: list[OrderBook] = []
    s = BookStream(protocol, url, markets, books.append, **kw)  # type: ignore[arg-type]
    return s, books, asyncio.create_task(s.run())


@pytest.mark.parametrize("venue", ["upbit", "bithumb"])
async def test_stream_survives_drop_stall_and_malformed_frames(venue: str) -> None:
    async with running_sim() as (server, ep), aiohttp.ClientSession() as s:
        protocol = UpbitBookProtocol() if venue == "upbit" else BithumbBookProtocol()
        st, books, task = await stream(protocol, ep[venue].ws, ["KRW-BTC", "KRW-ETH"],
                                       stale_after_ms=400)
        try:
            await until(lambda: len(books) >= 4, what="first books")
            assert {b.market for b in books} == {"KRW-BTC", "KRW-ETH"}
            base = ep[venue].rest + "/_sim/faults/"
            await s.post(base + "ws_drop")
            await until(lambda: st.stats.connects == 2 and len(books) > st.stats.books - 1
                        and st.connected.is_set(), what="reconnect after a drop")
            n = len(books)
            await until(lambda: len(books) >= n + 4, what="books after the reconnect (resubscribed)")
            await s.post(base + "ws_stall", json={"on": True})
            await until(lambda: st.stats.stale_reconnects >= 1, what="stall noticed")
            await s.post(base + "ws_stall", json={"on": False})
            n = len(books)
            await until(lambda: len(books) >= n + 4, what="books after the stall")
            await s.post(base + "malformed_frame", json={"count": 1})
            await until(lambda: st.stats.malformed == 1, what="malformed frame counted")
            n = len(books)
            await until(lambda: len(books) >= n + 4, what="books after the malformed frame")
            assert st.stats.connects >= 3
        finally:
            task.cancel()


async def test_legacy_feed_tracks_the_venue_book_and_resyncs_after_a_drop() -> None:
    async with running_sim() as (server, ep), aiohttp.ClientSession() as s:
        rest = ep["bithumb"].rest
        st, books, task = await stream(LegacyBookProtocol(rest), rest.replace("http", "ws") + "/pub/ws",
                                       ["KRW-BTC", "KRW-XRP"])
        try:
            await until(lambda: len(books) >= 10, what="legacy books")
            for market in ("KRW-BTC", "KRW-XRP"):
                mine = [b for b in books if b.market == market][-1]
                vm = server.model.state[("bithumb", market)]
                assert vm.prev_book is not None
                # what we built from snapshot + deltas is the venue's book (or the one just
                # before it, if a step landed after our last frame)
                assert (mine.bids[0], mine.asks[0]) in (
                    (tuple(vm.book.bids[0]), tuple(vm.book.asks[0])),
                    (tuple(vm.prev_book.bids[0]), tuple(vm.prev_book.asks[0])))
            await s.post(rest + "/_sim/faults/ws_drop")
            await until(lambda: st.stats.connects == 2, what="legacy reconnect")
            n = len(books)
            await until(lambda: len(books) >= n + 6, what="legacy books after a new snapshot")
            assert st.stats.resyncs == 0 and st.stats.malformed == 0
            last = [b for b in books if b.market == "KRW-BTC"][-1]
            assert last.bids[0][0] < last.asks[0][0]
        finally:
            task.cancel()


async def test_no_secret_in_logs_errors_or_reprs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "sim-secret"
    async with running_sim() as (_, ep):
        client = UpbitClient(ep["upbit"].rest, Credentials(Secret("sim-access"), Secret(secret)))
        wrong = UpbitClient(ep["upbit"].rest, Credentials(Secret("sim-access"), Secret("zz-" + secret)))
        try:
            await client.balances()
            with pytest.raises(AuthError) as err:
                await wrong.balances()
            text = caplog.text + str(err.value) + repr(err.value) + repr(client.__dict__)
            assert secret not in text and "zz-" not in text
        finally:
            await client.close()
            await wrong.close()


async def test_an_order_post_has_its_own_short_timeout() -> None:
    """With the venue 600 ms slow, reads (request_timeout_ms 5000) answer while an order POST
    (order_timeout_ms 250) gives up — and says its outcome is unknown, never resends."""
    async with running_sim(rate_limits={"enabled": False}) as (server, ep), \
            aiohttp.ClientSession() as s:
        client = UpbitClient(ep["upbit"].rest, CREDS, 5000, 250)
        try:
            bid = server.model.book("upbit", "KRW-XRP").bids[0][0]
            await s.post(f"{ep['upbit'].rest}/_sim/faults/latency", json={"ms": 600})
            assert (await client.balances())["KRW"].free > 0  # a read waits it out
            requests = client.transport.requests
            with pytest.raises(OutcomeUnknown):
                await client.place_limit_order("KRW-XRP", "buy", bid * 0.95, 5.0, "slow-1", "ioc")
            assert client.transport.requests == requests + 1
        finally:
            await client.close()
