"""The simulator's market model, stepped for a backtest: books built only where they can matter.

Building a (venue, market) book is most of a model step's cost (~400 µs for 10 markets × 2
venues). In a step where the two venues' mids of a market are close, no book of that market can
show a cross-venue gap to anyone: both venues price off one shared fair value, so venue B's best
bid minus venue A's best ask is at most the difference of their offsets from it (noise, premium,
dislocations) less both half-spreads (≥ 0.5 bps each). While that difference is at most
``hot_bps`` — set below both the competitors' ``min_edge_bps`` and our own edge plus fees — a
market is *cold*: its books are not rebuilt at every step but marked stale and rebuilt only when
something reads them (a quote, an order, a hedge). A market is *hot* otherwise, and for one
step after it cools (so the book left behind shows no gap); its books are rebuilt eagerly and
reported as changed, as the live model does every step.

What changes against the live model: the same seed no longer draws the same numbers (book
sizes are drawn only for books built), cold books are not published (the strategy's volatility
window sees the hot markets' mids only), and trades are not printed on cold books. Fair values,
venue noise, dislocations, premium and volatility regimes and competitors step exactly as live.
"""

from __future__ import annotations

import math

from karb.config import SimConfig
from karb.sim.market import VENUES, Book, MarketModel


class LazyMarketModel(MarketModel):
    def __init__(self, markets: list[str], cfg: SimConfig, now_ms: int, hot_bps: float) -> None:
        self.hot_bps = hot_bps
        self._stale: set[tuple[str, str]] = set()
        self._hot: set[str] = set()
        self.built = self.skipped = 0
        super().__init__(markets, cfg, now_ms)

    def book(self, venue: str, market: str) -> Book:
        if (venue, market) in self._stale:
            self._rebuild(venue, market)
        return self.state[(venue, market)].book

    def book_at(self, venue: str, market: str, now_ms: int) -> Book:
        for v in VENUES:  # competitors read both venues' books of the market
            if (v, market) in self._stale:
                self._rebuild(v, market)
        return super().book_at(venue, market, now_ms)

    def _rebuild(self, venue: str, market: str) -> None:
        self._stale.discard((venue, market))
        vm = self.state[(venue, market)]
        vm.prev_book = vm.book
        vm.book = self._build(venue, market)
        self.built += 1

    def gap_bps(self, market: str) -> float:
        """How far apart the two venues' mids are this step, bps (before ticks and spreads)."""
        return abs(self._offset_bps("upbit", market) - self._offset_bps("bithumb", market))

    def step(self, now_ms: int) -> list[tuple[str, str]]:
        """The live model's step (karb/sim/market.py), with cold markets' books left stale."""
        dt_ms = max(0, now_ms - self.now_ms)
        self.now_ms = now_ms
        cfg = self.cfg
        rng = self.rng
        vol = self.regimes.volatility_multiplier(now_ms)
        if self.dislocations:
            self.dislocations = [d for d in self.dislocations if d.alive(now_ms)]
        self.dislocations += self.dislocation_source.arrivals(
            self.markets, now_ms, dt_ms, vol if self.regimes.scale_dislocations else 1.0)
        sigma = cfg.volatility_bps * vol / 1e4
        gauss = rng.gauss
        for market in self.markets:
            self.fair[market] *= math.exp(gauss(0.0, sigma))
        self._update_offsets(now_ms)
        noise_sd = cfg.noise_bps * 0.6
        for vm in self.state.values():
            vm.noise_bps = 0.8 * vm.noise_bps + gauss(0.0, noise_sd)
        changed = []
        hot_now = set()
        offsets, state, hot_bps = self._offsets, self.state, self.hot_bps
        for market in self.markets:
            # gap_bps(), inlined: this runs for every market at every step
            up, bt = ("upbit", market), ("bithumb", market)
            gap = ((state[up].noise_bps + offsets.get(up, 0.0))
                   - (state[bt].noise_bps + offsets.get(bt, 0.0)))
            if gap > hot_bps or -gap > hot_bps:
                hot_now.add(market)
            if market in hot_now or market in self._hot:
                for venue in VENUES:
                    key = (venue, market)
                    self._stale.discard(key)
                    vm = self.state[key]
                    old = vm.prev_book = vm.book
                    vm.book = self._build(venue, market)
                    self.built += 1
                    self._print_crossings(venue, market, old, vm)
                    changed.append(key)
            else:
                for venue in VENUES:
                    self._stale.add((venue, market))
                self.skipped += 2
        self._hot = hot_now
        if self.competitors is not None and (hot_now or self.competitors.gaps):
            self.competitors.on_step(self, now_ms)
        return changed
