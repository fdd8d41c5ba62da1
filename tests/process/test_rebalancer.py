"""The rebalancer in the whole pipeline against the simulator: dislocations push XRP to one
venue (hedged round trips), the skew leaves its band, a transfer brings it back — with the
rebalancer SIGKILLed while its withdrawal is unanswered (nothing sent twice, nothing lost), the
money agreeing three ways (venues' orders and transfers, their balances, our journal), and a
stuck withdrawal raising an alert."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.process.pipeline import Venues, assert_money_agrees, pipeline_config, quiesce, rows
from tests.process.test_pipeline import control
from tests.support import SupervisorProc, eventually

ACCESS = "sim-access"
XRP0 = 4000.0  # 12 M KRW on each venue: one 1 M KRW round trip moves the share by ~4 %


def config(workdir: Path) -> Path:
    sim = {"accounts": [{"access_key": ACCESS, "secret_key": "sim-secret",
                         "balances": {"KRW": 50_000_000.0, "XRP": XRP0}}],
           "transfers": {"processing_s": 0.3, "coins": {"XRP": {"fee": 0.4, "minimum": 2.0,
                                                                "confirm_s": 0.5}}}}
    rebalance = {"default": {"band": 0.03}, "out_of_band_s": 1.0, "stuck_after_s": 3.0,
                 "addresses": {v: {"XRP": {"address": f"sim-{v}-XRP-{ACCESS}"}}
                               for v in ("upbit", "bithumb")},
                 "travel_rule": {v: {"exchange_name": v, "receiver_ko_name": "김카브",
                                     "receiver_en_name": "Kim Karb"} for v in ("upbit", "bithumb")}}
    path = pipeline_config(workdir, ["KRW-XRP"], sim=sim, rebalance=rebalance,
                           execution={"balance_refresh_s": 0.3, "reconcile_interval_s": 1.0})
    data = yaml.safe_load(path.read_text())
    data["actors"].append({"name": "rebalancer", "kind": "rebalancer",
                           "params": {"check_interval_ms": 100, "settle_s": 3.0}})
    path.write_text(yaml.safe_dump(data))
    return path


def transfers(sup: SupervisorProc, state: str | None = None) -> list[Any]:
    if state is None:
        return rows(sup, "SELECT * FROM transfers ORDER BY requested_ns")
    return rows(sup, "SELECT * FROM transfers WHERE state=? ORDER BY requested_ns", state)


def withdrawals(venues: Venues) -> list[dict[str, Any]]:
    out = []
    for v in venues.rest:
        got = venues.get(v, "/_sim/transfers")
        out += [w for w in got["withdrawals"] if w.get("venue", v) == v]
    return out


def xrp_total(venues: Venues) -> float:
    b = venues.balances()
    return sum(b[v]["XRP"]["free"] + b[v]["XRP"]["locked"] + b[v]["XRP"].get("in_transit", 0.0)
               for v in b)


def test_skew_out_of_band_is_restored_by_a_transfer_hedged_and_killed_midway(workdir: Path) -> None:
    with SupervisorProc(config(workdir)) as sup:
        sup.wait_running(30)
        venues = Venues(sup)
        start = venues.balances()
        venues.dislocate("bithumb", "KRW-XRP", -90, 1500)  # cheap on bithumb: XRP goes there
        eventually(lambda: rows(sup, "SELECT 1 FROM intents WHERE state='DONE'"), 20,
                   what="a round trip")
        # the bithumb withdrawal will hang 1.5 s before the venue acts: the rebalancer dies then
        venues.post("bithumb", "/_sim/faults/latency", {"ms": 1500})
        # hedged: the round trip left the coin total where it was
        assert abs(xrp_total(venues) - 2 * XRP0) < 1e-6
        eventually(lambda: transfers(sup, "REQUESTED"), 20, 0.005, what="a transfer requested")
        pid = sup.actors()["rebalancer"]["pid"]
        os.kill(pid, signal.SIGKILL)
        venues.post("bithumb", "/_sim/faults/clear")
        eventually(lambda: sup.actors()["rebalancer"]["pid"] != pid
                   and sup.actors()["rebalancer"]["state"] == "RUNNING", 20, what="a restart")
        eventually(lambda: transfers(sup, "CREDITED"), 30, what="a transfer credited")
        eventually(lambda: not rows(sup, "SELECT 1 FROM transfers WHERE state NOT IN "
                                         "('CREDITED','NOT_SENT','FAILED')"), 20,
                   what="no transfer open")
        # never sent twice: every venue withdrawal is one journaled transfer, and back
        sent = withdrawals(venues)
        journaled = {t["uuid"]: t for t in transfers(sup) if t["uuid"]}
        assert sorted(w["uuid"] for w in sent) == sorted(journaled), (sent, journaled)
        for t in transfers(sup):
            assert t["state"] in ("CREDITED", "NOT_SENT"), dict(t)
        # the skew is back in its band
        reply = control(sup, "rebalancer", "rebal")
        report = json.loads(reply.detail)
        eventually(lambda: not json.loads(control(sup, "rebalancer", "rebal").detail)
                   ["skew"]["XRP"]["out_of_band"], 10, what="XRP back in band")
        assert "transfers" in report and "counts" in report
        tap = subprocess.run([sys.executable, "tools/tap.py", str(sup.config), "--rebal"],
                             capture_output=True, text=True, timeout=20,
                             cwd=Path(__file__).resolve().parents[2])
        assert tap.returncode == 0 and "rebal XRP" in tap.stdout and "credited=" in tap.stdout, tap
        # an execution algorithm's children go through the same journal and legs
        reply = control(sup, "execution", "algo auto upbit KRW-XRP buy 10 3300 2 0.5")
        assert reply.ok and reply.detail.startswith("algo i"), reply
        algo_id = reply.detail.split()[1]
        eventually(lambda: rows(sup, "SELECT 1 FROM intents WHERE intent_id=? AND state='DONE'",
                                algo_id), 15, what="the algorithm finished")
        children = rows(sup, "SELECT * FROM legs WHERE intent_id=?", algo_id)
        assert children and all(c["role"] == "algo" and c["client_id"].startswith(algo_id + "-a")
                                for c in children)
        assert sum(c["executed_volume"] for c in children) > 0
        assert "quality" in json.loads(control(sup, "execution", "algos").detail)
        quiesce(sup)
        # three ways: the venues' fills and withdrawals explain their balances (the journal's
        # legs are checked against the orders by assert_money_agrees, its transfers here)
        moved = dict(start)
        fees = 0.0
        for t in transfers(sup, "CREDITED"):
            src, dst = t["from_venue"], t["to_venue"]
            moved = _add(moved, src, -(t["amount"] + t["fee"]))
            moved = _add(moved, dst, t["amount"])
            fees += t["fee"]
        assert_money_agrees(sup, venues, moved)
        bought = sum(c["executed_volume"] for c in children)
        assert abs(xrp_total(venues) - (2 * XRP0 - fees + bought)) < 1e-6
        assert "balances disagree" not in sup.log()

        # a stuck withdrawal raises an alert
        (sup.run_dir / "KILL").unlink()
        venues.post("upbit", "/_sim/faults/withdraw_next", {"action": "stuck"})
        venues.dislocate("upbit", "KRW-XRP", -90, 1500)  # XRP to upbit now
        eventually(lambda: "transfer_stuck" in sup.log() or "after 3 s" in sup.log(), 30,
                   what="a stuck-transfer alert")


def _add(balances: dict[str, Any], venue: str, amount: float) -> dict[str, Any]:
    out = {v: dict(c) for v, c in balances.items()}
    xrp = dict(out[venue].get("XRP", {"free": 0.0, "locked": 0.0}))
    xrp["free"] = xrp["free"] + amount
    out[venue]["XRP"] = xrp
    return out


def test_krw_skew_is_fixed_by_a_hedged_pair_algorithm_with_kills_midway(workdir: Path) -> None:
    """KRW out of band (a target of 80 % on upbit): the rebalancer buys XRP on the KRW-heavy
    bithumb and sells it on upbit in hedged children through execution; the rebalancer and then
    execution SIGKILLed mid-algorithm, nothing is sent twice, and the venues, their balances and
    the journal agree."""
    path = config(workdir)
    data = yaml.safe_load(path.read_text())
    # XRP's own band wide: only the KRW path moves anything (and its send-back, if a child
    # left coin on the buy venue)
    data["rebalance"] |= {"krw": {"target": {"upbit": 0.8}, "band": 0.05}, "out_of_band_s": 0.5,
                          "default": {"band": 0.45}}
    data["actors"] = [a for a in data["actors"] if a["kind"] != "strategy"]
    for a in data["actors"]:
        if a["kind"] == "rebalancer":
            a["params"] |= {"krw_trade_krw": 4_000_000, "krw_child_krw": 500_000,
                            "krw_algo": "twap", "krw_horizon_s": 4.0, "krw_slice_s": 0.5,
                            "krw_max_cost_bps": 60}
    path.write_text(yaml.safe_dump(data))
    with SupervisorProc(path) as sup:
        sup.wait_running(30)
        venues = Venues(sup)
        start = venues.balances()

        def children() -> list[Any]:
            return rows(sup, "SELECT * FROM intents WHERE buy_venue='bithumb' AND "
                             "sell_venue='upbit' AND state='DONE'")

        eventually(lambda: len(children()) >= 2, 20, 0.02, what="two pair children done")
        pid = sup.actors()["rebalancer"]["pid"]
        os.kill(pid, signal.SIGKILL)  # mid-algorithm: its running child is execution's
        eventually(lambda: sup.actors()["rebalancer"]["pid"] != pid
                   and sup.actors()["rebalancer"]["state"] == "RUNNING", 20, what="a restart")
        eventually(lambda: json.loads(control(sup, "rebalancer", "rebal").detail)
                   ["counts"]["krw_trades"] >= 1, 20, what="a KRW trade after the restart")
        # execution SIGKILLed while the algorithm runs: its children in flight are recovered
        # from the journal by the next incarnation, the next ones go to it
        done = len(children())
        pid = sup.actors()["execution"]["pid"]
        os.kill(pid, signal.SIGKILL)
        eventually(lambda: sup.actors()["execution"]["pid"] != pid
                   and sup.actors()["execution"]["state"] == "RUNNING", 20, what="a restart")
        eventually(lambda: len(children()) > done, 20, 0.02, what="a child after the restart")
        moved = venues.balances()
        assert moved["upbit"]["KRW"]["free"] > start["upbit"]["KRW"]["free"]  # KRW went to upbit
        quiesce(sup)  # no new children: settle and compare
        eventually(lambda: not rows(sup, "SELECT 1 FROM transfers WHERE state NOT IN "
                                         "('CREDITED','NOT_SENT','FAILED')"), 20,
                   what="no transfer open")
        expected, fees = dict(start), 0.0
        for t in transfers(sup, "CREDITED"):
            expected = _add(expected, t["from_venue"], -(t["amount"] + t["fee"]))
            expected = _add(expected, t["to_venue"], t["amount"])
            fees += t["fee"]
        assert_money_agrees(sup, venues, expected)
        # hedged throughout: every child sold what it bought (hedges included)
        assert abs(xrp_total(venues) - (2 * XRP0 - fees)) < 1e-6
        assert "balances disagree" not in sup.log()
