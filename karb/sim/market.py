"""The simulated market: one fair value per market shared by both venues, and each venue's book
built around it with its own noise, ticks and sizes. Shared by the live ``sim`` actor and
backtests; each assumption below is a ``sim:`` config key.

Every step (``step_ms``) the fair value takes a log-normal random step of ``volatility_bps``
times the volatility regime's multiplier (``karb/sim/regimes.py``); each venue's mid is the
fair value shifted by an AR(1) noise term of its own (stationary spread ``noise_bps``), half
the premium regime in force (Upbit up, Bithumb down), and the *dislocations* in force (one
venue pulled away from the other: Poisson arrivals, fixed or heavy-tailed sizes, flat windows
or exponential decay; ``karb/sim/dislocations.py``). Books are rebuilt every step, 30 levels a
side, priced on the venue's KRW ticks. Trades print when the new book has moved through the
old one. Competing arbitrageurs (``karb/sim/competitors.py``) then take whatever gap pays
them, once their latency has passed: the matching engine reads a book with :meth:`book_at`,
which lets competitors due by the order's time trade first. Venue outages are scheduled apart
(``karb/sim/outages.py``), since they act on the venues, not on prices.

The fair value and books draw from one seeded RNG; dislocations, regimes and competitors each
from their own stream seeded from the same ``seed``. A given seed gives the same sequence of
books on every run, and switching a part on or off leaves the others' draws as they were.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from karb.config import SimConfig
from karb.sim.competitors import Competitors
from karb.sim.dislocations import Dislocation, DislocationSource
from karb.sim.regimes import Regimes
from karb.sim.rules import tick as krw_tick

__all__ = ["VENUES", "Book", "Dislocation", "MarketModel", "Ticker", "Trade", "default_price"]

VENUES = ("upbit", "bithumb")
LEVELS = 30

DEFAULT_PRICES = {
    "BTC": 140_000_000.0, "ETH": 5_000_000.0, "XRP": 3_000.0, "SOL": 250_000.0, "DOGE": 300.0,
    "ADA": 1_000.0, "TRX": 400.0, "LINK": 25_000.0, "AVAX": 40_000.0, "DOT": 8_000.0,
}
KOREAN_NAMES = {"BTC": "비트코인", "ETH": "이더리움", "XRP": "엑스알피(리플)", "SOL": "솔라나",
                "DOGE": "도지코인", "ADA": "에이다", "TRX": "트론", "LINK": "체인링크",
                "AVAX": "아발란체", "DOT": "폴카닷"}
# Mean notional of one book level, KRW; sizes are drawn around it.
LEVEL_NOTIONAL_KRW = 4_000_000.0


@dataclass
class Trade:
    price: float
    volume: float
    side: str  # "ask" (a seller hit the bid) or "bid" (a buyer lifted the ask)
    ts_ms: int
    sequential_id: int


@dataclass
class Book:
    """One venue's book of one market; levels are [price, size], best first."""

    market: str
    bids: list[list[float]]
    asks: list[list[float]]
    ts_ms: int

    def best_bid(self) -> float:
        return self.bids[0][0] if self.bids else 0.0

    def best_ask(self) -> float:
        return self.asks[0][0] if self.asks else 0.0


@dataclass
class Ticker:
    opening_price: float
    high_price: float
    low_price: float
    trade_price: float
    prev_closing_price: float
    acc_trade_volume: float = 0.0
    acc_trade_price: float = 0.0
    trade_volume: float = 0.0
    trade_ts_ms: int = 0
    ask_bid: str = "BID"


@dataclass
class _Shape:
    tick: float
    bid_offsets: list[float]
    ask_offsets: list[float]
    bid_sizes: list[float]
    ask_sizes: list[float]


@dataclass
class VenueMarket:
    book: Book
    ticker: Ticker
    noise_bps: float = 0.0
    trades: list[Trade] = field(default_factory=list)
    prev_book: Book | None = None  # the book before the last step (delta streams diff it)


def default_price(market: str) -> float:
    return DEFAULT_PRICES.get(market.split("-", 1)[1], 10_000.0)


