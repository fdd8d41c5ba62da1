"""Dislocations: one venue's prices pulled away from the other's, the gaps an arbitrageur trades.

Assumptions (each a ``sim.dislocation`` key; ``configs/backtest.yaml`` says where its numbers
come from):

- Arrivals are a Poisson process over the whole model at ``rate_per_min`` (times a volatility
  regime's multiplier when ``sim.volatility_regimes.scale_dislocations``): each step draws how
  many start, so two may start in one step. Each lands on a market and a venue chosen
  uniformly, up or down with even odds.
- Sizes are heavy-tailed: ``pareto`` (the smallest is ``size_bps``; P(size > x) =
  (size_bps / x) ** pareto_alpha, so with alpha 1.5 about one in ten is more than 4.6 times
  the smallest) or ``lognormal`` (median ``size_bps``); ``fixed`` for demos. All are capped at
  ``max_bps``.
- A flat window (``half_life_ms`` 0: the demo's) holds its size for ``duration_ms``. Otherwise
  each decays exponentially, ``size * 0.5 ** (age / half_life)``, with its own half-life drawn
  lognormally around ``half_life_ms``; it ends below 0.5 bps (under a KRW tick on most books)
  or after ``duration_ms``, whichever is first. Decay stands for the venue's market makers
  requoting; the competitors (``karb/sim/competitors.py``) take what pays before that.

The draws use their own random stream (seeded from ``sim.seed``), so switching dislocations on
or off leaves the fair-value path of a seed unchanged.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from karb.config import DislocationConfig

VENUES = ("upbit", "bithumb")
END_BPS = 0.5  # a decaying dislocation smaller than this is over


@dataclass
class Dislocation:
    venue: str
    market: str
    bps: float  # the size at start (signed: negative pulls the venue's prices down)
    until_ms: int
    start_ms: int = 0
    half_life_ms: float = 0.0  # 0: flat for its whole window

    def offset_bps(self, now_ms: int) -> float:
        if self.half_life_ms <= 0:
            return self.bps
        return self.bps * 0.5 ** ((now_ms - self.start_ms) / self.half_life_ms)

    def alive(self, now_ms: int) -> bool:
        if now_ms >= self.until_ms:
            return False
        return self.half_life_ms <= 0 or abs(self.offset_bps(now_ms)) >= END_BPS


class DislocationSource:
    """Draws the dislocations that start in each step."""

    def __init__(self, cfg: DislocationConfig, seed: int) -> None:
        self.cfg = cfg
        self.rng = random.Random(f"{seed}/dislocations")

    def arrivals(self, markets: list[str], now_ms: int, dt_ms: int,
                 rate_scale: float = 1.0) -> list[Dislocation]:
        cfg = self.cfg
        lam = cfg.rate_per_min * rate_scale * dt_ms / 60_000
        if lam <= 0 or not markets:
            return []
        out = []
        for _ in range(self._poisson(lam)):
            venue = self.rng.choice(VENUES)
            market = self.rng.choice(markets)
            size = self._size() * self.rng.choice((-1.0, 1.0))
            half_life = 0.0
            if cfg.half_life_ms > 0:
                half_life = cfg.half_life_ms * math.exp(self.rng.gauss(0.0, cfg.half_life_sigma))
            out.append(Dislocation(venue, market, size, now_ms + cfg.duration_ms, now_ms, half_life))
        return out

    def _poisson(self, lam: float) -> int:
        # Inversion (Knuth): a step's expected count is far below 1, so this ends at once.
        limit, k, p = math.exp(-lam), 0, self.rng.random()
        while p > limit:
            k += 1
            p *= self.rng.random()
        return k

    def _size(self) -> float:
        cfg = self.cfg
        if cfg.size_dist == "pareto":
            size = cfg.size_bps * self.rng.paretovariate(cfg.pareto_alpha)
        elif cfg.size_dist == "lognormal":
            size = cfg.size_bps * math.exp(self.rng.gauss(0.0, cfg.lognormal_sigma))
        else:
            size = cfg.size_bps
        return min(size, cfg.max_bps)
