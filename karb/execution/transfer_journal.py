"""The journal of coin transfers between venues: a ``transfers`` table in execution's SQLite
journal (``<run_dir>/journal.sqlite``, WAL, shared by the rebalancer and execution).

A transfer is written ``REQUESTED`` *before* the withdrawal is asked for, and every change after
that is appended to ``transfer_events`` and mirrored in its row::

    REQUESTED → ACCEPTED (the venue's uuid) → SENT (withdrawal DONE, txid) → CREDITED (deposit
    ACCEPTED at the destination);  REQUESTED → NOT_SENT (not found at the venue after the
    settle window);  ACCEPTED/SENT → FAILED (rejected, failed, cancelled by the venue)

A ``REQUESTED`` row whose answer was lost (crash, timeout) is resolved only by looking it up
(``TransferClient.find_withdrawal``: currency, amount, time) — never by asking again. Execution
reads :func:`transfer_totals` into its balance reconciliation and :func:`in_transit` into the
published inventory, so a transfer is neither a "balance the journal cannot explain" nor lost
from inventory and PnL while the coin is on its way.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from karb import clock


class TransferState(StrEnum):
    REQUESTED = "REQUESTED"
    ACCEPTED = "ACCEPTED"
    SENT = "SENT"
    CREDITED = "CREDITED"
    NOT_SENT = "NOT_SENT"
    FAILED = "FAILED"


FINAL_TRANSFER_STATES = frozenset({TransferState.CREDITED, TransferState.NOT_SENT,
                                   TransferState.FAILED})
# The coin has left (or may have left) the source venue.
LEFT_SOURCE = frozenset({TransferState.SENT, TransferState.CREDITED})

SCHEMA = """
CREATE TABLE IF NOT EXISTS transfers (
    transfer_id TEXT PRIMARY KEY, coin TEXT NOT NULL, from_venue TEXT NOT NULL,
    to_venue TEXT NOT NULL, amount REAL NOT NULL, fee REAL NOT NULL, net_type TEXT NOT NULL,
    address TEXT NOT NULL, purpose TEXT NOT NULL, state TEXT NOT NULL,
    uuid TEXT NOT NULL DEFAULT '', txid TEXT NOT NULL DEFAULT '',
    requested_ns INTEGER NOT NULL, updated_ns INTEGER NOT NULL, expected_s REAL NOT NULL,
    reason TEXT NOT NULL DEFAULT '', alerted INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS transfer_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, ts_ns INTEGER NOT NULL, transfer_id TEXT NOT NULL,
    kind TEXT NOT NULL, detail TEXT NOT NULL DEFAULT '{}');
