"""Legs followed by the private WebSocket against the simulator (real clients, real streams):
a leg's final state and fills reach the journal from the stream; with the stream stalled in the
middle of trading (the ``ws_stall`` fault silences private sockets too) the next leg still
completes, by polling; once the stall ends the stream is used again."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import aiohttp
import pytest

from karb.exchanges.bithumb.rest import BithumbClient
from karb.exchanges.credentials import Credentials, Secret
from karb.exchanges.private_stream import PrivateOrderStream
from karb.execution.journal import Journal
from karb.execution.legs import LegRunner
from karb.execution.stream_book import StreamBook
from karb.sim.server import SimServer
from karb.trading.ledger import Ledger
from karb.trading.limits import ExecutionLimits
from karb.trading.orders import LegRecord, LegState
from tests.integration.simkit import ACCESS, SECRET, running_sim

CREDS = Credentials(Secret(ACCESS), Secret(SECRET))
LIMITS = ExecutionLimits(max_notional_krw=2_000_000, max_inventory_krw=1e12, stale_after_ms=2000,
                         hedge_loss_bps=30, leg_timeout_ms=2000, poll_interval_ms=50,
                         settle_ms=500, leg_deadline_ms=5000, stream_wait_ms=200)


def taking_leg(server: SimServer, client_id: str) -> LegRecord:
    book = server.model.book("bithumb", "KRW-XRP")
    price = book.asks[0][0]
    volume = round(min(book.asks[0][1], 10_000 / price), 4)
    return LegRecord(client_id, client_id[:-2], "buy", "bithumb", "KRW-XRP", "buy", price, volume,
                     LegState.PENDING)


def source_of(journal: Journal, client_id: str) -> str:
    row = journal.db.execute("SELECT detail FROM events WHERE client_id=? AND kind='final'",
                             (client_id,)).fetchone()
    assert row is not None, f"{client_id} has no final state in the journal"
    return str(json.loads(row[0])["source"])


async def run_leg(runner: LegRunner, journal: Journal, leg: LegRecord) -> LegRecord:
    journal.add_leg(leg)
    done = await runner.run(leg, time.monotonic_ns(), time.monotonic() + LIMITS.leg_deadline_ms / 1000)
    assert done.state in (LegState.DONE, LegState.CANCELLED), done.state
    assert done.executed_volume > 0 and done.executed_funds > 0 and done.fee > 0
    journaled = journal.leg(leg.client_id)
    assert journaled is not None and journaled.state == done.state
    assert journaled.executed_volume == done.executed_volume and journaled.fee == done.fee
    return done


async def test_legs_follow_the_stream_and_poll_while_it_is_stalled(tmp_path: Path) -> None:
    async with running_sim(["KRW-XRP"], rate_limits={"enabled": False}) as (server, ep), \
            aiohttp.ClientSession() as s:
        base = ep["bithumb"].rest
        client = BithumbClient(base, CREDS, 5000, 1000)
        book = StreamBook("bithumb")
        stream = PrivateOrderStream("bithumb", ep["bithumb"].ws, CREDS, book.on_update,
                                    on_gap=book.on_gap)
        book.connected = stream.connected
        journal = Journal(tmp_path / "journal.sqlite")
        runner = LegRunner({"bithumb": client}, journal, LIMITS, lambda topic, msg: None,
                           Ledger(), {"bithumb": book})
        task = asyncio.create_task(stream.run())
        try:
            await asyncio.wait_for(stream.connected.wait(), 5)
            await asyncio.sleep(0.1)  # the subscription is not acknowledged by the venue
            first = await run_leg(runner, journal, taking_leg(server, "i" + "1" * 20 + "-b"))
            assert source_of(journal, first.client_id) == "stream"
            # Mid-trade, the private stream goes silent (still connected: the stall is not yet
            # detected by the client). The next leg completes by polling after the short wait.
            r = await s.post(f"{base}/_sim/faults/ws_stall", json={"on": True})
            assert r.status == 200
            started = time.monotonic()
            stalled = await run_leg(runner, journal, taking_leg(server, "i" + "2" * 20 + "-b"))
            assert stream.connected.is_set()  # the follower did not wait for a reconnect
            assert source_of(journal, stalled.client_id) == "rest"
            assert time.monotonic() - started < 2.0
            await s.post(f"{base}/_sim/faults/ws_stall", json={"on": False})
            after = await run_leg(runner, journal, taking_leg(server, "i" + "3" * 20 + "-b"))
            assert source_of(journal, after.client_id) == "stream"
            # the journal agrees with the venue on every leg
            for leg in (first, stalled, after):
                venue = await client.get_order(order_id=leg.order_id)
                assert venue.executed_volume == pytest.approx(leg.executed_volume)
                assert venue.executed_funds == pytest.approx(leg.executed_funds)
                assert venue.paid_fee == pytest.approx(leg.fee)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await client.close()
            journal.close()
