"""Realised PnL and inventory from fills: what each intent made, net of fees."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from karb.trading.orders import LegRecord


def intent_pnl(legs: list[LegRecord]) -> float:
    """KRW received minus KRW paid over all legs of one intent (hedges included), fees in."""
    pnl = 0.0
    for leg in legs:
        if leg.side == "sell":
            pnl += leg.executed_funds - leg.fee
        else:
            pnl -= leg.executed_funds + leg.fee
    return pnl


def coin_imbalance(legs: list[LegRecord]) -> float:
    """Coin bought minus coin sold over an intent's legs: 0 when the arbitrage is flat.
    Rounded to the venues' 8-decimal lot, so float noise (1e-17) never reads as a position."""
    return round(sum(leg.signed_volume for leg in legs), 8) + 0.0


@dataclass
class Ledger:
    pnl_krw: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    intents_done: int = 0
    fills: int = 0

    def book_intent(self, market: str, legs: list[LegRecord], booked_before: float | None = None
                    ) -> float:
        """Book an intent's realised PnL. ``booked_before``: what an earlier settlement of the
        same intent booked (it was reopened by reconciliation): only the difference is added."""
        pnl = intent_pnl(legs)
        self.pnl_krw[market] += pnl - (booked_before or 0.0)
        if booked_before is None:
            self.intents_done += 1
        return pnl

    @property
    def total(self) -> float:
        return sum(self.pnl_krw.values())
