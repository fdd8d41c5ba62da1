"""Competing arbitrageurs: others who see the same gap and take its liquidity first if faster.

Assumptions (``sim.competitors``):

- A *gap* is open in a market while one venue's best bid beats the other's best ask by more
  than ``min_edge_bps`` (gross; set it above the two taker fees, which competitors pay too).
  Gaps are checked on the books each step builds, whatever opened them (a dislocation, venue
  noise, a premium regime).
- When a gap opens, ``count`` competitors each draw a latency (lognormal, median
  ``latency_ms``) from that step's time, and a size (lognormal, median ``notional_krw``).
  From its arrival on, each competitor trades the gap once on every book the model builds
  while the gap stays open, as an arbitrageur with a standing order would: it buys the cheap
  venue's asks and sells the dear venue's bids, best levels first, while the pair still pays
  more than ``min_edge_bps``, up to its size. What it takes is gone from both books (and
  printed as trades), so an order of ours that arrives after it fills partly or not at all.
  A gap that closes forgets its competitors; the next one draws new ones.
- The matching engine sees competitors through :meth:`MarketModel.book_at`: it asks for the
  book at the order's time, and competitors whose arrival is due by then act first. A
  competitor that arrives between two steps with no order of ours to see it acts when the
  next step's book is built.

Sizes are rounded down to 0.0001 coin (Bithumb's lot; Upbit's is finer), so books stay on both
venues' lots. Draws use their own random stream seeded from ``sim.seed``.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from karb.config import CompetitorConfig

if TYPE_CHECKING:
    from karb.sim.market import Book, MarketModel

LOT = 1e-4


@dataclass
class _Competitor:
    arrive_ms: int
    notional_krw: float
    acted_step_ms: int = -1  # the step whose book it last traded


@dataclass
class _Gap:
    buy: str  # the cheap venue (its asks are taken)
    sell: str  # the dear venue (its bids are taken)
    opened_ms: int
    competitors: list[_Competitor] = field(default_factory=list)


class Competitors:
    def __init__(self, cfg: CompetitorConfig, seed: int) -> None:
        self.cfg = cfg
        self.rng = random.Random(f"{seed}/competitors")
        self.threshold = 1 + cfg.min_edge_bps / 1e4
        self.gaps: dict[str, _Gap] = {}
        self.step_ms = 0
        self.taken_krw = 0.0  # notional bought by competitors, all markets (for reports)
        self.gaps_opened = 0

    def on_step(self, model: MarketModel, now_ms: int) -> None:
        """After a step built new books: open or close gaps, let arrived competitors trade."""
        self.step_ms = now_ms
        for market in model.markets:
            up = model.state[("upbit", market)].book
            bt = model.state[("bithumb", market)].book
            direction = self._direction(up, bt)
            gap = self.gaps.get(market)
            if direction is None:
                if gap is not None:
                    del self.gaps[market]
                continue
            if gap is None or (gap.buy, gap.sell) != direction:
                gap = self.gaps[market] = self._open(direction, now_ms)
            self._act(model, market, gap, now_ms)

    def settle(self, model: MarketModel, market: str, now_ms: int) -> None:
        """Let competitors due by ``now_ms`` trade before someone else reads the book."""
        gap = self.gaps.get(market)
        if gap is not None:
            self._act(model, market, gap, now_ms)

    def _direction(self, up: Book, bt: Book) -> tuple[str, str] | None:
        if up.asks and bt.bids and bt.bids[0][0] > up.asks[0][0] * self.threshold:
            return ("upbit", "bithumb")
        if bt.asks and up.bids and up.bids[0][0] > bt.asks[0][0] * self.threshold:
            return ("bithumb", "upbit")
        return None

    def _open(self, direction: tuple[str, str], now_ms: int) -> _Gap:
        cfg, rng = self.cfg, self.rng
        self.gaps_opened += 1
        crowd = [_Competitor(now_ms + round(cfg.latency_ms * math.exp(rng.gauss(0.0, cfg.latency_sigma))),
                             cfg.notional_krw * math.exp(rng.gauss(0.0, cfg.notional_sigma)))
                 for _ in range(cfg.count)]
        crowd.sort(key=lambda c: c.arrive_ms)
        return _Gap(direction[0], direction[1], now_ms, crowd)

    def _act(self, model: MarketModel, market: str, gap: _Gap, now_ms: int) -> None:
        for comp in gap.competitors:
            if comp.arrive_ms > now_ms:
                break  # sorted: the rest arrive later still
            if comp.acted_step_ms == self.step_ms:
                continue
            comp.acted_step_ms = self.step_ms
            self._take(model, market, gap, comp.notional_krw)

    def _take(self, model: MarketModel, market: str, gap: _Gap, notional: float) -> None:
        asks = model.state[(gap.buy, market)].book.asks
        bids = model.state[(gap.sell, market)].book.bids
        while asks and bids and notional > 0 and bids[0][0] > asks[0][0] * self.threshold:
            ask, bid = asks[0], bids[0]
            qty = math.floor(min(ask[1], bid[1], notional / ask[0]) / LOT) * LOT
            if qty <= 0:
                if min(ask[1], bid[1]) >= LOT:
                    return  # what is left of its size is below one lot
                for levels, level in ((asks, ask), (bids, bid)):
                    if level[1] < LOT:
                        levels.pop(0)  # a crumb below the lot: taken with the rest
                continue
            qty = round(qty, 4)
            ask[1] = round(ask[1] - qty, 8)
            bid[1] = round(bid[1] - qty, 8)
            notional -= qty * ask[0]
            self.taken_krw += qty * ask[0]
            model.record_trade(gap.buy, market, ask[0], qty, "bid")
            model.record_trade(gap.sell, market, bid[0], qty, "ask")
            if ask[1] <= 0:
                asks.pop(0)
            if bid[1] <= 0:
                bids.pop(0)
