"""The strategy's decision logic, no I/O: depth books per (venue, market), balances and
inventory (the last ``Position``), fees and params in; sized opportunities and the filter's
decision out. The live ``strategy`` actor (karb/actors/strategy.py) and the backtester
(karb/backtest/) both call it, so a backtest trades on the same decisions as live.

Per changed market it tries both directions with ``karb.trading.arb``: the edge net of both
taker fees, sized by walking both books under the caps (KRW on the buying venue, coin on the
selling venue, the notional cap, inventory room, the lot), then the limit prices. The filters:
the order minimum, both tops valid and fresh (the caller's :class:`TopView`: shared memory live,
the model's books in a backtest), a halted market, a per-market cooldown, a cap on intents in
flight, and a volatility filter on each venue's own mid. Time is the process clock
(``karb.clock``), or ``now_ns`` when a caller passes it.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import msgspec

from karb import clock
from karb.exchanges.ticks import floor_lot
from karb.exchanges.types import Level
from karb.messages import Decision, DepthUpdate, Position
from karb.trading.arb import MIN_ORDER_KRW, Caps, Opportunity, limit_prices, size_trade
from karb.trading.risk import notional_cap
from karb.trading.skew import EdgeAdjustment, market_edges

if TYPE_CHECKING:
    from karb.config import RebalanceConfig


class StrategyParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    min_edge_bps: float = 10.0
    slippage_bps: float = 5.0
    max_notional_krw: float = 2_000_000.0
    max_notional_btc: float | None = None  # launch cap in BTC terms, at the live KRW-BTC price
    max_inventory_krw: float = 100_000_000.0  # coin value per venue and market
    cooldown_ms: int = 1000
    max_in_flight: int = 2
    stale_after_ms: int = 2000
    vol_window_ms: int = 1000
    max_move_bps: float = 50.0
    request_timeout_ms: int = 2000
    execution: str = "execution"


class TopView(Protocol):
    def top(self, venue: str, market: str) -> tuple[float, int] | None:
        """The valid top's (ask price, monotonic receipt ns); None when missing or invalid."""


@dataclass(frozen=True)
class Sized:
    """One sized opportunity and what the filters made of it (``sent`` or why not)."""

    market: str
    buy_venue: str
    sell_venue: str
    opp: Opportunity
    buy_limit: float
    sell_limit: float
    decision: Decision
    about: str  # the venue a not_valid / stale decision is about, else ""
    intent_id: str  # "" unless sent
    best_ask: float
    best_bid: float
    threshold_bps: float = 0.0  # the edge this direction had to beat (skew-aware)
    skew_rule: str = ""  # which skew rule set it ("" without inventory targets)
    skew_pressure: float = 0.0

    @property
    def volume(self) -> float:
        return self.opp.volume


def new_intent_id() -> str:
    return "i" + uuid.uuid4().hex[:20]