class MarketModel:
    def __init__(self, markets: list[str], cfg: SimConfig, now_ms: int) -> None:
        self.cfg = cfg
        self.markets = list(markets)
        self.rng = random.Random(cfg.seed)
        self.now_ms = now_ms
        self.fair = {m: cfg.prices.get(m, default_price(m)) for m in self.markets}
        self.dislocations: list[Dislocation] = []
        self.dislocation_source = DislocationSource(cfg.dislocation, cfg.seed)
        self.regimes = Regimes(cfg.premium, cfg.volatility_regimes, self.markets, cfg.seed, now_ms)
        self.competitors = Competitors(cfg.competitors, cfg.seed) if cfg.competitors.count else None
        self._offsets: dict[tuple[str, str], float] = {}
        self._update_offsets(now_ms)
        self._trade_seq = 0
        self._shapes: dict[tuple[str, str], _Shape] = {}
        self.state: dict[tuple[str, str], VenueMarket] = {}
        for venue in VENUES:
            for market in self.markets:
                book = self._build(venue, market)
                px = self.fair[market]
                self.state[(venue, market)] = VenueMarket(book, Ticker(px, px, px, px, px))

    def book(self, venue: str, market: str) -> Book:
        return self.state[(venue, market)].book

    def ticker(self, venue: str, market: str) -> Ticker:
        return self.state[(venue, market)].ticker

    def book_at(self, venue: str, market: str, now_ms: int) -> Book:
        """The book as an order arriving at ``now_ms`` meets it: competitors due by then have
        taken their share first. The matching engine reads books through this."""
        if self.competitors is not None:
            self.competitors.settle(self, market, now_ms)
        return self.state[(venue, market)].book

    def dislocate(self, venue: str, market: str, bps: float, duration_ms: int) -> None:
        """Pull one venue's prices ``bps`` away from fair value for ``duration_ms`` (flat)."""
        self.dislocations.append(Dislocation(venue, market, bps, self.now_ms + duration_ms,
                                             self.now_ms))

    def step(self, now_ms: int) -> list[tuple[str, str]]:
        """Advance the model to ``now_ms``; returns the (venue, market) books that changed."""
        dt_ms = max(0, now_ms - self.now_ms)
        self.now_ms = now_ms
        cfg = self.cfg
        rng = self.rng
        vol = self.regimes.volatility_multiplier(now_ms)
        self.dislocations = [d for d in self.dislocations if d.alive(now_ms)]
        self.dislocations += self.dislocation_source.arrivals(
            self.markets, now_ms, dt_ms, vol if self.regimes.scale_dislocations else 1.0)
        sigma = cfg.volatility_bps * vol / 1e4
        for market in self.markets:
            self.fair[market] *= math.exp(rng.gauss(0.0, sigma))
        self._update_offsets(now_ms)
        changed = []
        for venue in VENUES:
            for market in self.markets:
                vm = self.state[(venue, market)]
                # AR(1): venue noise wanders but is pulled back towards the fair value.
                vm.noise_bps = 0.8 * vm.noise_bps + rng.gauss(0.0, cfg.noise_bps * 0.6)
                old = vm.prev_book = vm.book
                vm.book = self._build(venue, market)
                self._print_crossings(venue, market, old, vm)
                changed.append((venue, market))
        if self.competitors is not None:
            self.competitors.on_step(self, now_ms)
        return changed

    def _update_offsets(self, now_ms: int) -> None:
        """Each (venue, market)'s shift from fair value this step, noise apart, in bps."""
        offsets: dict[tuple[str, str], float] = {}
        for d in self.dislocations:
            key = (d.venue, d.market)
            offsets[key] = offsets.get(key, 0.0) + d.offset_bps(now_ms)
        for market in self.markets:
            premium = self.regimes.premium_bps(market, now_ms)
            if premium:
                offsets[("upbit", market)] = offsets.get(("upbit", market), 0.0) + premium / 2
                offsets[("bithumb", market)] = offsets.get(("bithumb", market), 0.0) - premium / 2
        self._offsets = offsets

    def record_trade(self, venue: str, market: str, price: float, volume: float, side: str) -> Trade:
        vm = self.state[(venue, market)]
        self._trade_seq += 1
        trade = Trade(price, volume, side, self.now_ms, self._trade_seq)
        vm.trades.append(trade)
        del vm.trades[:-50]
        t = vm.ticker
        t.trade_price, t.trade_volume, t.trade_ts_ms = price, volume, self.now_ms
        t.high_price, t.low_price = max(t.high_price, price), min(t.low_price, price)
        t.acc_trade_volume += volume
        t.acc_trade_price += price * volume
        t.ask_bid = side.upper()
        return trade

    def _offset_bps(self, venue: str, market: str) -> float:
        offset = self.state[(venue, market)].noise_bps if (venue, market) in self.state else 0.0
        return offset + self._offsets.get((venue, market), 0.0)

    def _build(self, venue: str, market: str) -> Book:
        """The venue's book around its mid: a cached shape (gaps in ticks, sizes) shifted to the
        current touch, with the top levels' sizes redrawn; the whole shape is redrawn now and
        then. Rebuilding every level every step would cost the simulator its throughput."""
        rng = self.rng
        mid = self.fair[market] * (1 + self._offset_bps(venue, market) / 1e4)
        tick = krw_tick(mid)
        half = max(tick, mid * 0.5e-4)
        best_bid = math.floor((mid - half) / tick) * tick
        best_ask = max(best_bid + tick, math.ceil((mid + half) / tick) * tick)
        places = 4 if venue == "bithumb" else 8
        shape = self._shapes.get((venue, market))
        if shape is None or shape.tick != tick or rng.random() < 0.02:
            shape = self._shapes[(venue, market)] = self._new_shape(mid, tick, places)
        for sizes in (shape.bid_sizes, shape.ask_sizes):
            for i in range(3):
                sizes[i] = self._size(mid, places)
        if tick >= 1:  # whole-KRW ticks: float arithmetic on integers is exact
            bids = [[best_bid - off, size]
                    for off, size in zip(shape.bid_offsets, shape.bid_sizes) if best_bid - off > 0]
            asks = [[best_ask + off, size] for off, size in zip(shape.ask_offsets, shape.ask_sizes)]
        else:  # 0.1 * 3 = 0.30000000000000004: keep prices on their decimal ticks
            bids = [[round(best_bid - off, 4), size]
                    for off, size in zip(shape.bid_offsets, shape.bid_sizes) if best_bid - off > 0]
            asks = [[round(best_ask + off, 4), size]
                    for off, size in zip(shape.ask_offsets, shape.ask_sizes)]
        return Book(market, bids, asks, self.now_ms)

    def _new_shape(self, mid: float, tick: float, places: int) -> _Shape:
        def offsets() -> list[float]:
            out, acc = [], 0.0
            for _ in range(LEVELS):
                out.append(acc * tick)
                acc += self.rng.choice((1, 1, 2, 3))
            return out
        return _Shape(tick, offsets(), offsets(), [self._size(mid, places) for _ in range(LEVELS)],
                      [self._size(mid, places) for _ in range(LEVELS)])

    def _size(self, price: float, places: int) -> float:
        notional = LEVEL_NOTIONAL_KRW * self.rng.lognormvariate(0.0, 0.8)
        return max(round(notional / price, places), 10 ** -places)

    def _print_crossings(self, venue: str, market: str, old: Book, vm: VenueMarket) -> None:
        new = vm.book
        if new.best_bid() > old.best_ask() > 0:
            self.record_trade(venue, market, old.best_ask(), old.asks[0][1], "bid")
        elif 0 < new.best_ask() < old.best_bid():
            self.record_trade(venue, market, old.best_bid(), old.bids[0][1], "ask")
        elif self.rng.random() < 0.2:  # ordinary flow at the touch
            side = self.rng.choice(("bid", "ask"))
            level = new.asks[0] if side == "bid" else new.bids[0]
            self.record_trade(venue, market, level[0], round(level[1] * 0.1, 8) or level[1], side)

