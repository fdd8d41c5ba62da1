"""Alert rules: conditions over what the supervisor knows, turned into *firing* and *resolved*
notices — once per change, never once per check.

Rules (names shared with ``deploy/prometheus.yml``'s alerting rules):

| rule | subject | holds while |
|---|---|---|
| ``balance_low`` | venue/currency | free balance below ``alerts.balance_floors[venue][currency]`` |
| ``intent_failures`` | all | at least ``alerts.failed_intents`` intents in a row failed |
| ``stream_down`` | venue | the feed's freshest market is older than ``stream_down_s``, or the feed |
| | | actor has not been RUNNING for that long |
| ``halt`` | market | execution reports the market halted |
| ``kill_switch`` | all | execution's kill switch is engaged |
| ``actor_restarts`` | actor | at least ``alerts.restarts`` restarts within ``restarts_window_s`` |
| ``mismatch`` | market or all | a ``reconcile_mismatch`` / ``balance_mismatch`` bus alert within ``event_hold_s`` |
| ``fee_check`` | all | a ``fee_check`` bus alert within ``event_hold_s`` |

Deduplication: a (rule, subject) notifies when it starts holding and once when it stops.
Rate limit: a (rule, subject) that fired less than ``min_interval_s`` ago does not notify again
(nor its resolution); suppressed notices are counted.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Literal

from karb.config import AlertsConfig

RULES = ("balance_low", "intent_failures", "stream_down", "halt", "kill_switch",
         "actor_restarts", "mismatch", "fee_check")
CRITICAL = frozenset({"halt", "kill_switch", "mismatch", "fee_check", "intent_failures"})
Status = Literal["firing", "resolved"]


@dataclass(frozen=True)
class Notice:
    rule: str
    subject: str
    status: Status
    level: Literal["warning", "critical"]
    text: str
    ts: float


@dataclass
class Facts:
    """One look at the world, gathered by the hub for a check."""

    now: float  # time.monotonic()
    balances: dict[str, dict[str, float]] = field(default_factory=dict)  # venue → currency → free
    consecutive_failed: int = 0
    feed_age_s: dict[str, float] = field(default_factory=dict)  # venue → freshest market's age
    feed_running: dict[str, bool] = field(default_factory=dict)  # venue → its feed is RUNNING
    halted: list[str] = field(default_factory=list)
    kill_switch: bool = False
    restarts: dict[str, int] = field(default_factory=dict)  # actor → restarts so far
    events: list[tuple[str, str, str]] = field(default_factory=list)  # new (kind, market, text)


class AlertRules:
    def __init__(self, cfg: AlertsConfig) -> None:
        self.cfg = cfg
        self.active: dict[tuple[str, str], str] = {}  # (rule, subject) → text
        self.notified: set[tuple[str, str]] = set()  # active ones whose firing was sent
        self.last_fired: dict[tuple[str, str], float] = {}
        self.suppressed = 0
        self._restart_times: dict[str, deque[float]] = {}
        self._restarts_seen: dict[str, int] = {}
        self._down_since: dict[str, float] = {}
        self._events: dict[tuple[str, str], tuple[float, str]] = {}  # (rule, subject) → (at, text)

    def check(self, f: Facts) -> list[Notice]:
        """The notices this look produces (firing and resolved), already deduplicated and
        rate-limited."""
        now = f.now
        holds = self._conditions(f)
        out: list[Notice] = []
        for key, text in holds.items():
            if key in self.active:
                self.active[key] = text
                continue
            self.active[key] = text
            last = self.last_fired.get(key)
            if last is not None and now - last < self.cfg.min_interval_s:
                self.suppressed += 1
                continue
            self.last_fired[key] = now
            self.notified.add(key)
            out.append(self._notice(key, "firing", text))
        for key in [k for k in self.active if k not in holds]:
            text = self.active.pop(key)
            if key in self.notified:
                self.notified.discard(key)
                out.append(self._notice(key, "resolved", f"resolved: {text}"))
            else:
                self.suppressed += 1
        return out

    def _notice(self, key: tuple[str, str], status: Status, text: str) -> Notice:
        level: Literal["warning", "critical"] = "critical" if key[0] in CRITICAL else "warning"
        return Notice(key[0], key[1], status, level, text, time.time())

    def _conditions(self, f: Facts) -> dict[tuple[str, str], str]:
        cfg, now = self.cfg, f.now
        holds: dict[tuple[str, str], str] = {}
        for venue, floors in cfg.balance_floors.items():
            for currency, floor in floors.items():
                have = f.balances.get(venue, {}).get(currency)
                if have is not None and have < floor:
                    holds[("balance_low", f"{venue}/{currency}")] = (
                        f"{currency} on {venue} is {have:,.8g}, below the floor of {floor:,.8g}")
        if f.consecutive_failed >= cfg.failed_intents:
            holds[("intent_failures", "all")] = f"{f.consecutive_failed} intents in a row failed"
        for venue, running in f.feed_running.items():
            if running:
                self._down_since.pop(venue, None)
            else:
                self._down_since.setdefault(venue, now)
            age = f.feed_age_s.get(venue)
            down_for = now - self._down_since[venue] if venue in self._down_since else 0.0
            if age is not None and age >= cfg.stream_down_s:
                holds[("stream_down", venue)] = f"{venue}: no market data for {age:.0f} s"
            elif down_for >= cfg.stream_down_s:
                holds[("stream_down", venue)] = f"{venue}: feed not running for {down_for:.0f} s"
        for market in f.halted:
            holds[("halt", market)] = f"{market} is halted ('unhalt {market}' to trade it again)"
        if f.kill_switch:
            holds[("kill_switch", "all")] = "kill switch engaged: no new intents"
        for actor, total in f.restarts.items():
            times = self._restart_times.setdefault(actor, deque())
            for _ in range(total - self._restarts_seen.get(actor, total)):
                times.append(now)
            self._restarts_seen[actor] = total
            while times and now - times[0] > cfg.restarts_window_s:
                times.popleft()
            if len(times) >= cfg.restarts:
                holds[("actor_restarts", actor)] = (
                    f"{actor} restarted {len(times)} times in {cfg.restarts_window_s:.0f} s")
        for kind, market, text in f.events:
            rule = {"reconcile_mismatch": "mismatch", "balance_mismatch": "mismatch",
                    "fee_check": "fee_check"}.get(kind)
            if rule is not None:
                self._events[(rule, market or "all")] = (now, text)
        for key, (at, text) in list(self._events.items()):
            if now - at < cfg.event_hold_s:
                holds[key] = text
            else:
                del self._events[key]
        return holds
