"""The one interface of every execution algorithm: a pure schedule asked, again and again,
"what now?" — send a child order, wait, or stop. No I/O and no clock of its own: the runner
passes the time, the progress so far and a view of the market, so each schedule is tested
against a stub clock and a stub venue alike.

Children are IOC limit orders (the one order type whose recovery :class:`LegRunner` owns):
"passive" means at the touch (the best level only), "aggressive" crosses deeper by
``cross_bps``; nothing is ever priced beyond the order's ``limit_price``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

AlgoName = Literal["market", "limit", "twap", "vwap", "iceberg", "adaptive"]
Side = Literal["buy", "sell"]


@dataclass(frozen=True)
class AlgoOrder:
    """What to trade: ``volume`` of ``market`` on ``venue``, never worse than ``limit_price``,
    within ``horizon_s``. ``urgency`` 0..1 (adaptive, optimizer); ``display_volume``: iceberg."""

    venue: str
    market: str
    side: Side
    volume: float
    limit_price: float
    horizon_s: float = 60.0
    urgency: float = 0.5
    display_volume: float = 0.0
    slices: int = 0  # twap/vwap: how many; 0 = one per ``slice_s`` of the horizon
    slice_s: float = 5.0
    cross_bps: float = 5.0


@dataclass
class Progress:
    started_s: float
    filled: float = 0.0
    funds: float = 0.0
    fee: float = 0.0
    children: int = 0
    empty_children: int = 0  # children that filled nothing (in a row)
    arrival_mid: float = 0.0

    @property
    def avg_price(self) -> float:
        return self.funds / self.filled if self.filled > 0 else 0.0


@dataclass(frozen=True)
class MarketView:
    bid: float
    ask: float
    state: str = "normal"  # karb.ops.marketstate: normal | volatile | trending | illiquid | ranging
    # traded volume per bucket of the recent past, oldest first (vwap's profile)
    volume_profile: tuple[float, ...] = field(default_factory=tuple)

    @property
    def mid(self) -> float:
        return (self.bid + self.ask) / 2


@dataclass(frozen=True)
class Child:
    volume: float
    price: float


Decision = Child | float | None  # a child to send now | seconds to wait | done


class Algo(Protocol):
    name: AlgoName

    def next(self, order: AlgoOrder, progress: Progress, now_s: float,
             view: MarketView | None) -> Decision:
        """The next step: a child to send now, seconds to wait, or None (finished)."""
        ...
