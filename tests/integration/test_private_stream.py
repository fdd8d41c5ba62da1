"""The private order stream client (karb.exchanges.private_stream) against the simulator's
Upbit ``/websocket/v1/private`` and Bithumb ``/websocket/v2/private``: typed updates for a
resting and a filled order, reconnect after a drop (with ``on_gap``), a stalled stream replaced,
and a refused key backing off."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import aiohttp
import pytest

from karb.exchanges.credentials import Credentials, Secret
from karb.exchanges.private_stream import PrivateVenue, OrderUpdate, PrivateOrderStream
from karb.exchanges.types import OrderState
from karb.sim.server import SimServer
from tests.integration.simkit import ACCESS, SECRET, private_post, running_sim

CREDS = Credentials(Secret(ACCESS), Secret(SECRET))


async def until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition never became true"
        await asyncio.sleep(0.02)


def order_body(venue: str, server: SimServer, cid: str, take: bool) -> dict[str, str]:
    book = server.model.book(venue, "KRW-XRP")
    price = int(book.asks[0][0]) if take else int(book.best_bid() * 0.9)
    volume = f"{min(book.asks[0][1], 10_000 / price):.4f}" if take else f"{10_000 / price:.4f}"
    body = {"market": "KRW-XRP", "side": "bid", "volume": volume, "price": str(price)}
    if venue == "upbit":
        body.update(ord_type="limit", identifier=cid)
    else:
        body.update(order_type="limit", client_order_id=cid)
    if take:
        body["time_in_force"] = "ioc"
    return body


async def place(s: aiohttp.ClientSession, base: str, venue: str, body: dict[str, str]) -> None:
    path = "/v1/orders" if venue == "upbit" else "/v2/orders"
    r = await private_post(s, base, path, body, venue=venue)
    assert r.status == 201, await r.text()


@pytest.mark.parametrize("venue", ["upbit", "bithumb"])
async def test_updates_for_resting_and_filled_orders(venue: PrivateVenue) -> None:
    async with running_sim(rate_limits={"enabled": False}) as (server, ep), aiohttp.ClientSession() as s:
        updates: list[OrderUpdate] = []
        stream = PrivateOrderStream(venue, ep[venue].ws, CREDS, updates.append)
        task = asyncio.create_task(stream.run())
        try:
            await asyncio.wait_for(stream.connected.wait(), 5)
            await asyncio.sleep(0.1)  # the subscription is not acknowledged by the venue
            await place(s, ep[venue].rest, venue, order_body(venue, server, "rest-1", take=False))
            await place(s, ep[venue].rest, venue, order_body(venue, server, "take-1", take=True))
            await until(lambda: any(u.client_id == "take-1" and u.state.final for u in updates))
            rest = [u for u in updates if u.client_id == "rest-1"]
            assert rest[0].state is OrderState.OPEN and rest[0].venue_state == "wait"
            assert rest[0].side == "buy" and rest[0].market == "KRW-XRP" and rest[0].price
            take = [u for u in updates if u.client_id == "take-1"]
            fills = [u.fill for u in take if u.fill is not None]
            assert fills and all(f.volume > 0 and f.price > 0 and f.fee > 0 for f in fills)
            final = take[-1]
            assert final.state is OrderState.DONE and final.venue_state == "done"
            assert final.executed_volume == pytest.approx(sum(f.volume for f in fills))
            assert final.executed_funds == pytest.approx(sum(f.funds for f in fills))
            assert final.paid_fee == pytest.approx(sum(f.fee for f in fills))
            assert final.order_id == server.venues[venue].exchange.by_client[(ACCESS, "take-1")].id
            assert final.ts_init >= final.ts_event - 10**9
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def fault(s: aiohttp.ClientSession, base: str, name: str, **body: object) -> None:
    assert (await s.post(f"{base}/_sim/faults/{name}", json=body)).status == 200


@pytest.mark.parametrize("venue", ["upbit", "bithumb"])
async def test_reconnects_after_drop_and_stall(venue: PrivateVenue) -> None:
    async with running_sim(rate_limits={"enabled": False}) as (server, ep), aiohttp.ClientSession() as s:
        base = ep[venue].rest
        updates: list[OrderUpdate] = []
        gaps: list[float] = []
        stream = PrivateOrderStream(venue, ep[venue].ws, CREDS, updates.append,
                                    on_gap=lambda: gaps.append(time.monotonic()),
                                    ping_interval_s=0.1, stale_after_ms=400)
        task = asyncio.create_task(stream.run())
        try:
            await asyncio.wait_for(stream.connected.wait(), 5)
            await fault(s, base, "ws_drop")
            await until(lambda: stream.stats.connects >= 2 and stream.connected.is_set())
            assert gaps  # told that updates may have been missed
            await fault(s, base, "ws_stall", on=True)
            await until(lambda: stream.stats.stale_reconnects >= 1)
            await fault(s, base, "ws_stall", on=False)
            await until(lambda: stream.connected.is_set() and stream.stats.connects >= 3)
            await asyncio.sleep(0.1)

            async def placed_and_seen() -> bool:
                await place(s, base, venue, order_body(venue, server, f"after-{len(updates)}", False))
                await asyncio.sleep(0.2)
                return bool(updates)
            await retry(placed_and_seen)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def retry(step: Callable[[], Awaitable[bool]], attempts: int = 10) -> None:
    for _ in range(attempts):
        if await step():
            return
    raise AssertionError("never succeeded")


async def test_refused_key_backs_off() -> None:
    async with running_sim(rate_limits={"enabled": False}) as (_, ep):
        stream = PrivateOrderStream("upbit", ep["upbit"].ws,
                                    Credentials(Secret("nobody"), Secret("x")), lambda u: None,
                                    backoff_initial_s=0.25, backoff_max_s=0.5)
        task = asyncio.create_task(stream.run())
        try:
            await until(lambda: stream.stats.refused >= 2)
            assert "INVALID_AUTH" in stream.stats.last_error and stream.stats.updates == 0
            t0, n = time.monotonic(), stream.stats.connects
            await until(lambda: stream.stats.connects > n + 1)
            assert time.monotonic() - t0 >= 0.25  # backed off between attempts
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
