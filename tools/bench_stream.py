"""How soon a client knows that the venue executed its order: by the private WebSocket
(``karb.exchanges.private_stream``) against REST polling, same orders, same run.

The simulator runs in-process. Each round rests a limit order, then fills it inside the engine
(``Exchange.fill_now``, t0); a PrivateOrderStream and a REST poller (``GET /v1/order`` every
``POLL_INTERVAL_MS``, the execution actor's default) both watch it, and each records when it
first sees the order final (``fill_seen_*``). This is the venue→client part of ``fill_known``;
tools/bench_fill.py measures the whole of it, to the journaled final state.
"""

from __future__ import annotations

import asyncio
import statistics
import time

import aiohttp

from karb.config import ActorSpec, Config, DislocationConfig, RateLimitConfig, SimConfig
from karb.exchanges.credentials import Credentials, Secret
from karb.exchanges.private_stream import OrderUpdate, PrivateOrderStream
from karb.exchanges.upbit.auth import authorization, body_hash_source, query_hash_source
from karb.sim.server import SimServer

POLL_INTERVAL_MS = 50
ROUNDS = 40
CREDS = Credentials(Secret("sim-access"), Secret("sim-secret"))


def _pct(values: list[int], q: float) -> float:
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, int(q * len(ordered)))])


async def _run() -> dict[str, float]:
    # A slow market step: nothing but fill_now fills the resting orders.
    sim = SimConfig(step_ms=1000, rate_limits=RateLimitConfig(enabled=False),
                    dislocation=DislocationConfig(rate_per_min=0.0))
    server = SimServer(Config(actors=[ActorSpec(name="sim", kind="sim")], markets=["KRW-XRP"],
                              sim=sim))
    ep = (await server.start())["upbit"]
    seen: dict[str, int] = {}

    def on_update(u: OrderUpdate) -> None:
        if u.state.final:
            seen.setdefault(u.order_id, time.monotonic_ns())

    stream = PrivateOrderStream("upbit", ep.ws, CREDS, on_update)
    task = asyncio.create_task(stream.run())
    stream_us: list[int] = []
    poll_us: list[int] = []
    try:
        await asyncio.wait_for(stream.connected.wait(), 5)
        await asyncio.sleep(0.2)
        exchange = server.venues["upbit"].exchange
        async with aiohttp.ClientSession() as s:
            for i in range(ROUNDS):
                price = int(server.model.book("upbit", "KRW-XRP").best_bid() * 0.9)
                body = {"market": "KRW-XRP", "side": "bid", "volume": f"{10_000 / price:.4f}",
                        "price": str(price), "ord_type": "limit", "identifier": f"b-{i}"}
                async with s.post(f"{ep.rest}/v1/orders", json=body,
                                  headers=authorization(CREDS, body_hash_source(body))) as r:
                    uuid_ = (await r.json())["uuid"]
                poller = asyncio.create_task(_poll(s, ep.rest, uuid_))
                await asyncio.sleep(POLL_INTERVAL_MS / 1000 * (i % 7) / 7)  # any phase of a poll
                t0 = time.monotonic_ns()
                exchange.fill_now(exchange.orders[uuid_])
                polled = await asyncio.wait_for(poller, 5)
                deadline = time.monotonic() + 2
                while uuid_ not in seen and time.monotonic() < deadline:
                    await asyncio.sleep(0.001)
                if uuid_ in seen:
                    stream_us.append((seen[uuid_] - t0) // 1000)
                poll_us.append((polled - t0) // 1000)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await server.stop()
    out = {"fill_seen_stream_us_p50": _pct(stream_us, 0.5),
           "fill_seen_stream_us_p99": _pct(stream_us, 0.99),
           "fill_seen_poll_us_p50": _pct(poll_us, 0.5),
           "fill_seen_poll_us_p99": _pct(poll_us, 0.99),
           "fill_seen_stream_missed": float(ROUNDS - len(stream_us))}
    out["fill_seen_poll_vs_stream_p50"] = round(
        statistics.median(poll_us) / max(statistics.median(stream_us), 1), 1)
    return out


async def _poll(s: aiohttp.ClientSession, rest: str, uuid_: str) -> int:
    """GET the order every POLL_INTERVAL_MS until final; when it first looked final."""
    params = [("uuid", uuid_)]
    while True:
        headers = authorization(CREDS, query_hash_source(params))
        async with s.get(f"{rest}/v1/order", params=params, headers=headers) as r:
            state = (await r.json())["state"]
        if state in ("done", "cancel"):
            return time.monotonic_ns()
        await asyncio.sleep(POLL_INTERVAL_MS / 1000)


def bench_private_stream() -> dict[str, float]:
    return asyncio.run(_run())


if __name__ == "__main__":
    print(bench_private_stream())
