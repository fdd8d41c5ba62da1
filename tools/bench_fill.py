"""How soon execution has *journaled* a leg's final state after the venue executed it: legs
followed by the private WebSocket (karb.execution.stream_book) against REST polling, same
orders, same run.

The simulator runs in-process, both venues. Each round rests a limit order through our client
(so the leg is not final at its answer, as a leg the engine fills a moment later), then two
:class:`LegRunner`s follow it, each with its own journal: one with the venue's private stream
book (``stream_wait_ms`` 250), one without (REST every ``poll_interval_ms`` = 50, execution's
default, with its back-off). At a random phase the engine fills the order (``fill_now``, t0);
each figure is t0 → that runner's ``follow`` has returned, i.e. its final state and fills are
in its journal (SQLite, synchronous=normal).

- ``fill_known_us_p50/_p99``: with the private stream.
- ``fill_known_poll_us_p50/_p99``: REST polling.
- ``fill_known_poll_vs_stream_p50``: the ratio (issue 10's target: ≥ 5).
- ``fill_known_stream_fallbacks``: stream-followed legs that ended by a REST read (should be 0).
- ``fill_known_ioc_us_p50/_p99``, ``fill_known_ioc_poll_us_p50/_p99``: Bithumb IOC legs through
  ``LegRunner.run``, from the send to the journaled final state (the engine executes inside the
  POST, which Bithumb answers with the order id only): stream follower vs poller. The
  difference is one ``GET /v1/order``; an Upbit IOC is final in its POST's answer, so there
  both are the same.
"""

from __future__ import annotations

import asyncio
import json
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from karb.config import ActorSpec, Config, DislocationConfig, RateLimitConfig, SimConfig
from karb.exchanges.bithumb.rest import BithumbClient
from karb.exchanges.client import VenueClient
from karb.exchanges.credentials import Credentials, Secret
from karb.exchanges.private_stream import PrivateOrderStream
from karb.exchanges.types import Order
from karb.exchanges.upbit.rest import UpbitClient
from karb.execution.journal import Journal
from karb.execution.legs import LegRunner
from karb.execution.stream_book import StreamBook
from karb.sim.server import SimServer
from karb.trading.ledger import Ledger
from karb.trading.limits import ExecutionLimits
from karb.trading.orders import LegRecord, LegState

MARKET = "KRW-XRP"
ROUNDS = 30  # per venue
CREDS = Credentials(Secret("sim-access"), Secret("sim-secret"))
LIMITS = ExecutionLimits(max_notional_krw=2_000_000, max_inventory_krw=1e12, stale_after_ms=2000,
                         hedge_loss_bps=30, leg_timeout_ms=30_000, poll_interval_ms=50,
                         leg_deadline_ms=30_000, stream_wait_ms=250)


def _pct(values: list[int], q: float) -> float:
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, int(q * len(ordered)))])


async def _follow(runner: LegRunner, journal: Journal, leg: LegRecord, order: Order,
                  ends: dict[str, int], name: str) -> None:
    """Follow ``leg`` until its final state is in ``journal``; note when (monotonic ns)."""
    journal.add_leg(leg)
    await runner.follow(leg, order, time.monotonic() + 20)
    ends[name] = time.monotonic_ns()


