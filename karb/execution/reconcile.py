"""Continuous reconciliation: while execution runs, the venues' view and the journal are compared
and the journal is made to agree — or trading stops (fail closed).

Each sweep (every ``reconcile_interval_s``):

1. Legs the journal holds open that no running intent owns (left ``UNKNOWN``/``SENT`` past their
   deadline) are resolved again and their intents settled.
2. Each venue's recent orders (open and closed; one listing per venue, all markets, within the
   rate limits) are matched to the journal by client id. An order with our client-id format
   that the journal does not know, or calls ``NOT_SENT``/``UNKNOWN``/``REJECTED``, or books with
   other fills, is read in full, booked on its leg (ingested if new), and its intent settled
   again: the imbalance is hedged or the market halted.
3. When nothing is in flight, venue balances are compared with what the journal says they
   should be: a baseline (the first quiet sweep of this incarnation) plus every fill journaled
   since. A difference beyond ``balance_tolerance_krw`` raises a critical alert and stops new
   intents until an operator sends ``ack-balances`` (which takes a new baseline). Coin
   transfers (karb.execution.transfer_journal) count as journaled as far as the journal has
   followed them; an open one may be a step further at the venue (withdrawn, or credited), and a
   balance either side of that step agrees (``open_transfer_steps``): the check runs while
   transfers are on their way instead of waiting for a quiet moment without any.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from karb import clock
from karb.exchanges.errors import VenueError
from karb.exchanges.types import Order
from karb.execution.executor import Executor, coin_of
from karb.execution.transfer_journal import open_transfer_steps
from karb.trading.orders import EMPTY_LEG_STATES, LegRecord, LegState, parse_client_id

log = logging.getLogger("karb.execution")

Totals = dict[tuple[str, str], float]


@dataclass
class SweepStats:
    sweeps: int = 0
    ingested: int = 0  # orders found at a venue that the journal did not know
    corrected: int = 0  # legs whose journal state or fills the venue contradicted
    balance_checks: int = 0
    balance_mismatches: int = 0


class Reconciler:
    def __init__(self, executor: Executor, watch_ms: int = 5000, watch_interval_ms: int = 200
                 ) -> None:
        self.ex = executor
        self.stats = SweepStats()
        self.baseline: tuple[Totals, Totals] | None = None  # (venue totals, journal totals)
        self.watch_ms = watch_ms
        self.watch_interval_ms = watch_interval_ms
        self.watching: set[asyncio.Task[None]] = set()
        executor.legs.on_not_sent = self.watch

    # -- late landings ----------------------------------------------------------------------------

    def watch(self, leg: LegRecord) -> None:
        """A leg was just called NOT_SENT: look it up by client id every ``watch_interval_ms``
        for ``watch_ms`` more, so an order that lands even later is booked (and hedged) within
        a fraction of a second instead of at the next sweep."""
        if self.watch_ms <= 0:
            return
        task = asyncio.get_running_loop().create_task(self._watch(leg))
        self.watching.add(task)
        task.add_done_callback(self.watching.discard)

    async def _watch(self, leg: LegRecord) -> None:
        client = self.ex.clients[leg.venue]
        until = clock.monotonic() + self.watch_ms / 1000
        while clock.monotonic() < until:
            await asyncio.sleep(self.watch_interval_ms / 1000)
            try:
                order = await client.get_order(client_id=leg.client_id)
            except VenueError:
                continue  # not found (the usual answer), or a passing fault: ask again
            log.warning("leg %s landed at %s after it was called NOT_SENT", leg.client_id,
                        leg.venue)
            # Its intent may still be settling (hedging what the NOT_SENT left): book the late
            # order once that settlement is over, so the two never act on one intent at once.
            settled_by = clock.monotonic() + self.ex.limits.leg_deadline_ms / 1000
            while self._busy(leg.intent_id) and clock.monotonic() < settled_by:
                await asyncio.sleep(0.02)
            await self._settle_found(order)
            return

    async def close(self) -> None:
        for task in list(self.watching):
            task.cancel()
        await asyncio.gather(*self.watching, return_exceptions=True)

    async def sweep(self) -> None:
        self.stats.sweeps += 1
        await self.ex.recover_open()
        for venue, client in self.ex.clients.items():
            try:
                orders = await client.recent_orders()
            except VenueError as exc:
                log.warning("reconciliation: %s orders not listed (%s)", venue, exc)
                continue
            for order in orders:
                await self._check(order)
        await self.check_balances()

    # -- orders -----------------------------------------------------------------------------------

    def _busy(self, intent_id: str) -> bool:
        return intent_id in self.ex.open or intent_id in self.ex.settling

    async def _check(self, listed: Order) -> None:
        parsed = parse_client_id(listed.client_id)
        if parsed is None or listed.client_id is None:
            return  # not ours: placed by hand or by another program on the account
        intent_id, role = parsed
        if self._busy(intent_id):
            return  # its owner is following it
        leg = self.ex.journal.leg(listed.client_id)
        if leg is not None and leg.final and leg.state not in EMPTY_LEG_STATES \
                and _agrees(leg, listed):
            return
        if leg is not None and not leg.final:
            return  # open in the journal: step 1 of the sweep resolves it
        try:  # listings carry no trades: read the order in full before booking anything
            order = await self.ex.clients[listed.venue].get_order(order_id=listed.order_id)
        except VenueError as exc:
            log.warning("reconciliation: %s %s not read (%s)", listed.venue, listed.client_id, exc)
            return
        await self._settle_found(order)

    async def _settle_found(self, order: Order) -> None:
        """Book an order found at its venue (read in full) on the journal and settle its intent
        again, unless the journal already agrees or the intent's owner is on it."""
        parsed = parse_client_id(order.client_id)
        if parsed is None:
            return
        intent_id, role = parsed
        if self._busy(intent_id):
            return
        journal = self.ex.journal
        leg = journal.leg(order.client_id or "")
        if leg is not None and leg.final and leg.state not in EMPTY_LEG_STATES \
                and _agrees(leg, order):
            return
        if leg is not None and not leg.final:
            return
        if leg is not None and leg.state in EMPTY_LEG_STATES and order.executed_volume == 0 \
                and order.state.final and order.complete:
            self.ex.legs.apply(leg, order)  # it existed after all, and took nothing
            self.stats.corrected += 1
            return
        if leg is None:
            leg = self._ingest(intent_id, role, order)
        else:
            self.stats.corrected += 1
            self.ex.alert("critical", order.market,
                          f"{order.client_id} at {order.venue}: the journal said {leg.state} with "
                          f"{leg.executed_volume:.8g} filled, the venue {order.state.value} with "
                          f"{order.executed_volume:.8g}: booking the venue's and settling again")
        deadline = clock.monotonic() + self.ex.limits.leg_deadline_ms / 1000
        if order.state.final and order.complete:
            self.ex.legs.apply(leg, order)
        else:
            leg.state, leg.order_id = LegState.SENT, order.order_id
            await self.ex.legs.follow(leg, order, deadline)
        legs = journal.legs(intent_id)
        journal.reopen_intent(intent_id, f"{order.client_id} found at {order.venue}")
        if all(one.final for one in legs):
            await self.ex.settle(intent_id, order.market, legs)

    def _ingest(self, intent_id: str, role: str, order: Order) -> LegRecord:
        journal = self.ex.journal
        journal.ingest_intent(intent_id, order.market, f"order {order.client_id} found at "
                                                       f"{order.venue}, unknown to the journal")
        leg = LegRecord(order.client_id or "", intent_id, role, order.venue, order.market,
                        order.side, order.price or 0.0, order.volume or order.executed_volume,
                        LegState.SENT, order_id=order.order_id)
        journal.add_leg(leg)
        self.stats.ingested += 1
        self.ex.alert("critical", order.market,
                      f"{order.client_id} at {order.venue} was unknown to the journal "
                      f"({order.executed_volume:.8g} filled): ingested, settling its intent")
        return leg

    # -- balances ---------------------------------------------------------------------------------

    def _quiet(self) -> bool:
        return not self.ex.open and not self.ex.settling

    async def check_balances(self) -> list[str]:
        """Compare venue balances with the journal when nothing is in flight; returns the
        differences found (empty when they agree or the check could not run)."""
        journal = self.ex.journal
        if not self._quiet() or journal.legs(only_open=True):
            return []
        before = journal.executed_totals()
        if not await self.ex.refresh_balances() or not self._quiet():
            return []
        # The journal's totals and its open transfers from one snapshot: the rebalancer (another
        # process) may settle a transfer between two reads, and it would be in neither.
        journal.db.execute("BEGIN")
        try:
            totals = journal.executed_totals()
            steps = open_transfer_steps(journal.db)
        finally:
            journal.db.execute("COMMIT")
        if totals != before:
            return []
        venue = dict(self.ex.total)
        if self.baseline is None:
            if steps:  # a baseline must not depend on where an open transfer stands
                return []
            self.baseline = (venue, totals)
            log.info("balance reconciliation: baseline taken (%d balances)", len(venue))
            return []
        self.stats.balance_checks += 1
        problems = self._differences(venue, totals, steps)
        if problems and not self.ex.balance_hold:
            self.stats.balance_mismatches += 1
            self.ex.balance_hold = "; ".join(problems[:3]) + ("; …" if len(problems) > 3 else "")
            self.ex.alert("critical", "", "balances disagree with the journal: "
                          f"{self.ex.balance_hold}. New intents refused until 'ack-balances'")
            self.ex.publish_position()
        return problems

    def _differences(self, venue: Totals, totals: Totals,
                     steps: dict[tuple[str, str], float] | None = None) -> list[str]:
        """``steps``: per (venue, coin), the one move an open transfer may have made at the
        venue that the journal does not show yet; the balance may be either side of it."""
        assert self.baseline is not None
        base_venue, base_totals = self.baseline
        steps = steps or {}
        coins = {coin_of(m) for m in self.ex.markets}
        problems = []
        for key in sorted(set(venue) | set(base_venue) | set(totals)):
            name, currency = key
            if currency != "KRW" and currency not in coins:
                continue
            expected = base_venue.get(key, 0.0) + totals.get(key, 0.0) - base_totals.get(key, 0.0)
            diff = venue.get(key, 0.0) - expected
            step = steps.get(key, 0.0)
            if step and abs(diff - step) < abs(diff):
                diff -= step  # the transfer's step already happened at the venue
            value = diff if currency == "KRW" else diff * self._price(name, currency)
            if abs(value) > self.ex.limits.balance_tolerance_krw:
                problems.append(f"{name} {currency} {venue.get(key, 0.0):.8g}, journal expects "
                                f"{expected:.8g} ({value:+,.0f} KRW)")
        return problems

    def _price(self, venue: str, coin: str) -> float:
        quote = self.ex.tops.quote(venue, f"KRW-{coin}")
        if quote is None:
            asks = self.ex.tops.asks(f"KRW-{coin}")
            return asks[0] if asks else float("inf")  # no price: any difference counts
        return (quote.bid + quote.ask) / 2

    def acknowledge(self) -> str:
        """``ack-balances``: an operator checked the difference; take a new baseline."""
        was = self.ex.balance_hold
        self.ex.balance_hold = ""
        self.baseline = None
        log.warning("balance difference acknowledged (%s): new baseline at the next quiet sweep",
                    was or "none held")
        return "balances acknowledged" + (f" ({was})" if was else "")


def _agrees(leg: LegRecord, order: Order) -> bool:
    return (abs(leg.executed_volume - order.executed_volume) < 1e-10
            and abs(leg.fee - order.paid_fee) < 1e-6)
