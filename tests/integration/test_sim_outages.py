"""Scheduled venue outages (``sim.outages``) on the real simulator: REST answers 503 for a
while and recovers; WebSockets are dropped."""

from __future__ import annotations

import json
import time

from typing import Any

import aiohttp

from tests.integration.simkit import running_sim

# Outages several times a second, each a few hundred ms: a test sees both states quickly.
BUSY: dict[str, Any] = {"outages": {"ws_drops_per_hour": 7200.0, "rest_outages_per_hour": 18_000.0,
                    "rest_outage_s": 0.3, "rest_status": 503},
        "rate_limits": {"enabled": False}}  # the test polls as fast as it can


async def test_scheduled_rest_outages_answer_503_then_recover() -> None:
    async with running_sim(**BUSY) as (_, ep), aiohttp.ClientSession() as s:
        seen: set[int] = set()
        deadline = time.monotonic() + 10
        while seen != {200, 503} and time.monotonic() < deadline:
            async with s.get(f"{ep['bithumb'].rest}/v1/market/all") as r:
                seen.add(r.status)
        assert seen == {200, 503}


async def test_scheduled_ws_drops_close_the_socket() -> None:
    async with running_sim(**BUSY) as (_, ep), aiohttp.ClientSession() as s:
        ws = await s.ws_connect(ep["upbit"].ws)
        await ws.send_str(json.dumps([{"ticket": "o"}, {"type": "orderbook", "codes": ["KRW-BTC"]}]))
        deadline = time.monotonic() + 10
        msg = await ws.receive(timeout=5)
        while msg.type == aiohttp.WSMsgType.BINARY and time.monotonic() < deadline:
            msg = await ws.receive(timeout=5)
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