class Decider:
    def __init__(self, params: StrategyParams, venues: list[str], fees: dict[str, float],
                 markets: list[str], tops: TopView,
                 new_id: Callable[[], str] = new_intent_id,
                 rebalance: RebalanceConfig | None = None) -> None:
        """``rebalance``: inventory targets; with them, each direction's edge threshold is
        skew-aware (karb/trading/skew.py): more edge to worsen skew, less to restore it."""
        self.params = params
        self.rebalance = rebalance
        self._edges_for: Position | None = None
        self._edges: dict[str, dict[tuple[str, str], EdgeAdjustment]] = {}
        self.venues = venues
        self.fees = fees
        self.markets = markets
        self.tops = tops
        self.new_id = new_id
        self.depth: dict[tuple[str, str], DepthUpdate] = {}
        # Each venue's own mid: the gap between venues is the opportunity, not volatility.
        self.mids: dict[tuple[str, str], deque[tuple[int, float]]] = {
            (v, m): deque() for v in venues for m in markets}
        self.cooldown_until: dict[str, int] = {}
        self.position: Position | None = None
        self.in_flight: dict[str, int] = {}  # intent id → when sent (monotonic ns)

    # -- inputs ----------------------------------------------------------------------------------

    def on_depth(self, msg: DepthUpdate, now_ns: int | None = None) -> None:
        self.depth[(msg.venue, msg.market)] = msg
        if not msg.bids or not msg.asks:
            return
        window = self.mids[(msg.venue, msg.market)]
        now = clock.monotonic_ns() if now_ns is None else now_ns
        window.append((now, (msg.bids[0][0] + msg.asks[0][0]) / 2))
        horizon = now - self.params.vol_window_ms * 1_000_000
        while window and window[0][0] < horizon:
            window.popleft()

    def on_position(self, msg: Position, now_ns: int | None = None) -> None:
        self.position = msg
        open_ids = set(msg.open_intents)
        now = clock.monotonic_ns() if now_ns is None else now_ns
        for intent_id, sent in list(self.in_flight.items()):
            # gone from execution's open list (and not merely too new to be on it)
            if intent_id not in open_ids and now - sent > 200_000_000:
                del self.in_flight[intent_id]

    def done(self, intent_id: str) -> None:
        """Execution refused the intent or did not answer: it is not in flight."""
        self.in_flight.pop(intent_id, None)

    # -- deciding --------------------------------------------------------------------------------

    def evaluate(self, market: str) -> list[Sized]:
        out = []
        for buy_venue in self.venues:
            for sell_venue in self.venues:
                if buy_venue != sell_venue:
                    decision = self.direction(market, buy_venue, sell_venue)
                    if decision is not None:
                        out.append(decision)
        return out

    def direction(self, market: str, buy_venue: str, sell_venue: str) -> Sized | None:
        buy_book, sell_book = self.depth.get((buy_venue, market)), self.depth.get((sell_venue, market))
        if buy_book is None or sell_book is None:
            return None
        p = self.params
        fee_buy, fee_sell = self.fees[buy_venue], self.fees[sell_venue]
        caps = self.caps(market, buy_venue, sell_venue, buy_book.asks)
        adj = self.skew(market, buy_venue, sell_venue)
        threshold = adj.threshold_bps if adj is not None else p.min_edge_bps
        opp = size_trade(buy_book.asks, sell_book.bids, fee_buy, fee_sell, threshold, caps)
        if opp is None:
            return None
        buy_limit, sell_limit = limit_prices(opp, fee_buy, fee_sell, p.slippage_bps)
        cap = self.notional_cap()
        if opp.volume * buy_limit > cap:  # execution checks it at the limit price
            opp = dataclasses.replace(opp, volume=floor_lot(cap / buy_limit))
        decision, about = self.filter(market, buy_venue, sell_venue, opp.volume, buy_limit,
                                      sell_limit)
        if decision == "sent" and adj is not None and adj.blocked:
            decision = "skew_blocked"  # it would push inventory past block_at_bands
        intent_id = ""
        if decision == "sent":
            intent_id = self.new_id()
            now = clock.monotonic_ns()
            self.in_flight[intent_id] = now
            self.cooldown_until[market] = now + p.cooldown_ms * 1_000_000
        return Sized(market, buy_venue, sell_venue, opp, buy_limit, sell_limit, decision, about,
                     intent_id, buy_book.asks[0][0], sell_book.bids[0][0], threshold,
                     adj.rule if adj is not None else "", adj.pressure if adj is not None else 0.0)

    def skew(self, market: str, buy_venue: str, sell_venue: str) -> EdgeAdjustment | None:
        if self.rebalance is None or self.position is None:
            return None
        # Balances change only with a new Position: compute each market's edges once per one
        # (the decider evaluates every changed market on every burst of books).
        if self._edges_for is not self.position:
            self._edges_for, self._edges = self.position, {}
        edges = self._edges.get(market)
        if edges is None:
            edges = self._edges[market] = market_edges(
                self.rebalance, market, self.params.min_edge_bps, self.position.balances,
                self.position.in_transit, self.venues)
        return edges.get((buy_venue, sell_venue))

    def caps(self, market: str, buy_venue: str, sell_venue: str, asks: list[Level]) -> Caps:
        coin = market.split("-", 1)[1]
        pos = self.position
        if pos is None:
            return Caps(0.0, 0.0, 0.0)  # balances unknown: size nothing
        krw = pos.balances.get(buy_venue, {}).get("KRW", 0.0)
        coins = pos.balances.get(sell_venue, {}).get(coin, 0.0)
        held = pos.inventory.get(market, {}).get(buy_venue, 0.0)
        room = max(0.0, self.params.max_inventory_krw / asks[0][0] - held) if asks else 0.0
        return Caps(krw_buy_venue=krw * 0.99, coin_sell_venue=coins,
                    max_notional_krw=self.notional_cap(), max_volume=room)

    def notional_cap(self) -> float:
        asks = []
        if self.params.max_notional_btc is not None and "KRW-BTC" in self.markets:
            for venue in self.venues:
                top = self.tops.top(venue, "KRW-BTC")
                if top is not None:
                    asks.append(top[0])
        return notional_cap(self.params.max_notional_krw, self.params.max_notional_btc, asks)

    def filter(self, market: str, buy_venue: str, sell_venue: str, volume: float,
               buy_limit: float, sell_limit: float) -> tuple[Decision, str]:
        """The decision, and the venue it is about (not_valid, stale) or ""."""
        p = self.params
        if volume * buy_limit < MIN_ORDER_KRW or volume * sell_limit < MIN_ORDER_KRW:
            return "below_min_order", ""
        for venue in (buy_venue, sell_venue):
            top = self.tops.top(venue, market)
            if top is None:
                return "not_valid", venue
            if clock.monotonic_ns() - top[1] > p.stale_after_ms * 1_000_000:
                return "stale", venue
        if self.position is not None and market in self.position.halted:
            return "halted", ""
        now = clock.monotonic_ns()
        if now < self.cooldown_until.get(market, 0):
            return "cooldown", ""
        if len(self.in_flight) >= p.max_in_flight:
            return "in_flight_cap", ""
        if max(self.move_bps(buy_venue, market), self.move_bps(sell_venue, market)) > p.max_move_bps:
            return "volatile", ""
        return "sent", ""

    def move_bps(self, venue: str, market: str) -> float:
        """How far this venue's mid ranged over the last ``vol_window_ms``, in bps."""
        mids = [m for _, m in self.mids[(venue, market)]]
        if len(mids) < 2:
            return 0.0
        return (max(mids) - min(mids)) / min(mids) * 1e4
