"""Picks an execution algorithm for an order from the market state and the order itself (size
against recent volume, urgency) — by rules until measured quality exists, then by what was
measured.

Rules (the defaults, before ``min_samples`` results of an algorithm in a state exist):

==========================================  ==========
urgency ≥ ``urgent``                        market
volatile or trending                        adaptive
illiquid                                    iceberg
size ≥ ``large_share`` of recent volume     vwap (twap without a volume profile)
size ≤ ``small_share`` of recent volume     limit
otherwise                                   twap
==========================================  ==========

Measured: every finished algorithm's :class:`AlgoResult` is recorded under (algo, market state
at arrival). Once some algorithm has ``min_samples`` in the order's state, the choice is the
lowest *cost* among those measured, allowed by the urgency (urgent orders exclude the slow
``limit`` and ``iceberg``): cost = mean implementation shortfall (bps against the arrival mid,
fees in) + ``unfilled_penalty_bps`` × (1 − mean fill rate).

Exploring: with ``explore_every`` = n > 0, every n-th choice in a state goes to the allowed
algorithm with the fewest results in that state (ties: the order of ``ALGOS``). Without it the
optimizer only ever measures what its rules or its first measurements picked, and the
alternatives' cost in each state stays unknown.

Recent volume is the market-state monitor's ``recent_volume`` (both venues' trades over its
profile's span); before it has any (no monitor, no trade stream, no print yet) the top-of-book
depth stands in (:func:`size_basis`), so "large" means "more than the top levels hold".
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Protocol

import msgspec

from karb.execution.algos.base import AlgoName
from karb.execution.algos.schedules import ALGOS, profile_usable

SLOW: frozenset[str] = frozenset({"limit", "iceberg"})


@dataclass(frozen=True)
class SizeBasis:
    """What an order's size is weighed against, and whether vwap has a profile to follow."""

    recent_volume: float
    source: str  # trades | depth
    has_profile: bool


def size_basis(recent_volume: float, profile: tuple[float, ...], top_depth: float,
               slices: int) -> SizeBasis:
    """The monitor's recent volume when it has one, the top-of-book depth before; a profile
    counts when it covers the order's ``slices`` (else vwap would slice evenly anyway)."""
    if recent_volume > 0:
        return SizeBasis(recent_volume, "trades", profile_usable(profile, slices))
    return SizeBasis(top_depth, "depth", False)


class OptimizerConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    min_samples: int = 20
    urgent: float = 0.8
    large_share: float = 0.2
    small_share: float = 0.02
    unfilled_penalty_bps: float = 50.0
    window: int = 200  # results kept per (algo, state)
    explore_every: int = 0  # every n-th choice per state: the least measured algorithm (0: off)

    def __post_init__(self) -> None:
        if self.min_samples < 1 or self.window < 1 or self.explore_every < 0:
            raise ValueError("min_samples and window must be at least 1, explore_every 0 or more")


class Measured(Protocol):
    """One finished algorithm run (a single-venue AlgoResult or a hedged PairResult)."""

    @property
    def algo(self) -> str: ...
    @property
    def state_at_arrival(self) -> str: ...
    @property
    def shortfall_bps(self) -> float: ...
    @property
    def fill_rate(self) -> float: ...
    @property
    def fee_bps(self) -> float: ...


@dataclass(frozen=True)
class Quality:
    samples: int
    shortfall_bps: float
    fill_rate: float
    fee_bps: float

    def cost(self, unfilled_penalty_bps: float) -> float:
        return self.shortfall_bps + unfilled_penalty_bps * (1 - self.fill_rate)


@dataclass(frozen=True)
class Choice:
    algo: AlgoName
    source: str  # "rules" | "measured"
    reason: str


class AlgoOptimizer:
    def __init__(self, cfg: OptimizerConfig | None = None) -> None:
        self.cfg = cfg or OptimizerConfig()
        self.results: dict[tuple[str, str], list[Measured]] = defaultdict(list)
        self.choices: dict[str, int] = defaultdict(int)  # state → choices made in it

    def record(self, result: Measured) -> None:
        kept = self.results[(result.algo, result.state_at_arrival)]
        kept.append(result)
        del kept[:-self.cfg.window]

    def quality(self, algo: str, state: str) -> Quality | None:
        kept = self.results.get((algo, state), [])
        if not kept:
            return None
        n = len(kept)
        # Shortfall and fees have a price only where something filled; the fill rate counts
        # every run (an algorithm that fills nothing pays unfilled_penalty_bps for it).
        filled = [r for r in kept if r.fill_rate > 0]
        return Quality(n, sum(r.shortfall_bps for r in filled) / len(filled) if filled else 0.0,
                       sum(r.fill_rate for r in kept) / n,
                       sum(r.fee_bps for r in filled) / len(filled) if filled else 0.0)

    def table(self) -> dict[str, dict[str, Quality]]:
        """state → algo → quality (for the report)."""
        out: dict[str, dict[str, Quality]] = defaultdict(dict)
        for algo, state in self.results:
            q = self.quality(algo, state)
            if q is not None:
                out[state][algo] = q
        return dict(out)

    def choose(self, state: str, volume: float, recent_volume: float, urgency: float,
               has_profile: bool = True) -> Choice:
        cfg = self.cfg
        urgent = urgency >= cfg.urgent
        self.choices[state] += 1
        if cfg.explore_every and self.choices[state] % cfg.explore_every == 0:
            allowed = [a for a in ALGOS if not (urgent and a in SLOW)]
            least = min(allowed, key=lambda a: len(self.results.get((a, state), [])))
            return Choice(least, "explore",  # type: ignore[arg-type]  # ALGOS keys are AlgoNames
                          f"least measured in {state} "
                          f"({len(self.results.get((least, state), []))} results)")
        measured = {}
        for (algo, at), kept in self.results.items():
            if at != state or len(kept) < cfg.min_samples or (urgent and algo in SLOW):
                continue
            q = self.quality(algo, state)
            if q is not None:
                measured[algo] = q.cost(cfg.unfilled_penalty_bps)
        if measured:
            best = min(measured, key=lambda a: measured[a])
            return Choice(best, "measured",  # type: ignore[arg-type]  # keys are AlgoNames
                          f"lowest cost in {state}: {measured[best]:.1f} bps over "
                          f"{len(measured)} measured")
        return self._rules(state, volume, recent_volume, urgent, has_profile)

    def _rules(self, state: str, volume: float, recent_volume: float, urgent: bool,
               has_profile: bool) -> Choice:
        cfg = self.cfg
        share = volume / recent_volume if recent_volume > 0 else float("inf")
        if urgent:
            return Choice("market", "rules", "urgent")
        if state in ("volatile", "trending"):
            return Choice("adaptive", "rules", f"{state} market")
        if state == "illiquid":
            return Choice("iceberg", "rules", "illiquid market: show little")
        if share >= cfg.large_share:
            return Choice("vwap" if has_profile else "twap", "rules",
                          f"large: {share:.0%} of recent volume")
        if share <= cfg.small_share:
            return Choice("limit", "rules", f"small: {share:.1%} of recent volume")
        return Choice("twap", "rules", f"{share:.0%} of recent volume")
