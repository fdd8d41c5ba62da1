"""The write-ahead journal of execution: SQLite in WAL mode in the run dir.

An intent and the client ids of its legs are written *before* anything is sent; every state
change after that is appended to ``events`` and mirrored in the ``legs`` row. On start the
execution actor reads back every leg that is not final and reconciles it with its venue by
client id before it accepts anything new. ``synchronous=NORMAL`` in WAL mode survives the death
of the process (our failure model: SIGKILL at any instant); ``journal_sync: full`` in the config
makes every commit survive a power cut too, at the price of an fsync per write.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from karb import clock
from karb.execution.transfer_journal import transfer_totals
from karb.trading.orders import FINAL_LEG_STATES, LegRecord

__all__ = ["Journal", "LegRecord"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS intents (
    intent_id TEXT PRIMARY KEY, market TEXT NOT NULL, buy_venue TEXT NOT NULL,
    sell_venue TEXT NOT NULL, volume REAL NOT NULL, buy_limit REAL NOT NULL,
    sell_limit REAL NOT NULL, state TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '',
    pnl_krw REAL NOT NULL DEFAULT 0, created_ns INTEGER NOT NULL, updated_ns INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS legs (
    client_id TEXT PRIMARY KEY, intent_id TEXT NOT NULL, role TEXT NOT NULL,
    venue TEXT NOT NULL, market TEXT NOT NULL, side TEXT NOT NULL, price REAL NOT NULL,
    volume REAL NOT NULL, state TEXT NOT NULL, order_id TEXT NOT NULL DEFAULT '',
    executed_volume REAL NOT NULL DEFAULT 0, executed_funds REAL NOT NULL DEFAULT 0,
    fee REAL NOT NULL DEFAULT 0, updated_ns INTEGER NOT NULL,
    gave_up_ns INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, ts_ns INTEGER NOT NULL, intent_id TEXT NOT NULL,
    client_id TEXT NOT NULL DEFAULT '', kind TEXT NOT NULL, detail TEXT NOT NULL DEFAULT '{}');
CREATE INDEX IF NOT EXISTS legs_intent ON legs(intent_id);
-- Open legs are looked up on every reconciliation sweep: without it a sweep reads every leg
-- ever written.
CREATE INDEX IF NOT EXISTS legs_state ON legs(state);
-- Settling an intent reads its events: without it every settlement scans the whole history.
CREATE INDEX IF NOT EXISTS events_intent ON events(intent_id);
CREATE TABLE IF NOT EXISTS halts (
    market TEXT PRIMARY KEY, reason TEXT NOT NULL, ts_ns INTEGER NOT NULL);
"""


