"""Helpers for pipeline tests: a full K-Arb (simulator + all actors) on free ports, and readers
for the journal and the simulator's own records."""

from __future__ import annotations

import json
import sqlite3
import urllib.request
from pathlib import Path
from typing import Any

from tests.support import SupervisorProc, free_ports, write_config


def pipeline_config(workdir: Path, markets: list[str], strategy: dict[str, Any] | None = None,
                    execution: dict[str, Any] | None = None, sim: dict[str, Any] | None = None,
                    **sections: Any) -> Path:
    up = free_ports(2)
    bt = up + 1
    venues = [{"name": "upbit", "rest_url": f"http://127.0.0.1:{up}",
               "ws_url": f"ws://127.0.0.1:{up}/websocket/v1", "credentials": "sim",
               "taker_fee": 0.0005, "request_timeout_ms": 3000},
              {"name": "bithumb", "rest_url": f"http://127.0.0.1:{bt}",
               "ws_url": f"ws://127.0.0.1:{bt}/websocket/v1", "credentials": "sim",
               "taker_fee": 0.0004, "request_timeout_ms": 3000}]
    sim_cfg = {"seed": 11, "step_ms": 100, "noise_bps": 2.0, "volatility_bps": 1.0,
               "dislocation": {"rate_per_min": 0.0}, "upbit": {"port": up, "fee_rate": 0.0005},
               "bithumb": {"port": bt, "fee_rate": 0.0004}, **(sim or {})}
    strat = {"min_edge_bps": 15, "cooldown_ms": 300, "max_in_flight": 2,
             "max_notional_krw": 1_000_000, "max_move_bps": 200, **(strategy or {})}
    exe = {"mode": "live", "max_notional_krw": 1_000_000, "leg_timeout_ms": 3000,
           **(execution or {})}
    actors: list[dict[str, Any]] = [{"name": "sim", "kind": "sim"},
              {"name": "feed.upbit", "kind": "feed", "params": {"venue": "upbit"}},
              {"name": "feed.bithumb", "kind": "feed", "params": {"venue": "bithumb"}},
              {"name": "book", "kind": "book", "params": {"stale_after_ms": 1500}},
              {"name": "execution", "kind": "execution", "params": exe},
              {"name": "strategy", "kind": "strategy", "params": strat}]
    return write_config(workdir, actors, venues=venues, markets=markets, sim=sim_cfg,
                        **sections)


class Venues:
    """The simulator's REST and /_sim/ endpoints, from the config the pipeline runs."""

    def __init__(self, sup: SupervisorProc) -> None:
        import yaml
        cfg = yaml.safe_load(sup.config.read_text())
        self.rest = {v["name"]: v["rest_url"] for v in cfg["venues"]}

    def post(self, venue: str, path: str, body: dict[str, Any] | None = None) -> Any:
        req = urllib.request.Request(self.rest[venue] + path, data=json.dumps(body or {}).encode(),
                                     method="POST", headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=5) as resp:
            return json.load(resp)

    def get(self, venue: str, path: str) -> Any:
        with urllib.request.urlopen(self.rest[venue] + path, timeout=5) as resp:
            return json.load(resp)

    def orders(self) -> dict[str, list[dict[str, Any]]]:
        return {v: self.get(v, "/_sim/orders") for v in self.rest}

    def balances(self) -> dict[str, dict[str, dict[str, float]]]:
        return {v: self.get(v, "/_sim/accounts")["sim-access"] for v in self.rest}

    def dislocate(self, venue: str, market: str, bps: float, duration_ms: int = 2000) -> None:
        self.post(venue, "/_sim/dislocate", {"market": market, "bps": bps, "duration_ms": duration_ms})


def journal(sup: SupervisorProc) -> sqlite3.Connection:
    db = sqlite3.connect(f"file:{sup.run_dir / 'journal.sqlite'}?mode=ro", uri=True, timeout=5)
    db.row_factory = sqlite3.Row
    return db


def rows(sup: SupervisorProc, sql: str, *args: Any) -> list[sqlite3.Row]:
    path = sup.run_dir / "journal.sqlite"
    if not path.exists():
        return []
    db = journal(sup)
    try:
        return db.execute(sql, args).fetchall()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):  # not created yet
            return []
        raise AssertionError(f"journal not readable now: {exc}") from None  # eventually retries
    finally:
        db.close()


def quiesce(sup: SupervisorProc, executor: str = "execution") -> None:
    """Engage the kill switch (a KILL file) and wait until nothing is in flight."""
    from tests.support import eventually
    (sup.run_dir / "KILL").touch()
    # Execution looks at the file at most every 100 ms: once its heartbeat says it saw it, no
    # intent is accepted any more, and every one accepted before is in the journal (an intent
    # and its legs are written before the ack).
    eventually(lambda: sup.actors()[executor]["extra"].get("kill_switch") == 1.0
               and sup.actors()[executor]["state"] == "RUNNING", 20,
               what="the kill switch seen by execution")
    eventually(lambda: not rows(sup, "SELECT 1 FROM intents WHERE state IN "
                                     "('ACCEPTED','RECONCILING')")
               and not rows(sup, "SELECT 1 FROM legs WHERE state IN ('PENDING','SENT','UNKNOWN')"), 20,
               what="nothing in flight")


def assert_money_agrees(sup: SupervisorProc, venues: Venues, start: dict[str, Any]) -> None:
    """The venues' records, their balances and our journal tell one story."""
    orders = venues.orders()
    legs = {r["client_id"]: r for r in rows(sup, "SELECT * FROM legs")}
    for venue, placed in orders.items():
        ids = [o["client_id"] for o in placed]
        assert len(ids) == len(set(ids)), f"duplicate orders on {venue}: {ids}"
        unknown = [i for i in ids if i not in legs]
        assert not unknown, f"orders on {venue} unknown to the journal: {unknown}"
        for o in placed:
            leg = legs[o["client_id"]]
            assert leg["state"] in ("DONE", "CANCELLED"), dict(leg)
            assert abs(leg["executed_volume"] - float(o["executed_volume"])) < 1e-8, (dict(leg), o)
    not_final = [dict(r) for r in legs.values()
                 if r["state"] not in ("DONE", "CANCELLED", "REJECTED", "NOT_SENT")]
    assert not not_final, f"legs left open: {not_final}"
    now = venues.balances()
    for venue, placed in orders.items():
        deltas: dict[str, float] = {"KRW": 0.0}
        for o in placed:
            coin = o["market"].split("-")[1]
            funds = sum(float(f["funds"]) for f in o["fills"])
            fee = sum(float(f["fee"]) for f in o["fills"])
            vol = sum(float(f["volume"]) for f in o["fills"])
            sign = 1 if o["side"] == "bid" else -1
            deltas["KRW"] -= sign * funds + fee
            deltas[coin] = deltas.get(coin, 0.0) + sign * vol
        for currency, delta in deltas.items():
            before = start[venue].get(currency, {"free": 0.0, "locked": 0.0})
            after = now[venue].get(currency, {"free": 0.0, "locked": 0.0})
            moved = (after["free"] + after["locked"]) - (before["free"] + before["locked"])
            assert abs(moved - delta) < 1e-6 * max(1.0, abs(delta)), (venue, currency, moved, delta)
