"""Runs one execution algorithm: asks its schedule what to do, sends each child through the
same path as an arbitrage leg — journaled before it is sent (an intent row of its own, legs
``<algo_id>-aN``, role ``algo``), sent once by :class:`LegRunner`, which alone owns its
recovery — and measures the result (implementation shortfall against the arrival mid, fill
rate, fees) for the optimizer.

A child still open at its deadline stops the algorithm: the leg is left to reconciliation
(which settles algo intents without hedging, karb.execution.executor), never resent.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from karb import clock
from karb.clock import Clock, LiveClock
from karb.exchanges.ticks import floor_lot
from karb.execution.algos.base import Algo, AlgoOrder, Child, MarketView, Progress
from karb.execution.journal import Journal
from karb.execution.legs import LegRunner
from karb.trading.orders import LegRecord, LegState, leg_client_id

log = logging.getLogger("karb.execution")

View = Callable[[str, str], MarketView | None]  # (venue, market) → the market now
# (venue, market, side, volume, price) → why this child may not go now, or None
Guard = Callable[[str, str, str, float, float], str | None]
MAX_CHILDREN = 500


@dataclass(frozen=True)
class AlgoResult:
    algo_id: str
    algo: str
    state_at_arrival: str
    volume: float
    filled: float
    avg_price: float
    arrival_mid: float
    fee: float
    children: int
    duration_s: float
    complete: bool  # every child final (False: one left to reconciliation)
    side: str = "buy"

    @property
    def fill_rate(self) -> float:
        return self.filled / self.volume if self.volume > 0 else 0.0

    @property
    def fee_bps(self) -> float:
        return self.fee / (self.avg_price * self.filled) * 1e4 if self.filled > 0 else 0.0

    @property
    def shortfall_bps(self) -> float:
        """Implementation shortfall against the arrival mid, fees in; positive = cost."""
        if self.filled <= 0 or self.arrival_mid <= 0:
            return 0.0
        fee_px = self.fee / self.filled
        if self.side == "buy":
            return (self.avg_price + fee_px - self.arrival_mid) / self.arrival_mid * 1e4
        return (self.arrival_mid - (self.avg_price - fee_px)) / self.arrival_mid * 1e4


def new_algo_id() -> str:
    """The same shape as an intent id (``i`` + 20 hex): parse_client_id knows its children."""
    return "i" + uuid.uuid4().hex[:20]


class AlgoRunner:
    def __init__(self, legs: LegRunner, journal: Journal, view: View,
                 clock: Clock | None = None, child_deadline_s: float = 15.0,
                 busy: set[str] | None = None, guard: Guard | None = None,
                 cap: Callable[[], float] | None = None) -> None:
        self.legs = legs
        # The executor's set of intents someone is settling: a running algo is in it, so the
        # reconciliation sweep neither settles its intent between children nor checks balances.
        self.busy = busy if busy is not None else set()
        # Execution's checks for one child (Executor.child_refusal): a child they refuse stops
        # the algorithm, as a refused intent would not trade.
        self.guard = guard
        self.cap = cap  # the notional cap per child (execution's per-intent cap), KRW
        self.journal = journal
        self.view = view
        self.clock = clock or LiveClock()
        self.child_deadline_s = child_deadline_s
        self.progress: dict[str, tuple[str, AlgoOrder, Progress]] = {}  # running ones, for status

    def _now(self) -> float:
        return self.clock.monotonic_ns() / 1e9

    async def run(self, algo: Algo, order: AlgoOrder, algo_id: str | None = None) -> AlgoResult:
        algo_id = algo_id or new_algo_id()
        arrival = self.view(order.venue, order.market)
        p = Progress(started_s=self._now(), arrival_mid=arrival.mid if arrival else 0.0)
        self.journal.open_algo(algo_id, algo.name, order.venue, order.market, order.side,
                               order.volume, order.limit_price)
        self.progress[algo_id] = (algo.name, order, p)
        self.busy.add(algo_id)
        complete = True
        stopped = ""
        try:
            while p.children < MAX_CHILDREN:
                step = algo.next(order, p, self._now(), self.view(order.venue, order.market))
                if step is None:
                    break
                if isinstance(step, float | int):
                    await self.clock.sleep(max(0.0, float(step)))
                    continue
                if self.cap is not None and step.volume * step.price > self.cap():
                    # a market or limit child is the whole remainder: one notional cap at a time
                    step = Child(floor_lot(self.cap() / step.price), step.price)
                if self.guard is not None:
                    why = self.guard(order.venue, order.market, order.side,
                                     floor_lot(step.volume), step.price)
                    if why is not None:
                        stopped = why
                        log.warning("algo %s: child refused (%s): stopped", algo_id, why)
                        break
                leg = await self._child(algo_id, order, step, p.children + 1)
                p.children += 1
                if leg is None:
                    p.empty_children += 1
                    continue
                p.filled += leg.executed_volume
                p.funds += leg.executed_funds
                p.fee += leg.fee
                p.empty_children = p.empty_children + 1 if leg.executed_volume <= 0 else 0
                if not leg.final:
                    complete = False
                    log.warning("algo %s: child %s open at its deadline; reconciliation owns it",
                                algo_id, leg.client_id)
                    break
            if complete:
                note = f"; stopped: {stopped}" if stopped else ""
                self.journal.finish_intent(algo_id, "DONE", 0.0, f"algo {algo.name}: "
                                           f"{p.filled:.8g}/{order.volume:.8g}{note}")
        finally:
            self.progress.pop(algo_id, None)
            self.busy.discard(algo_id)
        result = AlgoResult(algo_id, algo.name, arrival.state if arrival else "normal",
                            order.volume, p.filled, p.avg_price, p.arrival_mid, p.fee,
                            p.children, self._now() - p.started_s, complete, order.side)
        log.info("algo %s %s %s %s %.8g/%.8g filled, shortfall %.1f bps, %d children",
                 algo_id, algo.name, order.side, order.market, p.filled, order.volume,
                 result.shortfall_bps, p.children)
        return result

    async def _child(self, algo_id: str, order: AlgoOrder, child: Child, n: int
                     ) -> LegRecord | None:
        volume = floor_lot(child.volume)
        if volume <= 0:
            return None
        leg = LegRecord(leg_client_id(algo_id, "algo", n), algo_id, "algo", order.venue,
                        order.market, order.side, child.price, volume, LegState.PENDING)
        self.journal.add_leg(leg)  # journaled before it is sent, like every leg
        deadline = clock.monotonic() + self.child_deadline_s
        return await self.legs.run(leg, 0, deadline)
