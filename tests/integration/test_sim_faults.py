"""Every ``/_sim/`` fault, driven over real HTTP and WebSocket connections."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import aiohttp
import pytest

from karb.sim.server import SimServer
from tests.integration.simkit import private_get, private_post, running_sim

T = TypeVar("T")


async def fault(s: aiohttp.ClientSession, base: str, name: str, **body: object) -> dict:
    r = await s.post(f"{base}/_sim/faults/{name}", json=body)
    assert r.status == 200, await r.text()
    return await r.json()


async def subscribe(s: aiohttp.ClientSession, url: str) -> aiohttp.ClientWebSocketResponse:
    ws = await s.ws_connect(url)
    await ws.send_str(json.dumps([{"ticket": "f"}, {"type": "orderbook", "codes": ["KRW-BTC"]}]))
    assert (await ws.receive(timeout=5)).type == aiohttp.WSMsgType.BINARY
    return ws


async def test_ws_drop_stall_and_malformed_frame() -> None:
    async with running_sim() as (_, ep), aiohttp.ClientSession() as s:
        base = ep["upbit"].rest
        ws = await subscribe(s, ep["upbit"].ws)
        assert (await fault(s, base, "ws_drop"))["dropped"] == 1
        msg = await ws.receive(timeout=5)
        while msg.type == aiohttp.WSMsgType.BINARY:  # frames already in flight
            msg = await ws.receive(timeout=5)
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)

        ws = await subscribe(s, ep["upbit"].ws)
        await fault(s, base, "ws_stall", on=True)
        while True:  # drain what was queued before the stall, then silence
            try:
                await ws.receive(timeout=0.5)
            except TimeoutError:
                break
        assert not ws.closed  # open, but silent
        await fault(s, base, "ws_stall", on=False)
        assert (await ws.receive(timeout=5)).type == aiohttp.WSMsgType.BINARY

        await fault(s, base, "malformed_frame", count=1)
        deadline = time.monotonic() + 5
        while True:
            msg = await ws.receive(timeout=deadline - time.monotonic())
            try:
                json.loads(msg.data)
            except ValueError:
                break  # the garbage frame arrived; the stream goes on after it
        assert json.loads((await ws.receive(timeout=5)).data)["type"] == "orderbook"
        await ws.close()


async def test_latency_failures_and_429() -> None:
    async with running_sim(rate_limits={"enabled": False}) as (_, ep), aiohttp.ClientSession() as s:
        base = ep["bithumb"].rest
        url = f"{base}/v1/market/all"
        await fault(s, base, "latency", ms=150)
        t0 = time.monotonic()
        assert (await s.get(url)).status == 200
        assert time.monotonic() - t0 >= 0.15
        await fault(s, base, "latency", ms=0)
        await fault(s, base, "fail_next", count=2, status=503)
        assert [(await s.get(url)).status for _ in range(3)] == [503, 503, 200]
        await fault(s, base, "fail_next", count=1, status=429)
        assert (await s.get(url)).status == 429
        bad = await s.post(f"{base}/_sim/faults/fail_next", json={"status": 302})
        assert bad.status == 400


async def test_reject_and_partial_fill_of_the_next_order_and_inspection() -> None:
    async with running_sim(rate_limits={"enabled": False}) as (server, ep), aiohttp.ClientSession() as s:
        base = ep["upbit"].rest
        await fault(s, base, "order_next", action="reject")
        ask = server.model.book("upbit", "KRW-ETH").asks[0]
        body = {"market": "KRW-ETH", "side": "bid", "volume": str(round(ask[1], 8)),
                "price": str(int(ask[0])), "ord_type": "limit", "time_in_force": "ioc",
                "identifier": "f-1"}
        r = await private_post(s, base, "/v1/orders", body)
        assert r.status == 400 and (await r.json())["error"]["name"] == "create_bid_error"
        await fault(s, base, "order_next", action="partial", fraction=0.5)
        body["identifier"] = "f-2"
        order = await (await private_post(s, base, "/v1/orders", body)).json()
        got = await (await private_get(s, base, "/v1/order", [("uuid", order["uuid"])])).json()
        assert float(got["executed_volume"]) == pytest.approx(float(body["volume"]) / 2, abs=1e-8)
        assert got["state"] == "cancel"
        record = await (await s.get(f"{base}/_sim/orders")).json()
        assert [o["client_id"] for o in record] == ["f-2"]  # the rejected order was never accepted
        assert record[0]["fills"] and record[0]["state"] == "cancel"
        accounts = await (await s.get(f"{base}/_sim/accounts")).json()
        assert accounts["sim-access"]["KRW"]["free"] < 50_000_000


async def test_clock_skew_breaks_fresh_signatures_and_dislocate_moves_prices() -> None:
    async with running_sim(rate_limits={"enabled": False}, noise_bps=0.0, volatility_bps=0.0) as (server, ep), \
            aiohttp.ClientSession() as s:
        base = ep["bithumb"].rest
        await fault(s, base, "clock_skew", ms=300_000)
        r = await private_get(s, base, "/v1/accounts", venue="bithumb")
        assert r.status == 401 and (await r.json())["error"]["name"] == "expired_jwt"
        await fault(s, base, "clear")
        assert (await private_get(s, base, "/v1/accounts", venue="bithumb")).status == 200
        before = server.model.book("bithumb", "KRW-BTC").best_bid()
        r = await s.post(f"{base}/_sim/dislocate", json={"market": "KRW-BTC", "bps": 100,
                                                         "duration_ms": 2000})
        assert r.status == 200
        deadline = time.monotonic() + 5
        while server.model.book("bithumb", "KRW-BTC").best_bid() < before * 1.008:
            assert time.monotonic() < deadline, "dislocation never showed in the book"
            await aiohttp.helpers.asyncio.sleep(0.02)


async def test_faults_are_absent_when_disabled() -> None:
    async with running_sim(faults_enabled=False) as (_, ep), aiohttp.ClientSession() as s:
        assert (await s.get(f"{ep['upbit'].rest}/_sim/orders")).status == 404


# -- faults that answer late (issue 8 point 8) ---------------------------------------------------

async def until(check: Callable[[], Awaitable[T | None]], timeout: float = 5.0) -> T:
    """Poll ``check`` until it returns something truthy, at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        got = await check()
        if got:
            return got
        assert time.monotonic() < deadline, "condition never became true"
        await asyncio.sleep(0.02)


