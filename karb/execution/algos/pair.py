"""A hedged pair trade run by an execution algorithm: the KRW-rebalancing trade (issue 12).

A KRW skew is fixed by buying coin on the KRW-heavy venue and selling it on the light one. Both
sides trade *at once*: every child the schedule asks for is one arbitrage-shaped
:class:`~karb.messages.Intent` (buy leg and sell leg together) given to execution through the
same door as the strategy's — its risk checks, journal, client ids, recovery and hedging — so
the position is never left open between children, and a child the risk checks refuse is simply
an empty child.

The schedules are the single-venue ones (:mod:`.schedules`), asked about the buy side: the
``MarketView`` is the buy venue's touch, and a child priced ``f`` above that ask (``f`` =
child price / ask - 1) sells at the sell venue's bid ``f`` below it, so aggression is the same
on both legs. A child whose cost — ``(buy limit - sell limit) / mid`` plus both taker fees — is
over the order's ``max_cost_bps`` is not sent (an empty child: the schedule waits or stops).

Implementation shortfall is measured against the arrival *premium*: the buy venue's mid minus
the sell venue's mid at arrival is what a frictionless swap would have cost; the shortfall is
what the children cost beyond it (spreads, fees, hedges, drift), in bps of the arrival mid:
``(bought - sold + fees - hedged volume * arrival premium) / (hedged volume * arrival mid)``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from karb import clock
from karb.exchanges.ticks import floor_lot
from karb.execution.algos.base import Algo, AlgoOrder, Child, MarketView, Progress
from karb.execution.tops import Quote
from karb.messages import Intent

log = logging.getLogger("karb.rebalancer")

MAX_CHILDREN = 500


@dataclass(frozen=True)
class PairOrder:
    market: str
    buy_venue: str  # the KRW-heavy venue: coin is bought here
    sell_venue: str  # the KRW-light one: coin is sold here
    volume: float
    max_cost_bps: float  # per child: (buy limit - sell limit) / mid + both fees, at most
    max_child_krw: float  # execution's per-intent notional cap
    horizon_s: float = 60.0
    slice_s: float = 5.0
    urgency: float = 0.5
    cross_bps: float = 5.0  # how far past the touch an aggressive child prices (per leg)


@dataclass(frozen=True)
class ChildFill:
    """What one child intent did, over all its legs (hedges included, on whichever venue
    execution placed them)."""

    accepted: bool
    bought: float = 0.0  # coin the buy venue gained (its buys less its sells)
    sold: float = 0.0  # coin the sell venue gave up (its sells less its buys)
    buy_funds: float = 0.0  # KRW paid over every buy fill of the intent (hedges too)
    sell_funds: float = 0.0  # KRW received over every sell fill of the intent
    fees: float = 0.0  # KRW
    reason: str = ""
    final: bool = True  # False: still open when we stopped following it (execution owns it)

    @property
    def hedged(self) -> float:
        """Coin that moved from the sell venue's side to the buy venue's: the swap done."""
        return max(0.0, min(self.bought, self.sold))


# Runs one child intent to its end: the live rebalancer asks execution over the bus and follows
# the journal; the backtester calls the executor directly.
IntentSink = Callable[[Intent], Awaitable[ChildFill]]
# (venue, market) → the touch now, or None
QuoteView = Callable[[str, str], Quote | None]


@dataclass(frozen=True)
class MarketNow:
    """What the market-state monitor last said of a market (``mstate.<market>``)."""

    state: str = "normal"  # karb.ops.marketstate: normal | volatile | trending | illiquid | ranging
    recent_volume: float = 0.0  # both venues' traded volume over the profile (0: no trades yet)
    volume_profile: tuple[float, ...] = ()  # per bucket, oldest first (vwap's weights)


StateView = Callable[[str], MarketNow]  # market → what the monitor said of it


@dataclass(frozen=True)
class PairResult:
    algo_id: str
    algo: str
    state_at_arrival: str
    market: str
    buy_venue: str
    sell_venue: str
    started_ns: int
    duration_s: float
    volume: float
    filled: float  # hedged volume
    children: int
    refused: int  # children execution refused (risk checks)
    arrival_mid: float
    arrival_premium: float  # buy venue's mid - sell venue's mid, KRW per coin
    cost_krw: float  # bought - sold + fees
    fees_krw: float
    net_bought: float  # coin the buy venue gained over every child (what to send back)

    @property
    def fill_rate(self) -> float:
        return self.filled / self.volume if self.volume > 0 else 0.0

    @property
    def shortfall_bps(self) -> float:
        if self.filled <= 0 or self.arrival_mid <= 0:
            return 0.0
        return ((self.cost_krw - self.filled * self.arrival_premium)
                / (self.filled * self.arrival_mid) * 1e4)

    @property
    def fee_bps(self) -> float:
        notional = self.filled * self.arrival_mid
        return self.fees_krw / notional * 1e4 if notional > 0 else 0.0


def mid(q: Quote) -> float:
    return (q.bid + q.ask) / 2


class PairAlgoRunner:
    def __init__(self, sink: IntentSink, quotes: QuoteView, states: StateView,
                 fees: dict[str, float], new_id: Callable[[], str]) -> None:
        self.sink = sink
        self.quotes = quotes
        self.states = states
        self.fees = fees
        self.new_id = new_id
        self.running: dict[str, tuple[str, PairOrder, Progress]] = {}  # for status
        self.stopping = False  # set: each running algorithm stops after its current child

    @staticmethod
    def _now() -> float:
        return clock.monotonic_ns() / 1e9

    def _view(self, order: PairOrder) -> MarketView | None:
        q = self.quotes(order.buy_venue, order.market)
        if q is None:
            return None
        m = self.states(order.market)
        return MarketView(q.bid, q.ask, m.state, m.volume_profile)

    async def run(self, algo: Algo, order: PairOrder, algo_id: str) -> PairResult | None:
        """None when either venue has no quote at arrival (nothing was sent)."""
        qb = self.quotes(order.buy_venue, order.market)
        qs = self.quotes(order.sell_venue, order.market)
        if qb is None or qs is None:
            return None
        state = self.states(order.market).state
        arrival_mid = (mid(qb) + mid(qs)) / 2
        single = AlgoOrder(order.buy_venue, order.market, "buy", order.volume,
                           qb.ask * (1 + order.cross_bps / 1e4), horizon_s=order.horizon_s,
                           urgency=order.urgency, display_volume=order.volume / 5,
                           slice_s=order.slice_s, cross_bps=order.cross_bps)
        p = Progress(started_s=self._now(), arrival_mid=qb.ask)
        started_ns = clock.time_ns()
        self.running[algo_id] = (algo.name, order, p)
        bought = sold = buy_funds = sell_funds = fees = 0.0
        refused = 0
        try:
            while p.children < MAX_CHILDREN and not self.stopping:
                step = algo.next(single, p, self._now(), self._view(order))
                if step is None:
                    break
                if isinstance(step, float | int):
                    await clock.current().sleep(max(0.0, float(step)))
                    continue
                p.children += 1
                fill = await self._child(algo_id, order, step, p.children)
                if fill is None or not fill.accepted:
                    refused += fill is not None
                    p.empty_children += 1
                    continue
                bought += fill.bought
                sold += fill.sold
                buy_funds += fill.buy_funds
                sell_funds += fill.sell_funds
                fees += fill.fees
                p.filled += fill.hedged
                p.empty_children = p.empty_children + 1 if fill.hedged <= 0 else 0
                if not fill.final:
                    log.warning("pair %s: a child is still open after it was followed; "
                                "execution owns it, the algorithm stops", algo_id)
                    break
        finally:
            self.running.pop(algo_id, None)
        result = PairResult(algo_id, algo.name, state, order.market, order.buy_venue,
                            order.sell_venue, started_ns, self._now() - p.started_s,
                            order.volume, p.filled, p.children, refused, arrival_mid,
                            mid(qb) - mid(qs), buy_funds - sell_funds + fees, fees,
                            bought - sold)
        log.info("pair %s %s %s buy %s sell %s: %.8g/%.8g hedged, cost %.0f KRW, shortfall "
                 "%.1f bps, %d children (%d refused)", algo_id, algo.name, order.market,
                 order.buy_venue, order.sell_venue, p.filled, order.volume, result.cost_krw,
                 result.shortfall_bps, p.children, refused)
        return result

    async def _child(self, algo_id: str, order: PairOrder, child: Child, n: int
                     ) -> ChildFill | None:
        """One hedged child intent; None when it is not sent (no quotes, too dear, too small)."""
        qb = self.quotes(order.buy_venue, order.market)
        qs = self.quotes(order.sell_venue, order.market)
        if qb is None or qs is None:
            return None
        f = child.price / qb.ask - 1
        buy_limit, sell_limit = child.price, qs.bid * (1 - f)
        ref = (mid(qb) + mid(qs)) / 2
        cost_bps = ((buy_limit - sell_limit) / ref * 1e4
                    + (self.fees[order.buy_venue] + self.fees[order.sell_venue]) * 1e4)
        if cost_bps > order.max_cost_bps:
            return None
        volume = floor_lot(min(child.volume, order.max_child_krw / buy_limit))
        if volume <= 0:
            return None
        now = clock.time_ns()
        intent = Intent(intent_id=self.new_id(), market=order.market, buy_venue=order.buy_venue,
                        sell_venue=order.sell_venue, volume=volume, buy_limit=buy_limit,
                        sell_limit=sell_limit, net_bps=-cost_bps, ts_event=now, ts_init=now)
        log.debug("pair %s child %d: intent %s %.8g at %.1f bps", algo_id, n, intent.intent_id,
                  volume, cost_bps)
        return await self.sink(intent)


def child_fill(legs: list[tuple[str, str, float, float, float]], buy_venue: str,
               sell_venue: str) -> ChildFill:
    """A child intent's outcome from its legs' journal rows ``(venue, side, executed_volume,
    executed_funds, fee)``, every leg counted where it traded: a hedge placed on the sell venue
    completes the swap as much as the sell leg would have."""
    coin = {buy_venue: 0.0, sell_venue: 0.0}
    buy_funds = sell_funds = fees = 0.0
    for venue, side, volume, funds, fee in legs:
        coin[venue] = coin.get(venue, 0.0) + (volume if side == "buy" else -volume)
        if side == "buy":
            buy_funds += funds
        else:
            sell_funds += funds
        fees += fee
    return ChildFill(True, coin[buy_venue], -coin[sell_venue], buy_funds, sell_funds, fees)
