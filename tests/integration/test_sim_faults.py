"""Every ``/_sim/`` fault, driven over real HTTP and WebSocket connections."""

from __future__ import annotations

import json
import time

import aiohttp
import pytest

from tests.integration.simkit import private_get, private_post, running_sim


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
