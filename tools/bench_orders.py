"""Benchmarks of the order path's timing, which the settle window is built on.

- ``order_post_ms_p50/_p99``: an IOC order POST to the simulator and back (our client, real
  HTTP on loopback; from the headers leaving, after our own rate limiter) — how long a venue
  normally takes to answer an order.
- ``order_giveup_over_timeout_ms_<T>``: with the venue holding every request, how long past its
  ``order_timeout_ms`` = T the client really gives up. aiohttp rounds a total timeout of 5 s or
  more up to the next whole second (``ceil_threshold``), so at T = 5000 the client gives up
  5–6 s after the send; under 5 s it does not round. The leg runner stamps ``gave_up_ns`` when
  the request *has* given up, so this rounding is inside the settle window, not beside it.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import time

import aiohttp
import msgspec

from karb.config import ActorSpec, Config, SimConfig
from karb.exchanges.credentials import Credentials, Secret
from karb.exchanges.errors import OutcomeUnknown
from karb.exchanges.upbit.rest import UpbitClient
from karb.sim.server import SimServer

MARKET = "KRW-XRP"


def _sim_config() -> Config:
    sim = msgspec.convert({"step_ms": 50, "dislocation": {"rate_per_min": 0.0},
                           "rate_limits": {"enabled": False}}, SimConfig)
    return Config(actors=[ActorSpec(name="sim", kind="sim")], markets=[MARKET], sim=sim)


async def _run(posts: int, timeouts: list[int]) -> dict[str, float]:
    # The held requests are cut when the server stops: expected here, not worth a traceback.
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)
    server = SimServer(_sim_config())
    endpoints = await server.start()
    market = asyncio.create_task(server.run_market())
    base = endpoints["upbit"].rest
    creds = Credentials(Secret("sim-access"), Secret("sim-secret"))
    out: dict[str, float] = {}
    try:
        client = UpbitClient(base, creds, 5000, 1000)
        rtts = []
        for i in range(posts):
            bid = server.model.book("upbit", MARKET).bids[0][0]
            trace: dict[str, int] = {}
            await client.place_limit_order(MARKET, "buy", bid * 0.98, 10.0, f"bench-{i}", "ioc",
                                           trace)
            # from the headers leaving (after our own rate limiter's wait) to the answer
            rtts.append((time.monotonic_ns() - trace["sent_mono"]) / 1e6)
        rtts.sort()
        out["order_post_ms_p50"] = round(statistics.median(rtts), 2)
        out["order_post_ms_p99"] = round(rtts[min(len(rtts) - 1, int(len(rtts) * 0.99))], 2)
        await client.close()
        async with aiohttp.ClientSession() as s:
            for timeout_ms in timeouts:
                await s.post(f"{base}/_sim/faults/latency", json={"ms": timeout_ms + 2500})
                client = UpbitClient(base, creds, 5000, timeout_ms)
                bid = server.model.book("upbit", MARKET).bids[0][0]
                started = time.perf_counter()
                try:
                    await client.place_limit_order(MARKET, "buy", bid * 0.98, 10.0,
                                                   f"bench-t{timeout_ms}", "ioc")
                except OutcomeUnknown:
                    pass
                elapsed = (time.perf_counter() - started) * 1000
                out[f"order_giveup_over_timeout_ms_{timeout_ms}"] = round(elapsed - timeout_ms, 1)
                await client.close()
                await s.post(f"{base}/_sim/faults/clear")
    finally:
        market.cancel()
        await server.stop()
    return out


def bench_orders(posts: int = 60, timeouts: tuple[int, ...] = (1000, 5000)) -> dict[str, float]:
    return asyncio.run(_run(posts, list(timeouts)))


if __name__ == "__main__":
    import json
    print(json.dumps(bench_orders(), indent=1))
