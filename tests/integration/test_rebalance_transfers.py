"""The rebalancer's transfers (karb.execution.rebalance) against the simulated venues: journaled
before they are asked for, followed to the credit, a lost answer found by lookup and never
resent, a withdrawal never sent called NOT_SENT, a stuck one alerted."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import msgspec

from karb.config import RebalanceConfig
from karb.execution.journal import Journal
from karb.execution.rebalance import TransferManager
from karb.execution.transfer_journal import (
    TransferJournal,
    TransferRecord,
    TransferState,
    in_transit,
    new_transfer_id,
)
from karb.trading import skew
from tests.integration.test_transfers import CREDS, FAST, TransferClient, free
from tests.integration.simkit import ACCESS, running_sim

V = ["upbit", "bithumb"]
CFG = msgspec.convert({
    "addresses": {v: {"XRP": {"address": f"sim-{v}-XRP-{ACCESS}"}} for v in V},
    "travel_rule": {v: {"exchange_name": v, "receiver_ko_name": "홍길동",
                        "receiver_en_name": "Hong Gildong"} for v in V},
    "stuck_after_s": 0.6}, RebalanceConfig)


@asynccontextmanager
async def setup(tmp_path: Path, settle_s: float = 0.3) -> AsyncIterator[Any]:
    async with running_sim(rate_limits={"enabled": False}, transfers=FAST) as (server, ep):
        clients = {v: TransferClient(v, ep[v].rest, CREDS) for v in V}  # type: ignore[arg-type]
        alerts: list[tuple[str, str, str, str]] = []
        journal = TransferJournal(tmp_path / "journal.sqlite")
        mgr = TransferManager(journal, clients, CFG, lambda *a: alerts.append(a), settle_s)
        try:
            yield server, ep, mgr, alerts
        finally:
            journal.close()
            for c in clients.values():
                await c.close()


async def advance_until(mgr: TransferManager, rec_id: str, state: TransferState,
                        timeout: float = 5.0) -> TransferRecord:
    deadline = time.monotonic() + timeout
    while True:
        await mgr.advance()
        rec = mgr.journal.get(rec_id)
        assert rec is not None
        if rec.state == state:
            return rec
        assert time.monotonic() < deadline, f"{rec_id} stayed {rec.state}"
        await asyncio.sleep(0.05)


async def test_out_of_band_coin_is_moved_back_to_target(tmp_path: Path) -> None:
    async with setup(tmp_path) as (server, _ep, mgr, alerts):
        up, bt = free(server, "upbit", "XRP"), free(server, "bithumb", "XRP")
        # pretend most of the XRP sits on bithumb: the plan moves the difference to upbit
        s = skew.coin_skew(CFG, "XRP", {"upbit": up * 0.2, "bithumb": bt}, V)
        assert s.out_of_band and s.heavy == "bithumb"
        amount, fee, why = await mgr.plan("XRP", s)
        assert why == "" and amount > 0 and fee == 0.4
        rec = await mgr.start("XRP", "bithumb", "upbit", amount, fee)
        assert rec is not None and rec.state in (TransferState.ACCEPTED, TransferState.SENT)
        assert await mgr.start("XRP", "bithumb", "upbit", amount, fee) is None  # one per coin
        assert in_transit(mgr.journal.db) == {"XRP": {"upbit": amount}}
        await advance_until(mgr, rec.transfer_id, TransferState.CREDITED)
        assert mgr.journal.events(rec.transfer_id)[:2] == ["requested", "accepted"]
        assert mgr.journal.events(rec.transfer_id)[-1] == "credited"
        assert free(server, "upbit", "XRP") == up + amount
        assert abs(free(server, "bithumb", "XRP") - (bt - amount - fee)) < 1e-9
        # execution's balance reconciliation sees the transfer as journaled money
        totals = Journal(tmp_path / "journal.sqlite").executed_totals()
        assert totals[("upbit", "XRP")] == amount
        assert abs(totals[("bithumb", "XRP")] + amount + fee) < 1e-9
        assert alerts == []


async def test_lost_answer_is_found_by_lookup_and_never_resent(tmp_path: Path) -> None:
    async with setup(tmp_path) as (server, _ep, mgr, _alerts):
        # a crash between the journal write and the answer: REQUESTED, but the venue has it
        rec = TransferRecord(new_transfer_id(), "XRP", "upbit", "bithumb", 7.0, 0.4, "XRP",
                             f"sim-bithumb-XRP-{ACCESS}", "coin", TransferState.REQUESTED,
                             expected_s=30.0)
        mgr.journal.request(rec)
        await mgr.clients["upbit"].withdraw("XRP", "XRP", 7.0, rec.address)
        await advance_until(mgr, rec.transfer_id, TransferState.CREDITED)
        assert "found" in mgr.journal.events(rec.transfer_id)
        assert len(await mgr.clients["upbit"].withdrawals("XRP")) == 1


async def test_never_sent_is_called_not_sent_after_the_settle_window(tmp_path: Path) -> None:
    async with setup(tmp_path, settle_s=0.3) as (_server, _ep, mgr, _alerts):
        rec = TransferRecord(new_transfer_id(), "XRP", "upbit", "bithumb", 7.0, 0.4, "XRP",
                             f"sim-bithumb-XRP-{ACCESS}", "coin", TransferState.REQUESTED)
        mgr.journal.request(rec)
        await mgr.advance()
        assert mgr.journal.get(rec.transfer_id).state == TransferState.REQUESTED
        await advance_until(mgr, rec.transfer_id, TransferState.NOT_SENT)
        assert await mgr.clients["upbit"].withdrawals("XRP") == []


async def test_stuck_withdrawal_raises_one_alert(tmp_path: Path) -> None:
    async with setup(tmp_path) as (_server, ep, mgr, alerts), aiohttp.ClientSession() as s:
        resp = await s.post(f"{ep['upbit'].rest}/_sim/faults/withdraw_next",
                            json={"action": "stuck"})
        assert resp.status == 200
        rec = await mgr.start("XRP", "upbit", "bithumb", 5.0, 0.4)
        assert rec is not None
        deadline = time.monotonic() + 5
        while not alerts:
            assert time.monotonic() < deadline, "no alert"
            await mgr.advance()
            await asyncio.sleep(0.05)
        for _ in range(3):
            await mgr.advance()
        assert [a[3] for a in alerts] == ["transfer_stuck"]
        assert mgr.journal.get(rec.transfer_id).state != TransferState.CREDITED


async def test_refused_transfer_is_failed_not_retried(tmp_path: Path) -> None:
    async with setup(tmp_path) as (_server, _ep, mgr, alerts):
        rec = await mgr.start("XRP", "upbit", "bithumb", 1.0, 0.4)  # under the 2 XRP minimum
        assert rec is not None and rec.state == TransferState.FAILED
        assert [a[3] for a in alerts] == ["transfer_failed"]
        assert mgr.open() == []