async def sim_order(s: aiohttp.ClientSession, base: str, client_id: str) -> dict | None:
    record = await (await s.get(f"{base}/_sim/orders")).json()
    return next((o for o in record if o["client_id"] == client_id), None)


def resting_bid(server: SimServer, venue: str, market: str = "KRW-XRP") -> tuple[str, str]:
    """A limit bid well under the book (rests) worth ~10,000 KRW: (price, volume). XRP trades
    around 3,000 KRW, where the tick is 1 KRW on both venues."""
    price = int(server.model.book(venue, market).best_bid() * 0.9)
    assert 100 <= price < 5_000
    return str(price), f"{10_000 / price:.4f}"


async def test_delay_execution_hold_outlives_a_client_that_gave_up() -> None:
    async with running_sim(rate_limits={"enabled": False}) as (server, ep), aiohttp.ClientSession() as s:
        base = ep["upbit"].rest
        await fault(s, base, "delay_execution", ms=800, count=1, answer="hold")
        price, volume = resting_bid(server, "upbit")
        body = {"market": "KRW-XRP", "side": "bid", "volume": volume, "price": price,
                "ord_type": "limit", "identifier": "late-1"}
        t0 = time.monotonic()
        with pytest.raises(asyncio.TimeoutError):
            await private_post(s, base, "/v1/orders", body, timeout=aiohttp.ClientTimeout(total=0.3))
        assert await sim_order(s, base, "late-1") is None  # not carried out yet
        # A resend of the same id while the first is on its way: refused as a reused id.
        again = await private_post(s, base, "/v1/orders", body)
        assert again.status == 400 and "already" in (await again.json())["error"]["message"]
        order = await until(lambda: sim_order(s, base, "late-1"))
        assert time.monotonic() - t0 >= 0.75 and order["state"] == "wait"
        got = await private_get(s, base, "/v1/order", [("identifier", "late-1")])
        assert got.status == 200 and (await got.json())["uuid"] == order["id"]


async def test_delay_execution_504_answers_at_once_and_executes_later() -> None:
    async with running_sim(rate_limits={"enabled": False}) as (server, ep), aiohttp.ClientSession() as s:
        base = ep["bithumb"].rest
        await fault(s, base, "delay_execution", ms=1000, count=1, answer="504")
        price, volume = resting_bid(server, "bithumb")
        body = {"market": "KRW-XRP", "side": "bid", "volume": volume, "price": price,
                "order_type": "limit", "client_order_id": "late-2"}
        t0 = time.monotonic()
        r = await private_post(s, base, "/v2/orders", body, venue="bithumb")
        assert r.status == 504 and time.monotonic() - t0 < 0.8  # at once, not after the delay
        lookup = await private_get(s, base, "/v1/order", [("client_order_id", "late-2")],
                                   venue="bithumb")
        assert lookup.status == 404  # not in the engine yet
        order = await until(lambda: sim_order(s, base, "late-2"))
        assert order["state"] == "wait"
        # Hold mode with a patient client: the real answer, after the delay.
        await fault(s, base, "delay_execution", ms=200, count=1, answer="hold")
        body["client_order_id"] = "late-3"
        t0 = time.monotonic()
        r = await private_post(s, base, "/v2/orders", body, venue="bithumb")
        assert r.status == 201 and time.monotonic() - t0 >= 0.19
        assert (await r.json())["client_order_id"] == "late-3"
        # A delayed execution still pending when the server stops is cancelled cleanly.
        await fault(s, base, "delay_execution", ms=30_000, count=1, answer="504")
        body["client_order_id"] = "late-4"
        assert (await private_post(s, base, "/v2/orders", body, venue="bithumb")).status == 504
        assert len(server.venues["bithumb"].background) == 1
    assert not server.venues["bithumb"].background