class Journal:
    def __init__(self, path: Path, sync: str = "normal") -> None:
        self.path = path
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(f"PRAGMA synchronous={'FULL' if sync == 'full' else 'NORMAL'}")
        # No automatic checkpoint: it would land inside an order's critical path (measured:
        # 3 ms at p99). The owner calls checkpoint() when nothing is in flight.
        self.db.execute("PRAGMA wal_autocheckpoint=0")
        self.db.executescript(SCHEMA)
        columns = {row[1] for row in self.db.execute("PRAGMA table_info(legs)")}
        if "gave_up_ns" not in columns:  # a journal written before the settle-window column
            self.db.execute("ALTER TABLE legs ADD COLUMN gave_up_ns INTEGER NOT NULL DEFAULT 0")

    def checkpoint(self) -> None:
        """Fold the WAL into the database; call when no intent is in flight."""
        self.db.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def close(self) -> None:
        self.checkpoint()
        self.db.close()

    def intent_state(self, intent_id: str) -> tuple[str, str] | None:
        row = self.db.execute("SELECT state, reason FROM intents WHERE intent_id=?",
                              (intent_id,)).fetchone()
        return (row[0], row[1]) if row else None

    def open_intent(self, intent: Any, legs: list[LegRecord]) -> None:
        """The intent and its legs, in one transaction, before any leg is sent."""
        now = clock.time_ns()
        with self.db:
            self.db.execute("BEGIN")
            self.db.execute(
                "INSERT INTO intents VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (intent.intent_id, intent.market, intent.buy_venue, intent.sell_venue,
                 intent.volume, intent.buy_limit, intent.sell_limit, "ACCEPTED", "", 0.0, now, now))
            for leg in legs:
                self._insert_leg(leg, now)
            self._event(intent.intent_id, "", "accepted", {"net_bps": intent.net_bps}, now)

    def open_algo(self, algo_id: str, algo: str, venue: str, market: str, side: str,
                  volume: float, limit_price: float) -> None:
        """An execution algorithm's order (karb.execution.algos): an intent row of its own, so
        its children (legs ``<algo_id>-aN``) are journaled, reconciled and recovered as legs."""
        now = clock.time_ns()
        buy, sell = (venue, "") if side == "buy" else ("", venue)
        with self.db:
            self.db.execute("BEGIN")
            self.db.execute(
                "INSERT INTO intents VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (algo_id, market, buy, sell, volume, limit_price if buy else 0.0,
                 limit_price if sell else 0.0, "ACCEPTED", f"algo {algo}", 0.0, now, now))
            self._event(algo_id, "", "algo_started", {"algo": algo, "side": side}, now)

    def reject_intent(self, intent: Any, reason: str) -> None:
        now = clock.time_ns()
        self.db.execute(
            "INSERT OR IGNORE INTO intents VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (intent.intent_id, intent.market, intent.buy_venue, intent.sell_venue, intent.volume,
             intent.buy_limit, intent.sell_limit, "REJECTED", reason, 0.0, now, now))

    def add_leg(self, leg: LegRecord) -> None:
        """A leg added later (a hedge): journaled before it is sent, like the others."""
        now = clock.time_ns()
        with self.db:
            self.db.execute("BEGIN")
            self._insert_leg(leg, now)
            self._event(leg.intent_id, leg.client_id, "leg_added", {"role": leg.role}, now)

    def _insert_leg(self, leg: LegRecord, now: int) -> None:
        leg.updated_ns = now
        self.db.execute("INSERT INTO legs VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                        (leg.client_id, leg.intent_id, leg.role, leg.venue, leg.market, leg.side,
                         leg.price, leg.volume, str(leg.state), leg.order_id, leg.executed_volume,
                         leg.executed_funds, leg.fee, now, leg.gave_up_ns))

    def update_leg(self, leg: LegRecord, kind: str, detail: dict[str, Any] | None = None) -> None:
        now = clock.time_ns()
        leg.updated_ns = now  # the in-memory record and the journal agree on every field
        with self.db:
            self.db.execute("BEGIN")
            self.db.execute(
                "UPDATE legs SET state=?, order_id=?, executed_volume=?, executed_funds=?, fee=?, "
                "updated_ns=?, gave_up_ns=? WHERE client_id=?",
                (str(leg.state), leg.order_id, leg.executed_volume, leg.executed_funds, leg.fee,
                 now, leg.gave_up_ns, leg.client_id))
            self._event(leg.intent_id, leg.client_id, kind, detail or {"state": str(leg.state)}, now)

    def finish_intent(self, intent_id: str, state: str, pnl_krw: float, reason: str = "") -> None:
        now = clock.time_ns()
        with self.db:
            self.db.execute("BEGIN")
            self.db.execute("UPDATE intents SET state=?, pnl_krw=?, reason=?, updated_ns=? "
                            "WHERE intent_id=?", (state, pnl_krw, reason, now, intent_id))
            self._event(intent_id, "", "finished", {"state": state, "pnl_krw": pnl_krw}, now)

    def _event(self, intent_id: str, client_id: str, kind: str, detail: dict[str, Any], now: int) -> None:
        self.db.execute("INSERT INTO events (ts_ns, intent_id, client_id, kind, detail) "
                        "VALUES (?,?,?,?,?)", (now, intent_id, client_id, kind, json.dumps(detail)))

    def halt(self, market: str, reason: str) -> None:
        """A halted market stays halted across restarts, until unhalt()."""
        self.db.execute("INSERT OR REPLACE INTO halts VALUES (?,?,?)", (market, reason, clock.time_ns()))

    def unhalt(self, market: str) -> bool:
        return self.db.execute("DELETE FROM halts WHERE market=?", (market,)).rowcount > 0

    def halted(self) -> dict[str, str]:
        return dict(self.db.execute("SELECT market, reason FROM halts").fetchall())

    def legs(self, intent_id: str | None = None, only_open: bool = False) -> list[LegRecord]:
        sql = ("SELECT client_id, intent_id, role, venue, market, side, price, volume, state, "
               "order_id, executed_volume, executed_funds, fee, updated_ns, gave_up_ns FROM legs")
        where, args = [], []
        if intent_id is not None:
            where.append("intent_id=?")
            args.append(intent_id)
        if only_open:
            where.append("state NOT IN (%s)" % ",".join("?" * len(FINAL_LEG_STATES)))
            args.extend(sorted(str(state) for state in FINAL_LEG_STATES))
        if where:
            sql += " WHERE " + " AND ".join(where)
        return [LegRecord(*row) for row in self.db.execute(sql + " ORDER BY rowid", args)]

    def leg(self, client_id: str) -> LegRecord | None:
        row = self.db.execute(
            "SELECT client_id, intent_id, role, venue, market, side, price, volume, state, "
            "order_id, executed_volume, executed_funds, fee, updated_ns, gave_up_ns FROM legs "
            "WHERE client_id=?", (client_id,)).fetchone()
        return LegRecord(*row) if row else None

    def reopen_intent(self, intent_id: str, why: str) -> None:
        """An intent settled earlier whose legs the venue contradicts (an order found late):
        back to RECONCILING until it is settled again."""
        now = clock.time_ns()
        with self.db:
            self.db.execute("BEGIN")
            self.db.execute("UPDATE intents SET state='RECONCILING', updated_ns=? WHERE intent_id=?",
                            (now, intent_id))
            self._event(intent_id, "", "reopened", {"why": why}, now)

    def ingest_intent(self, intent_id: str, market: str, why: str) -> None:
        """An intent the journal never saw (its order found at a venue): a placeholder row."""
        now = clock.time_ns()
        self.db.execute("INSERT OR IGNORE INTO intents VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                        (intent_id, market, "", "", 0.0, 0.0, 0.0, "RECONCILING", why, 0.0, now, now))

    def executed_totals(self) -> dict[tuple[str, str], float]:
        """Per (venue, currency), what every journaled fill changed: coin bought minus sold, KRW
        received minus paid, fees in; and coin moved by settled transfers. The balance
        reconciliation compares venue balances with a baseline plus the change of these since
        the baseline."""
        out: dict[tuple[str, str], float] = {}
        rows = self.db.execute("SELECT venue, market, side, SUM(executed_volume), "
                               "SUM(executed_funds), SUM(fee) FROM legs GROUP BY venue, market, side")
        for venue, market, side, volume, funds, fee in rows:
            quote, coin = market.split("-", 1)
            sign = 1 if side == "buy" else -1
            out[(venue, coin)] = out.get((venue, coin), 0.0) + sign * volume
            out[(venue, quote)] = out.get((venue, quote), 0.0) - sign * funds - fee
        for key, amount in transfer_totals(self.db).items():  # the rebalancer's transfers
            out[key] = out.get(key, 0.0) + amount
        return out

    def event_kinds(self, intent_id: str) -> list[str]:
        return [r[0] for r in self.db.execute(
            "SELECT kind FROM events WHERE intent_id=? ORDER BY id", (intent_id,))]

    def open_intents(self) -> list[str]:
        rows = self.db.execute("SELECT intent_id FROM intents WHERE state IN "
                               "('ACCEPTED', 'RECONCILING') ORDER BY created_ns")
        return [r[0] for r in rows]

    def intent_row(self, intent_id: str) -> dict[str, Any]:
        cur = self.db.execute("SELECT * FROM intents WHERE intent_id=?", (intent_id,))
        names = [d[0] for d in cur.description]
        row = cur.fetchone()
        return dict(zip(names, row)) if row else {}
