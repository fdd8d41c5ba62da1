"""Regimes: states of the market that last hours, as continuous-time Markov chains.

Assumptions (``sim.premium`` and ``sim.volatility_regimes``):

- **Premium.** One venue is dearer than the other by a level in bps for hours (deposits of a
  coin suspended on one venue, local demand): Upbit's mid is shifted by +level/2 and
  Bithumb's by -level/2. A persistent premium below the fees opens no trade by itself but
  tilts every gap one way, so trades drain inventory one way. Per market (independent
  chains) by default, or one chain for all markets.
- **Volatility.** The fair value's per-step volatility is ``volatility_bps`` times the current
  multiplier, the same for all markets (coins move together); optionally the dislocation rate
  scales with it.
- **Chains.** A level holds for an exponential time of mean ``hold_s[level]``, then the chain
  moves to another level, chosen by its row of ``transition`` (the diagonal is ignored) or
  uniformly. A chain of one level never draws. Each chain has its own random stream seeded
  from ``sim.seed`` and its name, and advances lazily when read, so reading it costs a
  comparison per step.
"""

from __future__ import annotations

import math
import random

from karb.config import PremiumConfig, VolatilityRegimeConfig


class MarkovRegime:
    """One chain of levels; :meth:`level_at` advances it to ``now_ms``."""

    def __init__(self, levels: list[float], hold_s: list[float], transition: list[list[float]],
                 rng: random.Random, now_ms: int) -> None:
        self.levels = levels
        self.hold_ms = [h * 1000 for h in hold_s]
        self.transition = transition
        self.rng = rng
        self.index = 0
        self.switches = 0
        self.next_ms = now_ms + self._hold() if len(levels) > 1 else math.inf

    def level_at(self, now_ms: int) -> float:
        while now_ms >= self.next_ms:
            self.index = self._next_index()
            self.next_ms += self._hold()
            self.switches += 1
        return self.levels[self.index]

    def _hold(self) -> float:
        return max(1.0, self.rng.expovariate(1.0 / self.hold_ms[self.index]))

    def _next_index(self) -> int:
        others = [j for j in range(len(self.levels)) if j != self.index]
        if self.transition:
            row = self.transition[self.index]
            return self.rng.choices(others, weights=[row[j] for j in others])[0]
        return self.rng.choice(others)


class Regimes:
    """The premium chain(s) and the volatility chain of one market model."""

    def __init__(self, premium: PremiumConfig, volatility: VolatilityRegimeConfig,
                 markets: list[str], seed: int, now_ms: int) -> None:
        def chain(name: str, levels: list[float], hold_s: list[float],
                  transition: list[list[float]]) -> MarkovRegime:
            return MarkovRegime(levels, hold_s, transition, random.Random(f"{seed}/{name}"), now_ms)

        keys = markets if premium.per_market else ["all"]
        self._premium = {k: chain(f"premium/{k}", premium.levels_bps, premium.hold_s,
                                  premium.transition) for k in keys}
        self._per_market = premium.per_market
        self.volatility = chain("volatility", volatility.multipliers, volatility.hold_s,
                                volatility.transition)
        self.scale_dislocations = volatility.scale_dislocations

    def premium_bps(self, market: str, now_ms: int) -> float:
        """How much dearer Upbit is than Bithumb in ``market`` now."""
        return self._premium[market if self._per_market else "all"].level_at(now_ms)

    def volatility_multiplier(self, now_ms: int) -> float:
        return self.volatility.level_at(now_ms)