"""

_COLUMNS = ("transfer_id, coin, from_venue, to_venue, amount, fee, net_type, address, purpose, "
            "state, uuid, txid, requested_ns, updated_ns, expected_s, reason, alerted")


@dataclass
class TransferRecord:
    transfer_id: str
    coin: str
    from_venue: str
    to_venue: str
    amount: float
    fee: float
    net_type: str
    address: str
    purpose: str  # "coin" (coin skew) or "krw" (coin bought for a KRW skew)
    state: TransferState
    uuid: str = ""
    txid: str = ""
    requested_ns: int = 0
    updated_ns: int = 0
    expected_s: float = 0.0
    reason: str = ""
    alerted: int = 0

    def __post_init__(self) -> None:
        self.state = TransferState(self.state)

    @property
    def final(self) -> bool:
        return self.state in FINAL_TRANSFER_STATES

    @property
    def in_transit(self) -> bool:
        """Left the source (or may have) and not yet credited: counted at the destination."""
        return self.state in (TransferState.ACCEPTED, TransferState.SENT)

    def overdue(self, now_ns: int) -> bool:
        return not self.final and now_ns - self.requested_ns > self.expected_s * 1e9


def new_transfer_id() -> str:
    return "t" + uuid.uuid4().hex[:15]


class TransferJournal:
    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False,
                                  timeout=5.0)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    def request(self, rec: TransferRecord) -> None:
        """Write-ahead: the transfer exists in the journal before the venue is asked."""
        now = clock.time_ns()
        rec.requested_ns = rec.requested_ns or now
        rec.updated_ns = now
        rec.state = TransferState.REQUESTED
        with self.db:
            self.db.execute("BEGIN")
            self.db.execute(f"INSERT INTO transfers ({_COLUMNS}) VALUES "
                            f"({','.join('?' * 17)})", _row(rec))
            self._event(rec.transfer_id, "requested",
                        {"coin": rec.coin, "amount": rec.amount, "from": rec.from_venue,
                         "to": rec.to_venue}, now)

    def update(self, rec: TransferRecord, kind: str, detail: dict[str, Any] | None = None) -> None:
        now = clock.time_ns()
        rec.updated_ns = now
        with self.db:
            self.db.execute("BEGIN")
            self.db.execute("UPDATE transfers SET state=?, uuid=?, txid=?, fee=?, updated_ns=?, "
                            "reason=?, alerted=? WHERE transfer_id=?",
                            (str(rec.state), rec.uuid, rec.txid, rec.fee, now, rec.reason,
                             rec.alerted, rec.transfer_id))
            self._event(rec.transfer_id, kind, detail or {"state": str(rec.state)}, now)

    def _event(self, transfer_id: str, kind: str, detail: dict[str, Any], now: int) -> None:
        self.db.execute("INSERT INTO transfer_events (ts_ns, transfer_id, kind, detail) "
                        "VALUES (?,?,?,?)", (now, transfer_id, kind, json.dumps(detail)))

    def get(self, transfer_id: str) -> TransferRecord | None:
        row = self.db.execute(f"SELECT {_COLUMNS} FROM transfers WHERE transfer_id=?",
                              (transfer_id,)).fetchone()
        return TransferRecord(*row) if row else None

    def all(self, only_open: bool = False) -> list[TransferRecord]:
        return transfers(self.db, only_open)

    def events(self, transfer_id: str) -> list[str]:
        return [r[0] for r in self.db.execute(
            "SELECT kind FROM transfer_events WHERE transfer_id=? ORDER BY id", (transfer_id,))]


def _row(rec: TransferRecord) -> tuple[Any, ...]:
    return (rec.transfer_id, rec.coin, rec.from_venue, rec.to_venue, rec.amount, rec.fee,
            rec.net_type, rec.address, rec.purpose, str(rec.state), rec.uuid, rec.txid,
            rec.requested_ns, rec.updated_ns, rec.expected_s, rec.reason, rec.alerted)


def _has_table(db: sqlite3.Connection) -> bool:
    return db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='transfers'"
                      ).fetchone() is not None


def transfers(db: sqlite3.Connection, only_open: bool = False) -> list[TransferRecord]:
    if not _has_table(db):
        return []
    sql = f"SELECT {_COLUMNS} FROM transfers"
    if only_open:
        sql += " WHERE state NOT IN ('CREDITED', 'NOT_SENT', 'FAILED')"
    return [TransferRecord(*row) for row in db.execute(sql + " ORDER BY requested_ns")]


def transfer_totals(db: sqlite3.Connection) -> dict[tuple[str, str], float]:
    """Per (venue, coin), what transfers changed as far as the journal knows: amount + fee out
    of the source once sent, the amount into the destination once credited (added to the
    journal's fill totals by the balance reconciliation)."""
    out: dict[tuple[str, str], float] = {}
    for t in transfers(db):
        if t.state in LEFT_SOURCE:
            key = (t.from_venue, t.coin)
            out[key] = out.get(key, 0.0) - t.amount - t.fee
        if t.state == TransferState.CREDITED:
            key = (t.to_venue, t.coin)
            out[key] = out.get(key, 0.0) + t.amount
    return out


def open_transfer_steps(db: sqlite3.Connection) -> dict[tuple[str, str], float]:
    """Per (venue, coin), the next move of each open transfer that the venue may already have
    made while the journal has not followed it yet: the withdrawal leaving the source (amount +
    fee) while the journal says REQUESTED or ACCEPTED, the deposit being credited at the
    destination (amount) while it says anything short of CREDITED. The balance check accepts a
    balance on either side of such a step (one transfer per coin at a time: one step per key
    and side), so it need not wait for every transfer to finish — a BTC transfer takes most of
    an hour."""
    out: dict[tuple[str, str], float] = {}
    for t in transfers(db, only_open=True):
        if t.state in (TransferState.REQUESTED, TransferState.ACCEPTED):
            key = (t.from_venue, t.coin)
            out[key] = out.get(key, 0.0) - t.amount - t.fee
        key = (t.to_venue, t.coin)
        out[key] = out.get(key, 0.0) + t.amount
    return out


def in_transit(db: sqlite3.Connection) -> dict[str, dict[str, float]]:
    """coin → destination venue → amount on its way (accepted or sent, not yet credited)."""
    out: dict[str, dict[str, float]] = {}
    for t in transfers(db, only_open=True):
        if t.in_transit:
            per = out.setdefault(t.coin, {})
            per[t.to_venue] = per.get(t.to_venue, 0.0) + t.amount
    return out
