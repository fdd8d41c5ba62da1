"""An executor wired to two stub venues, stub tops and a real SQLite journal, for the money-path
unit tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from karb.exchanges.types import Balance
from karb.execution.executor import Executor
from karb.execution.journal import Journal
from karb.execution.reconcile import Reconciler
from karb.execution.tops import Quote
from karb.messages import Alert, Intent
from karb.trading.limits import ExecutionLimits
from karb.trading.risk import CircuitBreaker, KillSwitch
from tests.unit.stub_venue import StubTops, StubVenue

MARKET = "KRW-ETH"
LIMITS = ExecutionLimits(max_notional_krw=2_000_000, max_inventory_krw=1e12, stale_after_ms=2000,
                         hedge_loss_bps=30, leg_timeout_ms=150, poll_interval_ms=10,
                         settle_ms=150, leg_deadline_ms=1500)


@dataclass
class Kit:
    ex: Executor
    upbit: StubVenue
    bithumb: StubVenue
    journal: Journal
    published: list[Any] = field(default_factory=list)

    @property
    def reconciler(self) -> Reconciler:
        if not hasattr(self, "_reconciler"):
            self._reconciler = Reconciler(self.ex)
        return self._reconciler

    def alerts(self) -> list[Alert]:
        return [m for m in self.published if isinstance(m, Alert)]

    def net_coin(self) -> float:
        """Coin bought minus sold over every order at both venues: 0 when flat."""
        return round(sum((o.executed_volume if o.side == "buy" else -o.executed_volume)
                         for v in (self.upbit, self.bithumb) for o in v.orders.values()), 8)


def make_kit(tmp: Path, limits: ExecutionLimits = LIMITS, **stub: Any) -> Kit:
    upbit = StubVenue(venue="upbit", fee_rate=0.0005, **stub)
    bithumb = StubVenue(venue="bithumb", fee_rate=0.0004, **stub)
    for venue in (upbit, bithumb):
        venue.cash = {"KRW": Balance("KRW", 10_000_000.0, 0.0), "ETH": Balance("ETH", 10.0, 0.0)}
    tops = StubTops({("upbit", MARKET): Quote(99_950.0, 100_000.0, 5.0, 5.0, 3.0),
                     ("bithumb", MARKET): Quote(100_300.0, 100_350.0, 5.0, 5.0, 3.0)})
    journal = Journal(tmp / "journal.sqlite")
    published: list[Any] = []
    ex = Executor({"upbit": upbit, "bithumb": bithumb}, journal, limits,
                  {"upbit": 0.0005, "bithumb": 0.0004},
                  lambda topic, msg: published.append(msg), tops, CircuitBreaker(3, 30.0),
                  KillSwitch(tmp / "KILL"), [MARKET])
    return Kit(ex, upbit, bithumb, journal, published)


def intent(intent_id: str = "i" + "a" * 20, volume: float = 0.1, buy: str = "upbit",
           sell: str = "bithumb", buy_limit: float = 100_000.0, sell_limit: float = 100_300.0) -> Intent:
    return Intent(intent_id=intent_id, market=MARKET, buy_venue=buy, sell_venue=sell,
                  volume=volume, buy_limit=buy_limit, sell_limit=sell_limit, net_bps=20.0)


async def trade(kit: Kit, one: Intent) -> None:
    """Accept and run one intent to its settlement."""
    if kit.ex.stale_venues:
        await kit.ex.refresh_balances()
    accepted = kit.ex.accept(one)
    assert accepted.ack.accepted, accepted.ack.reason
    await kit.ex.run(one, accepted.legs)