async def test_invisible_orders_are_missing_from_lookups_then_found() -> None:
    async with running_sim(rate_limits={"enabled": False}) as (server, ep), aiohttp.ClientSession() as s:
        base = ep["upbit"].rest
        await fault(s, base, "invisible", ms=1500)
        price, volume = resting_bid(server, "upbit")
        body = {"market": "KRW-XRP", "side": "bid", "volume": volume, "price": price,
                "ord_type": "limit", "identifier": "inv-1"}
        r = await private_post(s, base, "/v1/orders", body)
        assert r.status == 201
        uuid_ = (await r.json())["uuid"]
        for params in ([("uuid", uuid_)], [("identifier", "inv-1")]):
            assert (await private_get(s, base, "/v1/order", params)).status == 404
        listed = await (await private_get(s, base, "/v1/orders/open", [("market", "KRW-XRP")])).json()
        assert uuid_ not in [o["uuid"] for o in listed]
        uuids = await (await private_get(s, base, "/v1/orders/uuids", [("uuids[]", uuid_)])).json()
        assert uuids == []
        assert await sim_order(s, base, "inv-1")  # the venue has it all along

        async def found() -> bool:
            got = await private_get(s, base, "/v1/order", [("identifier", "inv-1")])
            return got.status == 200
        await until(found)
        await fault(s, base, "invisible", ms=0)
        body["identifier"] = "inv-2"
        assert (await private_post(s, base, "/v1/orders", body)).status == 201
        assert (await private_get(s, base, "/v1/order", [("identifier", "inv-2")])).status == 200


async def test_order_not_ready_is_bithumb_422_and_refused_on_upbit() -> None:
    async with running_sim(rate_limits={"enabled": False}) as (server, ep), aiohttp.ClientSession() as s:
        refused = await s.post(f"{ep['upbit'].rest}/_sim/faults/order_not_ready", json={"count": 1})
        assert refused.status == 400 and "Upbit" in await refused.text()
        base = ep["bithumb"].rest
        price, volume = resting_bid(server, "bithumb")
        body = {"market": "KRW-XRP", "side": "bid", "volume": volume, "price": price,
                "order_type": "limit", "client_order_id": "nr-1"}
        order_id = (await (await private_post(s, base, "/v2/orders", body, venue="bithumb")).json())["order_id"]
        await fault(s, base, "order_not_ready", count=2)
        for _ in range(2):
            r = await private_get(s, base, "/v1/order", [("uuid", order_id)], venue="bithumb")
            assert r.status == 422 and (await r.json())["error"]["name"] == "order_not_ready"
        assert (await private_get(s, base, "/v1/order", [("uuid", order_id)], venue="bithumb")).status == 200
        await fault(s, base, "order_not_ready", count=1)
        r = await private_get(s, base, "/v2/order", [("client_order_id", "nr-1")], venue="bithumb",
                              method="DELETE")
        assert r.status == 422
        r = await private_get(s, base, "/v2/order", [("client_order_id", "nr-1")], venue="bithumb",
                              method="DELETE")
        assert r.status == 200


@pytest.mark.parametrize("venue", ["upbit", "bithumb"])
async def test_cancel_race_fills_the_order_and_refuses_the_cancel(venue: str) -> None:
    async with running_sim(rate_limits={"enabled": False}) as (server, ep), aiohttp.ClientSession() as s:
        base = ep[venue].rest
        price, volume = resting_bid(server, venue)
        id_key, type_key, path = (("identifier", "ord_type", "/v1/orders") if venue == "upbit"
                                  else ("client_order_id", "order_type", "/v2/orders"))
        body = {"market": "KRW-XRP", "side": "bid", "volume": volume, "price": price,
                type_key: "limit", id_key: "race-1"}
        assert (await private_post(s, base, path, body, venue=venue)).status == 201
        await fault(s, base, "cancel_race", count=1)
        params = [("identifier" if venue == "upbit" else "client_order_id", "race-1")]
        cancel_path = "/v1/order" if venue == "upbit" else "/v2/order"
        r = await private_get(s, base, cancel_path, params, venue=venue, method="DELETE")
        name = (await r.json())["error"]["name"]
        assert r.status == 400 and name == ("done_order" if venue == "upbit" else "order_not_ready")
        order = await sim_order(s, base, "race-1")
        assert order is not None and order["state"] == "done"
        assert float(order["executed_volume"]) == pytest.approx(float(volume))
        assert order["fills"]
