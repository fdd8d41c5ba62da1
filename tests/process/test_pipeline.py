"""The whole pipeline against the simulator: it trades, and stays money-safe when its own
processes are killed at the worst moments."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import uuid
from pathlib import Path

import pytest
import zmq.asyncio

from karb.bus import LazyPirateClient, control_endpoint
from karb.config import load_config
from karb.messages import ControlReply, ControlRequest

from tests.process.pipeline import Venues, assert_money_agrees, pipeline_config, quiesce, rows
from tests.support import SupervisorProc, eventually

MARKETS = ["KRW-ETH", "KRW-XRP"]


def intents(sup: SupervisorProc, state: str | None = None) -> list:
    if state is None:
        return rows(sup, "SELECT * FROM intents WHERE state != 'REJECTED'")
    return rows(sup, "SELECT * FROM intents WHERE state = ?", state)


def test_a_dislocation_becomes_a_round_trip_with_pnl_matching_fills_and_fees(workdir: Path) -> None:
    with SupervisorProc(pipeline_config(workdir, MARKETS)) as sup:
        sup.wait_running(30)
        venues = Venues(sup)
        start = venues.balances()
        venues.dislocate("bithumb", "KRW-ETH", 80, 1500)
        done = eventually(lambda: intents(sup, "DONE"), 15, what="an intent done")
        quiesce(sup)
        assert_money_agrees(sup, venues, start)
        row = done[0]
        assert (row["buy_venue"], row["sell_venue"], row["market"]) == ("upbit", "bithumb", "KRW-ETH")
        legs = rows(sup, "SELECT * FROM legs WHERE intent_id=?", row["intent_id"])
        assert {leg["role"] for leg in legs} == {"buy", "sell"}
        assert all(leg["state"] == "DONE" for leg in legs)
        pnl = sum((leg["executed_funds"] - leg["fee"]) if leg["side"] == "sell"
                  else -(leg["executed_funds"] + leg["fee"]) for leg in legs)
        assert row["pnl_krw"] == pytest.approx(pnl) and pnl > 0
        # Bithumb answers an order POST with less than an order: its leg's final state and
        # fills came from the private stream (myOrder), not from polling
        sell = next(leg for leg in legs if leg["role"] == "sell")
        final = rows(sup, "SELECT detail FROM events WHERE kind='final' AND client_id=?",
                     sell["client_id"])
        assert json.loads(final[0]["detail"])["source"] == "stream"
        os.kill(sup.pid, signal.SIGTERM)
        assert sup.wait_exit(30) == 0
        log = sup.log()
        assert "signal KRW-ETH buy upbit sell bithumb" in log and "risk check PASS" in log
        assert "realised +" in log and "ERROR" not in log


def test_sigkill_execution_between_sending_legs_and_their_answers(workdir: Path) -> None:
    config = pipeline_config(workdir, MARKETS, strategy={"cooldown_ms": 2000})
    with SupervisorProc(config) as sup:
        sup.wait_running(30)
        venues = Venues(sup)
        start = venues.balances()
        killed = 0
        for delay_ms in (0, 120, 260):  # different instants after the first leg left
            for v in ("upbit", "bithumb"):
                venues.post(v, "/_sim/faults/latency", {"ms": 300})
            before = {r["intent_id"] for r in intents(sup)}
            pid = sup.actors()["execution"]["pid"]
            venues.dislocate("bithumb" if killed % 2 == 0 else "upbit",
                             "KRW-XRP" if killed % 2 == 0 else "KRW-ETH", 90, 2500)
            # journaled legs whose requests are on their way (the venues answer after 300 ms)
            eventually(lambda: rows(sup, "SELECT 1 FROM legs WHERE state='PENDING'"), 15, 0.002,
                       what="a leg on its way")
            time.sleep(delay_ms / 1000)
            os.kill(pid, signal.SIGKILL)
            killed += 1
            sup.replaced("execution", pid, 20)
            for v in ("upbit", "bithumb"):
                venues.post(v, "/_sim/faults/clear")
            eventually(lambda: not rows(sup, "SELECT 1 FROM legs WHERE state IN ('PENDING','SENT')"),
                       20, what="every leg settled")
            eventually(lambda: not rows(sup, "SELECT 1 FROM intents WHERE state='ACCEPTED'"), 20,
                       what="every intent finished")
            assert {r["intent_id"] for r in intents(sup)} - before, "no intent was under way"
        quiesce(sup)
        assert_money_agrees(sup, venues, start)
        assert sup.log().count("journal replayed") == 4


def test_sigkill_book_strategy_waits_for_fresh_data(workdir: Path) -> None:
    with SupervisorProc(pipeline_config(workdir, MARKETS)) as sup:
        sup.wait_running(30)
        venues = Venues(sup)
        venues.post("bithumb", "/_sim/faults/ws_stall", {"on": True})
        pid = sup.actors()["book"]["pid"]
        os.kill(pid, signal.SIGKILL)
        sup.replaced("book", pid, 15)
        count = len(intents(sup))
        venues.dislocate("upbit", "KRW-ETH", -90, 1500)  # Upbit moves; Bithumb's slot is stale
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            assert len(intents(sup)) == count, "traded on stale shared memory"
            time.sleep(0.05)
        assert "all STALE until fresh data" in sup.log()
        venues.post("bithumb", "/_sim/faults/ws_stall", {"on": False})
        venues.dislocate("upbit", "KRW-ETH", -90, 2000)
        eventually(lambda: len(intents(sup, "DONE")) > 0, 20, what="trading after fresh data")


def test_sigkill_feed_replacement_resubscribes_and_trading_resumes(workdir: Path) -> None:
    with SupervisorProc(pipeline_config(workdir, MARKETS)) as sup:
        sup.wait_running(30)
        venues = Venues(sup)
        pid = sup.actors()["feed.upbit"]["pid"]
        os.kill(pid, signal.SIGKILL)
        sup.replaced("feed.upbit", pid, 15)
        venues.dislocate("upbit", "KRW-XRP", 90, 2000)
        done = eventually(lambda: intents(sup, "DONE"), 20, what="trading after the feed restart")
        assert done[0]["market"] == "KRW-XRP"


@pytest.mark.parametrize("fault", ["reject", "partial"])
def test_a_failed_or_partial_leg_is_hedged(workdir: Path, fault: str) -> None:
    with SupervisorProc(pipeline_config(workdir, MARKETS)) as sup:
        sup.wait_running(30)
        venues = Venues(sup)
        start = venues.balances()
        venues.post("bithumb", "/_sim/faults/order_next", {"action": fault, "fraction": 0.4})
        venues.dislocate("bithumb", "KRW-ETH", 90, 1500)
        hedge = eventually(lambda: rows(sup, "SELECT * FROM legs WHERE role='hedge' AND state "
                                        "IN ('DONE','CANCELLED')"), 20, what="a hedge leg")
        intent = rows(sup, "SELECT * FROM intents WHERE intent_id=?", hedge[0]["intent_id"])[0]
        assert intent["state"] in ("FAILED", "DONE") and "residual" not in intent["reason"]
        legs = rows(sup, "SELECT * FROM legs WHERE intent_id=?", intent["intent_id"])
        flat = sum(leg["executed_volume"] * (1 if leg["side"] == "buy" else -1) for leg in legs)
        assert abs(flat) < 1e-8, [dict(leg) for leg in legs]
        quiesce(sup)
        assert "hedging" in sup.log()
        assert_money_agrees(sup, venues, start)


def test_an_unhedgeable_leg_halts_the_market_with_an_alert(workdir: Path) -> None:
    with SupervisorProc(pipeline_config(workdir, MARKETS)) as sup:
        sup.wait_running(30)
        venues = Venues(sup)
        # Bithumb refuses the sell leg, then every hedge attempt, which go to Bithumb too (during
        # its dislocation it has the best bid): the coin bought on Upbit cannot be sold.
        venues.post("bithumb", "/_sim/faults/order_next", {"action": "reject", "count": 50})
        venues.dislocate("bithumb", "KRW-ETH", 90, 4000)
        eventually(lambda: "HALT KRW-ETH" in sup.log(), 20, what="the market halted")
        venues.post("bithumb", "/_sim/faults/clear")
        log = sup.log()
        assert "CRITICAL karb.execution: HALT KRW-ETH" in log and "hedge attempts" in log, log
        hedge = rows(sup, "SELECT * FROM legs WHERE role='hedge'")
        first = hedge[0]["intent_id"]
        hedge = [h for h in hedge if h["intent_id"] == first]
        assert [h["state"] for h in hedge] == ["REJECTED"] * 4
        assert [h["client_id"][-3:] for h in hedge] == ["-h1", "-h2", "-h3", "-h4"]
        # the halt holds: new KRW-ETH windows are refused, the other market still trades
        venues.dislocate("bithumb", "KRW-ETH", 90, 1500)
        venues.dislocate("bithumb", "KRW-XRP", 90, 1500)
        eventually(lambda: rows(sup, "SELECT 1 FROM intents WHERE market='KRW-XRP' AND state='DONE'"),
                   20, what="KRW-XRP still trading")
        assert not rows(sup, "SELECT 1 FROM intents WHERE market='KRW-ETH' AND state='DONE' "
                        "AND created_ns > (SELECT MAX(created_ns) FROM legs l JOIN intents i "
                        "USING (intent_id) WHERE l.role='hedge')")
        # the halt survives a restart of execution
        pid = sup.actors()["execution"]["pid"]
        os.kill(pid, signal.SIGKILL)
        sup.replaced("execution", pid, 20)
        assert "KRW-ETH stays halted" in sup.log()
        reply = control(sup, "execution", "unhalt KRW-ETH")
        assert reply.ok and reply.detail == "KRW-ETH unhalted"
        assert not control(sup, "execution", "unhalt KRW-ETH").ok  # nothing left to lift
        venues.dislocate("bithumb", "KRW-ETH", 90, 1500)
        eventually(lambda: rows(sup, "SELECT 1 FROM intents WHERE market='KRW-ETH' AND state='DONE'"),
                   20, what="KRW-ETH trading again")


def control(sup: SupervisorProc, actor: str, cmd: str) -> ControlReply:
    """Send one control command to an actor over its REP socket (Lazy Pirate)."""
    config = load_config(sup.config)

    async def ask() -> ControlReply:
        actx = zmq.asyncio.Context()
        client = LazyPirateClient(actx, control_endpoint(config, actor), timeout_ms=2000)
        try:
            req_id = uuid.uuid4().hex  # a new request; a repeated id would get the first answer
            reply = await client.request(ControlRequest(req_id=req_id, cmd=cmd), req_id)
            assert isinstance(reply, ControlReply)
            return reply
        finally:
            client.close()
            actx.destroy(linger=0)

    return asyncio.run(ask())
