"""Pre-trade risk: the notional cap, balance and inventory reservations, a circuit breaker, and
the kill switch. No I/O (the kill switch's file check aside)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from karb import clock


def notional_cap(max_notional_krw: float, max_notional_btc: float | None,
                 btc_asks: list[float]) -> float:
    """The per-trade notional cap: ``max_notional_krw``, or less — ``max_notional_btc`` at the
    lowest live KRW-BTC ask — when a BTC-denominated launch cap is set. No BTC price, no trade.
    The one place this rule lives (the strategy sizes with it, execution checks with it)."""
    if max_notional_btc is None:
        return max_notional_krw
    if not btc_asks:
        return 0.0
    return min(max_notional_krw, max_notional_btc * min(btc_asks))


def inventory_key(venue: str, coin: str) -> tuple[str, str]:
    """Reservation key for coin an intent in flight may add to ``venue`` (its buy leg)."""
    return (venue, "+" + coin)


class Reservations:
    """Money promised to intents in flight, per (venue, currency), so that concurrent intents
    cannot spend the same KRW or sell the same coin twice."""

    def __init__(self) -> None:
        self._held: dict[str, dict[tuple[str, str], float]] = {}
        self._total: dict[tuple[str, str], float] = defaultdict(float)

    def available(self, free: dict[tuple[str, str], float], venue: str, currency: str,
                  excluding: str | None = None) -> float:
        """Free less what intents in flight hold (other than ``excluding``)."""
        held = self._total[(venue, currency)]
        if excluding is not None:
            held -= self._held.get(excluding, {}).get((venue, currency), 0.0)
        return free.get((venue, currency), 0.0) - held

    def held(self, key: tuple[str, str]) -> float:
        return self._total[key]

    def try_reserve(self, intent_id: str, free: dict[tuple[str, str], float],
                    needs: dict[tuple[str, str], float]) -> str | None:
        """Hold ``needs`` for ``intent_id``; returns why not, or None when held."""
        for key, amount in needs.items():
            if key[1].startswith("+"):  # an inventory reservation: a cap checked by the caller
                continue
            left = self.available(free, *key)
            if amount > left + 1e-9:
                return f"insufficient {key[1]} on {key[0]}: need {amount:,.8g}, free {left:,.8g}"
        self._held[intent_id] = dict(needs)
        for key, amount in needs.items():
            self._total[key] += amount
        return None

    def release(self, intent_id: str) -> None:
        for key, amount in self._held.pop(intent_id, {}).items():
            self._total[key] -= amount

    @property
    def in_flight(self) -> int:
        return len(self._held)


@dataclass
class CircuitBreaker:
    """CLOSED → (``threshold`` failures in a row) → OPEN for ``open_s`` → HALF_OPEN: one probe
    intent goes through; its success closes the breaker, its failure opens it again."""

    threshold: int
    open_s: float
    state: str = "CLOSED"
    failures: int = 0
    opened_at: float = 0.0
    probe_in_flight: bool = False

    def allow(self, now: float | None = None) -> str | None:
        """None if an intent may go; otherwise why not."""
        now = clock.monotonic() if now is None else now
        if self.state == "OPEN":
            if now - self.opened_at < self.open_s:
                return f"circuit open ({self.failures} failures in a row)"
            self.state = "HALF_OPEN"
        if self.state == "HALF_OPEN":
            if self.probe_in_flight:
                return "circuit half-open: a probe is in flight"
            self.probe_in_flight = True
        return None

    def record(self, success: bool, now: float | None = None) -> None:
        now = clock.monotonic() if now is None else now
        self.probe_in_flight = False
        if success:
            self.state, self.failures = "CLOSED", 0
            return
        self.failures += 1
        if self.state == "HALF_OPEN" or self.failures >= self.threshold:
            self.state, self.opened_at = "OPEN", now


@dataclass
class KillSwitch:
    """Trading stops while the file exists, or after a ``kill`` command until ``resume``."""

    path: Path
    commanded: bool = False
    _checked_at: float = field(default=0.0, repr=False)
    _file: bool = field(default=False, repr=False)

    def engaged(self, now: float | None = None) -> bool:
        now = clock.monotonic() if now is None else now
        if now - self._checked_at > 0.1:  # a stat per 100 ms, not per intent
            self._file = self.path.exists()
            self._checked_at = now
        return self.commanded or self._file
