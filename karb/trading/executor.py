"""What execution does with an intent, and how it recovers from its own death.

accept(intent): answer a repeated ``intent_id`` with its first answer; risk checks (kill switch,
halted market, circuit breaker, stale or moved prices, max notional, inventory limit, balances
with a reservation per intent); then the journal entry with both legs' client ids — and only
then the acknowledgement. run(intent): both legs go out at once as IOC limit orders and are
followed to a final state; a leg that failed or filled in part leaves an imbalance, hedged on
the better venue within ``hedge_loss_bps`` or, failing that, the market is halted and an alert
raised. reconcile(): on start, every leg the journal does not know to be final is looked up by
client id at its venue, and unfinished intents are completed (hedged) before anything new.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Callable

from karb import topics
from karb.exchanges.client import VenueClient
from karb.exchanges.errors import (VenueError)
from karb.messages import Alert, Intent, IntentAck, Msg, Position
from karb.trading.arb import MIN_ORDER_KRW
from karb.trading.journal import Journal, LegRecord
from karb.trading.legs import LegRunner
from karb.trading.limits import ExecutionLimits
from karb.trading.ledger import Ledger, coin_imbalance, intent_pnl
from karb.trading.risk import CircuitBreaker, KillSwitch, Reservations

log = logging.getLogger("karb.execution")

Publish = Callable[[bytes, Msg], None]
ANSWERS_KEPT = 10_000
# (venue, market) → (bid, ask, age in ms) from shared memory, or None when unreadable
TopReader = Callable[[str, str], tuple[float, float, float] | None]


def leg_client_id(intent_id: str, role: str) -> str:
    """Derived from the intent, so a resend after a crash is refused as a duplicate."""
    return f"{intent_id}-{role[0]}" if role != "hedge" else f"{intent_id}-h"


class Executor:
    def __init__(self, clients: dict[str, VenueClient], journal: Journal, limits: ExecutionLimits,
                 fees: dict[str, float], publish: Publish, top: TopReader,
                 breaker: CircuitBreaker, kill: KillSwitch, markets: list[str],
                 notional_cap: Callable[[], float] | None = None) -> None:
        self.clients = clients
        self.notional_cap = notional_cap or (lambda: limits.max_notional_krw)
        self.markets = markets
        self.journal = journal
        self.limits = limits
        self.fees = fees
        self.publish = publish
        self.top = top
        self.breaker = breaker
        self.kill = kill
        self.reservations = Reservations()
        self.ledger = Ledger()
        self.free: dict[tuple[str, str], float] = {}
        self.total: dict[tuple[str, str], float] = {}
        self.halted: set[str] = set(journal.halted())  # halts survive restarts
        self.open: dict[str, Intent] = {}
        self.pending_legs: dict[str, list[LegRecord]] = {}  # journaled at accept, to be run
        self.answers: dict[str, IntentAck] = {}
        self.legs = LegRunner(clients, journal, limits, publish, self.ledger)

    # -- balances --------------------------------------------------------------------------------

    async def refresh_balances(self) -> None:
        for venue, client in self.clients.items():
            try:
                balances = await client.balances()
            except VenueError as exc:
                log.warning("balances of %s not refreshed: %s", venue, exc)
                continue
            for currency, bal in balances.items():
                self.free[(venue, currency)] = bal.free
                self.total[(venue, currency)] = bal.total

    def publish_position(self) -> None:
        balances: dict[str, dict[str, float]] = defaultdict(dict)
        for (venue, currency), amount in self.free.items():
            balances[venue][currency] = amount
        inventory: dict[str, dict[str, float]] = {}
        for market in self.markets:
            coin = market.split("-", 1)[1]
            inventory[market] = {v: self.total.get((v, coin), 0.0) for v in self.clients}
        now = time.time_ns()
        self.publish(topics.POSITION, Position(
            balances=dict(balances), inventory=inventory, pnl_krw=dict(self.ledger.pnl_krw),
            pnl_total_krw=self.ledger.total, intents_done=self.ledger.intents_done,
            fills=self.ledger.fills, halted=sorted(self.halted), open_intents=sorted(self.open),
            ts_event=now, ts_init=now))

    async def check_fees(self, market: str) -> list[str]:
        """Compare the configured taker fees with what each venue charges this account. The
        strategy prices every edge with the configured ones: understated, it would trade at a
        loss. Returns the problems (and engages the kill switch if there are any)."""
        problems = []
        for venue, client in self.clients.items():
            try:
                real = await client.taker_fee(market)
            except VenueError as exc:
                log.warning("%s fee not checked: %s", venue, exc)
                continue
            if real is not None and self.fees[venue] + 1e-9 < real:
                problems.append(f"venues[{venue}].taker_fee is {self.fees[venue]:g} but the account "
                                f"pays {real:g} (orders/chance): fix the config")
        for problem in problems:
            log.critical("%s; kill switch engaged, no trading", problem)
        if problems:
            self.kill.commanded = True
        return problems

    # -- accepting ----------------------------------------------------------------------------------

    def accept(self, intent: Intent) -> IntentAck:
        """Risk checks and the journal entry; the answer goes back before any leg is sent."""
        known = self.answers.get(intent.intent_id)
        if known is not None:
            return known
        recorded = self.journal.intent_state(intent.intent_id)
        if recorded is not None:  # a resend after our restart: the first answer, again
            state, reason = recorded
            return IntentAck(intent_id=intent.intent_id, accepted=state != "REJECTED", reason=reason)
        reason = self._risk(intent)
        if reason is not None:
            self.journal.reject_intent(intent, reason)
            ack = IntentAck(intent_id=intent.intent_id, accepted=False, reason=reason)
            log.info("risk check FAIL %s %s: %s", intent.intent_id, intent.market, reason)
        else:
            legs = [LegRecord(leg_client_id(intent.intent_id, "buy"), intent.intent_id, "buy",
                              intent.buy_venue, intent.market, "buy", intent.buy_limit,
                              intent.volume, "PENDING"),
                    LegRecord(leg_client_id(intent.intent_id, "sell"), intent.intent_id, "sell",
                              intent.sell_venue, intent.market, "sell", intent.sell_limit,
                              intent.volume, "PENDING")]
            self.journal.open_intent(intent, legs)
            self.open[intent.intent_id] = intent
            self.pending_legs[intent.intent_id] = legs
            ack = IntentAck(intent_id=intent.intent_id, accepted=True)
            log.info("risk check PASS %s %s buy %s @ %.8g sell %s @ %.8g size %.8g",
                     intent.intent_id, intent.market, intent.buy_venue, intent.buy_limit,
                     intent.sell_venue, intent.sell_limit, intent.volume)
        self.answers[intent.intent_id] = ack
        if len(self.answers) > ANSWERS_KEPT:  # older ids are answered from the journal
            del self.answers[next(iter(self.answers))]
        return ack

    def _risk(self, intent: Intent) -> str | None:
        lim = self.limits
        if self.kill.engaged():
            return "kill switch engaged"
        if intent.market in self.halted:
            return f"{intent.market} is halted"
        if intent.buy_venue not in self.clients or intent.sell_venue not in self.clients:
            return "unknown venue"
        notional = intent.volume * intent.buy_limit
        cap = self.notional_cap()
        if notional > cap * 1.0001:
            return f"notional {notional:,.0f} KRW over the cap of {cap:,.0f} KRW"
        coin = intent.market.split("-", 1)[1]
        held = self.total.get((intent.buy_venue, coin), 0.0)
        if (held + intent.volume) * intent.buy_limit > lim.max_inventory_krw:
            return f"inventory of {coin} on {intent.buy_venue} would pass max_inventory_krw"
        for venue, limit, ok in ((intent.buy_venue, intent.buy_limit, lambda ask, lim_: ask <= lim_),
                                 (intent.sell_venue, intent.sell_limit, lambda bid, lim_: bid >= lim_)):
            top = self.top(venue, intent.market)
            if top is None:
                return f"no fresh price on {venue}"
            bid, ask, age_ms = top
            if age_ms > lim.stale_after_ms:
                return f"price on {venue} is {age_ms:.0f} ms old"
            if not ok(ask if venue == intent.buy_venue else bid, limit):
                return f"window closed on {venue}"
        why = self.breaker.allow()
        if why is not None:
            return why
        fee = self.fees[intent.buy_venue]
        why = self.reservations.try_reserve(intent.intent_id, self.free, {
            (intent.buy_venue, "KRW"): notional * (1 + fee),
            (intent.sell_venue, coin): intent.volume})
        if why is not None:
            self.breaker.probe_in_flight = False
            return why
        return None

    # -- running ------------------------------------------------------------------------------------

    async def run(self, intent: Intent, legs: list[LegRecord]) -> None:
        """Send both legs of an accepted intent (from ``pending_legs``) and settle it."""
        try:
            done = await asyncio.gather(*(self.legs.run(leg, intent.recv_mono) for leg in legs))
            await self._finish(intent.intent_id, intent.market, list(done))
        finally:
            self.reservations.release(intent.intent_id)
            self.open.pop(intent.intent_id, None)

    async def _finish(self, intent_id: str, market: str, legs: list[LegRecord]) -> None:
        failed = [leg for leg in legs if leg.role != "hedge" and leg.state in ("REJECTED", "NOT_SENT")]
        legs = await self._flatten(intent_id, market, legs)
        imbalance = coin_imbalance(legs)
        pnl = intent_pnl(legs)
        self.ledger.book_intent(market, legs)
        state = "DONE" if not failed else "FAILED"
        self.journal.finish_intent(intent_id, state, pnl,
                                   f"residual {imbalance:+.8g}" if imbalance else "")
        self.breaker.record(success=not failed)
        await self.refresh_balances()
        self.publish_position()
        log.info("intent %s %s %s: realised %+.0f KRW net of fees%s", intent_id, market,
                 state.lower(), pnl, f", residual {imbalance:+.8g}" if imbalance else "")

    async def _flatten(self, intent_id: str, market: str, legs: list[LegRecord]) -> list[LegRecord]:
        """Hedge a coin imbalance left by a failed or partial leg; halt the market if we cannot."""
        imbalance = coin_imbalance(legs)
        if imbalance == 0:
            return legs
        side = "sell" if imbalance > 0 else "buy"
        volume = abs(imbalance)
        best = await self._hedge_venue(market, side, volume)
        if best is None:
            self._halt(market, f"{intent_id}: {volume:.8g} {market} {'long' if side == 'sell' else 'short'}"
                       " and no venue can take the hedge")
            return legs
        venue, price = best
        if volume * price < MIN_ORDER_KRW:
            log.warning("%s: residual %+.8g %s is under the venue minimum; kept as inventory",
                        intent_id, imbalance, market)
            return legs
        bound = self.limits.hedge_loss_bps / 1e4
        limit = price * (1 - bound) if side == "sell" else price * (1 + bound)
        hedge = LegRecord(leg_client_id(intent_id, "hedge"), intent_id, "hedge", venue, market,
                          side, limit, float(f"{volume:.8f}"), "PENDING")
        if any(leg.client_id == hedge.client_id for leg in legs):
            self._halt(market, f"{intent_id}: the hedge did not flatten the position")
            return legs
        self.journal.add_leg(hedge)
        log.warning("%s: hedging %s %.8g %s on %s at limit %.8g", intent_id, side, volume,
                    market, venue, limit)
        done = await self.legs.run(hedge, 0)
        legs = legs + [done]
        left = coin_imbalance(legs)
        if left != 0 and abs(left) * price >= MIN_ORDER_KRW:
            self._halt(market, f"{intent_id}: {left:+.8g} {market} left after the hedge")
        return legs

    async def _hedge_venue(self, market: str, side: str, volume: float) -> tuple[str, float] | None:
        """The venue with the best price for the hedge among those with the funds for it."""
        coin = market.split("-", 1)[1]
        best: tuple[str, float] | None = None
        for venue, client in self.clients.items():
            try:
                book = await client.orderbook(market)
            except VenueError:
                continue
            if side == "sell" and book.bids and self.free.get((venue, coin), 0.0) >= volume:
                if best is None or book.bids[0][0] > best[1]:
                    best = (venue, book.bids[0][0])
            if side == "buy" and book.asks and self.free.get((venue, "KRW"), 0.0) >= volume * book.asks[0][0] * 1.01:
                if best is None or book.asks[0][0] < best[1]:
                    best = (venue, book.asks[0][0])
        return best

    def _halt(self, market: str, text: str) -> None:
        self.halted.add(market)
        self.journal.halt(market, text)
        log.critical("HALT %s: %s", market, text)
        now = time.time_ns()
        self.publish(topics.ALERT, Alert(level="critical", market=market, text=text,
                                         ts_event=now, ts_init=now))

    async def reconcile(self) -> int:
        """Settle everything the journal left open; returns how many legs were looked up."""
        open_legs = self.journal.legs(only_open=True)
        for leg in open_legs:
            log.info("reconciling %s (%s %s, journal says %s)", leg.client_id, leg.venue,
                     leg.side, leg.state)
        # Concurrently: each may wait out the settle time, and start_timeout_ms bounds the sum.
        await asyncio.gather(*(self.legs.reconcile(leg) for leg in open_legs))
        for intent_id in self.journal.open_intents():
            row = self.journal.intent_row(intent_id)
            await self._finish(intent_id, row["market"], self.journal.legs(intent_id))
        return len(open_legs)
