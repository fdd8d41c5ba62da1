"""Inventory skew between the two venues and the edge it asks of a trade (pure, no I/O).

Per coin (and for KRW) the config gives each venue a target share of the total held on both
venues (default: equal shares) and a band. The *skew* of a venue is its share minus its target;
a coin is *out of band* when some venue's skew exceeds the band. Amounts are what a trade could
use: free balance less what intents in flight reserve, plus coin in transit *to* that venue
(a withdrawal on its way counts where it will land, so a transfer restores skew the moment it
leaves and is never forgotten in inventory).

An arbitrage trade that buys on venue B and sells on venue S moves coin to B and KRW to S. Its
*pressure* (in band widths) is the mean of the coin skew of B and the KRW skew of S:
positive when the trade makes the imbalance worse, negative when it restores it. The edge
threshold becomes ``base + edge_per_band_bps * pressure`` — more edge to worsen, less to
restore, but never below ``budget_bps`` (which may be slightly negative: paying a few bps to
rebalance by trading is often cheaper than a transfer). Every result names the rule that
applied, for the signal record.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from karb.config import RebalanceConfig, TargetConfig

Rule = Literal["neutral", "worsens", "restores", "budget_floor", "blocked"]
Amounts = dict[str, float]  # venue → amount


@dataclass(frozen=True)
class Skew:
    """One currency's position across venues."""

    currency: str
    amounts: Amounts  # venue → usable amount (free - reserved + in transit to it)
    shares: dict[str, float]  # venue → share of the total (target when the total is 0)
    targets: dict[str, float]
    band: float

    @property
    def total(self) -> float:
        return sum(self.amounts.values())

    def skew(self, venue: str) -> float:
        """Share minus target: positive = this venue holds too much."""
        return self.shares.get(venue, 0.0) - self.targets.get(venue, 0.0)

    @property
    def worst(self) -> float:
        return max((abs(self.skew(v)) for v in self.targets), default=0.0)

    @property
    def out_of_band(self) -> bool:
        return self.worst > self.band + 1e-12

    @property
    def heavy(self) -> str:
        return max(self.targets, key=self.skew)

    @property
    def light(self) -> str:
        return min(self.targets, key=self.skew)

    def to_target(self, venue: str) -> float:
        """How much ``venue`` holds above its target (negative: below)."""
        return self.amounts.get(venue, 0.0) - self.targets.get(venue, 0.0) * self.total


def targets_for(target: TargetConfig, venues: list[str]) -> dict[str, float]:
    """Each venue's target share: as configured, equal shares for the venues it leaves out."""
    given = {v: s for v, s in target.target.items() if v in venues}
    rest = [v for v in venues if v not in given]
    left = max(0.0, 1.0 - sum(given.values()))
    return given | {v: left / len(rest) for v in rest} if rest else given


def usable(free: Amounts, reserved: Amounts | None = None, in_transit: Amounts | None = None
           ) -> Amounts:
    """free - reserved + in transit to each venue (never below 0 for the reserved part)."""
    reserved, in_transit = reserved or {}, in_transit or {}
    venues = set(free) | set(in_transit)
    return {v: max(0.0, free.get(v, 0.0) - reserved.get(v, 0.0)) + in_transit.get(v, 0.0)
            for v in venues}


def compute(currency: str, amounts: Amounts, target: TargetConfig, venues: list[str]) -> Skew:
    targets = targets_for(target, venues)
    total = sum(max(0.0, amounts.get(v, 0.0)) for v in venues)
    shares = ({v: max(0.0, amounts.get(v, 0.0)) / total for v in venues} if total > 0
              else dict(targets))
    return Skew(currency, {v: amounts.get(v, 0.0) for v in venues}, shares, targets,
                target.band)


def coin_skew(cfg: RebalanceConfig, coin: str, amounts: Amounts, venues: list[str]) -> Skew:
    return compute(coin, amounts, cfg.coins.get(coin, cfg.default), venues)


def krw_skew(cfg: RebalanceConfig, amounts: Amounts, venues: list[str]) -> Skew:
    return compute("KRW", amounts, cfg.krw, venues)


@dataclass(frozen=True)
class EdgeAdjustment:
    """The threshold one direction of one market must beat, and why (for the signal record)."""

    buy_venue: str
    sell_venue: str
    base_bps: float
    threshold_bps: float
    pressure: float  # in band widths; > 0 worsens skew, < 0 restores it
    coin_skew: float  # skew of the coin on the buy venue
    krw_skew: float  # skew of KRW on the sell venue
    rule: Rule

    @property
    def blocked(self) -> bool:
        return self.rule == "blocked"


def pressure(coin: Skew, krw: Skew, buy_venue: str, sell_venue: str) -> float:
    """Mean of (coin skew of the buy venue) and (KRW skew of the sell venue), in band widths."""
    c = coin.skew(buy_venue) / coin.band if coin.band > 0 else 0.0
    k = krw.skew(sell_venue) / krw.band if krw.band > 0 else 0.0
    return (c + k) / 2


def edge(cfg: RebalanceConfig, base_bps: float, coin: Skew, krw: Skew, buy_venue: str,
         sell_venue: str) -> EdgeAdjustment:
    """The skew-aware edge threshold for buying on ``buy_venue`` and selling on ``sell_venue``."""
    p = pressure(coin, krw, buy_venue, sell_venue)
    threshold = base_bps + cfg.edge_per_band_bps * p
    rule: Rule
    if abs(p) < cfg.neutral_bands:
        threshold, rule = base_bps, "neutral"
    elif p > 0:
        rule = "blocked" if p >= cfg.block_at_bands else "worsens"
    elif threshold <= cfg.budget_bps:
        threshold, rule = min(base_bps, cfg.budget_bps), "budget_floor"
    else:
        rule = "restores"
    return EdgeAdjustment(buy_venue, sell_venue, base_bps, threshold, p,
                          coin.skew(buy_venue), krw.skew(sell_venue), rule)


def transfer_amount(coin: Skew, fee: float, minimum: float, free_at_heavy: float) -> float:
    """Coin to withdraw from the heavy venue so that the light one returns to its target
    (the fee comes on top, from the heavy venue); 0 when that is under the venue's minimum or
    more than the heavy venue can pay."""
    want = -coin.to_target(coin.light)
    amount = min(want, coin.to_target(coin.heavy), free_at_heavy - fee)
    if amount < minimum or amount <= 0:
        return 0.0
    return amount


def market_edges(cfg: RebalanceConfig, market: str, base_bps: float,
                 balances: dict[str, dict[str, float]],
                 in_transit: dict[str, dict[str, float]] | None = None,
                 venues: list[str] | None = None) -> dict[tuple[str, str], EdgeAdjustment]:
    """The strategy's hook: every direction (buy venue, sell venue) of ``market`` with its
    skew-aware threshold, from ``pos.balances`` (venue → currency → free after reservations)
    and ``pos.in_transit`` (coin → destination venue → amount)."""
    venues = venues or sorted(balances)
    coin = market.split("-", 1)[1]
    transit = (in_transit or {}).get(coin)
    c = coin_skew(cfg, coin, usable({v: balances.get(v, {}).get(coin, 0.0) for v in venues},
                                    in_transit=transit), venues)
    k = krw_skew(cfg, {v: balances.get(v, {}).get("KRW", 0.0) for v in venues}, venues)
    return {(b, s): edge(cfg, base_bps, c, k, b, s) for b in venues for s in venues if b != s}