async def _run() -> dict[str, float]:
    sim = SimConfig(step_ms=1000, rate_limits=RateLimitConfig(enabled=False),
                    dislocation=DislocationConfig(rate_per_min=0.0))
    server = SimServer(Config(actors=[ActorSpec(name="sim", kind="sim")], markets=[MARKET],
                              sim=sim))
    endpoints = await server.start()
    tmp = Path(tempfile.mkdtemp(prefix="karb-bench-fill-"))
    rng = random.Random(7)
    stream_us: list[int] = []
    poll_us: list[int] = []
    fallbacks = 0
    ioc_stream_us: list[int] = []
    ioc_poll_us: list[int] = []
    tasks: list[asyncio.Task[None]] = []
    clients: list[VenueClient] = []
    journals: list[Journal] = []
    try:
        for venue in ("upbit", "bithumb"):
            ep = endpoints[venue]
            client: VenueClient = (UpbitClient if venue == "upbit" else BithumbClient)(
                ep.rest, CREDS, 5000, 1000)
            clients.append(client)
            book = StreamBook(venue)
            stream = PrivateOrderStream(venue, ep.ws, CREDS, book.on_update,
                                        markets=[MARKET], on_gap=book.on_gap)
            book.connected = stream.connected
            tasks.append(asyncio.create_task(stream.run()))
            await asyncio.wait_for(stream.connected.wait(), 5)
            await asyncio.sleep(0.2)  # the subscription is not acknowledged by the venue
            j_stream = Journal(tmp / f"{venue}-stream.sqlite")
            j_poll = Journal(tmp / f"{venue}-poll.sqlite")
            journals += [j_stream, j_poll]
            by_stream = LegRunner({venue: client}, j_stream, LIMITS, lambda t, m: None, Ledger(),
                                  {venue: book})
            by_poll = LegRunner({venue: client}, j_poll, LIMITS, lambda t, m: None, Ledger())
            exchange = server.venues[venue].exchange
            for i in range(ROUNDS):
                price = int(server.model.book(venue, MARKET).best_bid() * 0.9)
                cid = f"i{venue[0]}{i:019d}-b"
                order = await client.place_limit_order(MARKET, "buy", price, 10_000 / price, cid)
                ends: dict[str, int] = {}
                followers = [asyncio.create_task(_follow(
                    runner, journal, LegRecord(cid, cid[:-2], "buy", venue, MARKET, "buy", price,
                                               10_000 / price, LegState.SENT,
                                               order_id=order.order_id), order, ends, name))
                    for name, runner, journal in (("stream", by_stream, j_stream),
                                                  ("poll", by_poll, j_poll))]
                # the fill lands at any phase of a poll
                await asyncio.sleep(rng.uniform(0.01, 0.01 + LIMITS.poll_interval_ms / 1000))
                t0 = time.monotonic_ns()
                exchange.fill_now(exchange.orders[order.order_id])
                await asyncio.wait_for(asyncio.gather(*followers), 10)
                stream_us.append((ends["stream"] - t0) // 1000)
                poll_us.append((ends["poll"] - t0) // 1000)
                detail = j_stream.db.execute(
                    "SELECT detail FROM events WHERE client_id=? AND kind='final'",
                    (cid,)).fetchone()[0]
                fallbacks += json.loads(detail)["source"] != "stream"
            if venue == "bithumb":
                # IOC legs, final inside the POST: Bithumb answers with the order id only, so
                # the poller needs one GET after the answer, the stream follower none.
                for i in range(ROUNDS):
                    for name, runner, journal, out_us in (("s", by_stream, j_stream, ioc_stream_us),
                                                          ("p", by_poll, j_poll, ioc_poll_us)):
                        ask = server.model.book(venue, MARKET).asks[0][0]
                        cid = f"i{name}{i:019d}-b"
                        leg = LegRecord(cid, cid[:-2], "buy", venue, MARKET, "buy", ask,
                                        round(10_000 / ask, 4), LegState.PENDING)
                        journal.add_leg(leg)
                        t0 = time.monotonic_ns()
                        await runner.run(leg, t0, time.monotonic() + 20)
                        out_us.append((time.monotonic_ns() - t0) // 1000)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for client in clients:
            await client.close()
        for journal in journals:
            journal.close()
        await server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    out = {"fill_known_us_p50": _pct(stream_us, 0.5), "fill_known_us_p99": _pct(stream_us, 0.99),
           "fill_known_poll_us_p50": _pct(poll_us, 0.5),
           "fill_known_poll_us_p99": _pct(poll_us, 0.99),
           "fill_known_stream_fallbacks": float(fallbacks)}
    out["fill_known_poll_vs_stream_p50"] = round(
        statistics.median(poll_us) / max(statistics.median(stream_us), 1), 1)
    out.update({"fill_known_ioc_us_p50": _pct(ioc_stream_us, 0.5),
                "fill_known_ioc_us_p99": _pct(ioc_stream_us, 0.99),
                "fill_known_ioc_poll_us_p50": _pct(ioc_poll_us, 0.5),
                "fill_known_ioc_poll_us_p99": _pct(ioc_poll_us, 0.99)})
    return out


def bench_fill_known() -> dict[str, float]:
    return asyncio.run(_run())


if __name__ == "__main__":
    print(json.dumps(bench_fill_known(), indent=1))
