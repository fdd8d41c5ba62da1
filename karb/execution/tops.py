"""A read-only view of the shared-memory top of book, as execution needs it: each (venue, market)
quote with its age by the monotonic receipt time (one clock for every process on the host; wall
clocks step), and the live BTC asks that convert a BTC notional cap."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from karb import clock
from karb.shm import VALID, TopOfBookTable


@dataclass(frozen=True)
class Quote:
    bid: float
    ask: float
    bid_size: float
    ask_size: float
    age_ms: float


class Tops(Protocol):
    def quote(self, venue: str, market: str) -> Quote | None:
        """The venue's valid top of ``market`` (None: missing, crossed, stale or unreadable)."""

    def asks(self, market: str) -> list[float]:
        """Every venue's valid ask of ``market``."""


class ShmTops:
    def __init__(self, table: TopOfBookTable, venues: list[str], markets: list[str]) -> None:
        self.table = table
        self.venues = venues
        self.vindex = {v: i for i, v in enumerate(venues)}
        self.mindex = {m: i for i, m in enumerate(markets)}

    def quote(self, venue: str, market: str) -> Quote | None:
        vi, mi = self.vindex.get(venue), self.mindex.get(market)
        if vi is None or mi is None:
            return None
        top = self.table.read(self.table.slot(vi, mi))
        if top is None or top.flags != VALID:
            return None
        return Quote(top.bid_px, top.ask_px, top.bid_size, top.ask_size,
                     (clock.monotonic_ns() - top.recv_mono) / 1e6)

    def asks(self, market: str) -> list[float]:
        return [q.ask for v in self.venues if (q := self.quote(v, market)) is not None]
