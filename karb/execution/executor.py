"""What execution does with an intent, and how it settles what it started.

accept(intent) → :class:`Acceptance`: a repeated ``intent_id`` gets its first answer; otherwise
risk checks (kill switch, balance hold, halted market, circuit breaker, stale balances, fresh and
unmoved prices from shared memory, the notional cap, inventory with reservations, balances with
reservations), then the journal entry with both legs' client ids — and only then the answer,
with the legs to run. run(intent, legs): both legs at once in one task group, each followed to a
final state by its deadline; settle(): an imbalance is hedged on the better venue (chosen from
reservation-aware balances and the shared-memory top: no REST round trip while exposed), each
attempt under a fresh client id, or the market is halted with a critical alert.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from karb import clock, topics
from karb.exchanges.client import VenueClient
from karb.exchanges.errors import VenueError
from karb.exchanges.ticks import floor_lot
from karb.execution.journal import Journal
from karb.execution.legs import LegRunner
from karb.execution.stream_book import StreamBook
from karb.execution.transfer_journal import in_transit
from karb.execution.tops import Tops
from karb.messages import Alert, Intent, IntentAck, Msg, Position
from karb.trading.arb import MIN_ORDER_KRW
from karb.trading.ledger import Ledger, coin_imbalance, intent_pnl
from karb.trading.limits import ExecutionLimits
from karb.trading.orders import EMPTY_LEG_STATES, LegRecord, LegState, leg_client_id
from karb.trading.risk import CircuitBreaker, KillSwitch, Reservations, inventory_key, notional_cap

log = logging.getLogger("karb.execution")

Publish = Callable[[bytes, Msg], None]
ANSWERS_KEPT = 10_000


@dataclass(frozen=True)
class Acceptance:
    ack: IntentAck
    legs: list[LegRecord] = field(default_factory=list)  # to run: empty unless newly accepted


def coin_of(market: str) -> str:
    return market.split("-", 1)[1]


class Executor:
    def __init__(self, clients: dict[str, VenueClient], journal: Journal, limits: ExecutionLimits,
                 fees: dict[str, float], publish: Publish, tops: Tops,
                 breaker: CircuitBreaker, kill: KillSwitch, markets: list[str],
                 streams: dict[str, StreamBook] | None = None) -> None:
        self.clients = clients
        self.markets = markets
        self.journal = journal
        self.limits = limits
        self.fees = fees
        self.publish = publish
        self.tops = tops
        self.breaker = breaker
        self.kill = kill
        self.reservations = Reservations()
        self.ledger = Ledger()
        self.free: dict[tuple[str, str], float] = {}
        self.total: dict[tuple[str, str], float] = {}
        self.stale_venues: set[str] = set(clients)  # until the first refresh succeeds
        self.halted: set[str] = set(journal.halted())  # halts survive restarts
        self.open: dict[str, Intent] = {}
        self.settling: set[str] = set()  # intents whose settlement is running
        self.balance_hold = ""  # why new intents are refused until 'ack-balances'
        self.answers: dict[str, IntentAck] = {}
        # ``streams``: each venue's private-stream book (live mode), which legs follow first.
        self.legs = LegRunner(clients, journal, limits, publish, self.ledger, streams)

    # -- balances --------------------------------------------------------------------------------

    async def refresh_balances(self) -> bool:
        """Read every venue's balances; a venue whose read fails is marked stale (risk refuses
        intents on it) until a read succeeds. True when every venue answered."""
        results = await asyncio.gather(*(c.balances() for c in self.clients.values()),
                                       return_exceptions=True)
        for venue, result in zip(self.clients, results):
            if isinstance(result, VenueError):
                if venue not in self.stale_venues:
                    log.warning("balances of %s not refreshed (%s): stale, no intents on it",
                                venue, result)
                self.stale_venues.add(venue)
                continue
            if isinstance(result, BaseException):
                raise result
            for key in [k for k in self.free if k[0] == venue]:
                self.free[key] = self.total[key] = 0.0  # a currency gone from the answer is 0
            for currency, bal in result.items():
                self.free[(venue, currency)] = bal.free
                self.total[(venue, currency)] = bal.total
            if venue in self.stale_venues:
                self.stale_venues.discard(venue)
        return not self.stale_venues

    def available(self, venue: str, currency: str, excluding: str | None = None) -> float:
        """Free after what intents in flight (other than ``excluding``) have reserved."""
        return self.reservations.available(self.free, venue, currency, excluding)

    def publish_position(self) -> None:
        balances: dict[str, dict[str, float]] = defaultdict(dict)
        for (venue, currency) in self.free:
            balances[venue][currency] = self.available(venue, currency)
        inventory: dict[str, dict[str, float]] = {}
        for market in self.markets:
            coin = coin_of(market)
            inventory[market] = {v: self.total.get((v, coin), 0.0)
                                 + self.reservations.held(inventory_key(v, coin))
                                 for v in self.clients}
        now = clock.time_ns()
        self.publish(topics.POSITION, Position(
            balances=dict(balances), inventory=inventory, pnl_krw=dict(self.ledger.pnl_krw),
            pnl_total_krw=self.ledger.total, intents_done=self.ledger.intents_done,
            fills=self.ledger.fills, halted=sorted(self.halted), open_intents=sorted(self.open),
            in_transit=in_transit(self.journal.db), ts_event=now, ts_init=now))

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

    def accept(self, intent: Intent) -> Acceptance:
        """Risk checks and the journal entry; the answer goes back before any leg is sent."""
        known = self.answers.get(intent.intent_id)
        if known is not None:
            return Acceptance(known)
        recorded = self.journal.intent_state(intent.intent_id)
        if recorded is not None:  # a resend after our restart: the first answer, again
            state, reason = recorded
            return Acceptance(IntentAck(intent_id=intent.intent_id, accepted=state != "REJECTED",
                                        reason=reason))
        legs: list[LegRecord] = []
        refusal = self._risk(intent)
        if refusal is not None:
            self.journal.reject_intent(intent, refusal)
            ack = IntentAck(intent_id=intent.intent_id, accepted=False, reason=refusal)
            log.info("risk check FAIL %s %s: %s", intent.intent_id, intent.market, refusal)
        else:
            legs = [LegRecord(leg_client_id(intent.intent_id, "buy"), intent.intent_id, "buy",
                              intent.buy_venue, intent.market, "buy", intent.buy_limit,
                              intent.volume, LegState.PENDING),
                    LegRecord(leg_client_id(intent.intent_id, "sell"), intent.intent_id, "sell",
                              intent.sell_venue, intent.market, "sell", intent.sell_limit,
                              intent.volume, LegState.PENDING)]
            self.journal.open_intent(intent, legs)
            self.open[intent.intent_id] = intent
            ack = IntentAck(intent_id=intent.intent_id, accepted=True)
            log.info("risk check PASS %s %s buy %s @ %.8g sell %s @ %.8g size %.8g",
                     intent.intent_id, intent.market, intent.buy_venue, intent.buy_limit,
                     intent.sell_venue, intent.sell_limit, intent.volume)
        self.answers[intent.intent_id] = ack
        if len(self.answers) > ANSWERS_KEPT:  # older ids are answered from the journal
            del self.answers[next(iter(self.answers))]
        return Acceptance(ack, legs)

    def notional_cap(self) -> float:
        return notional_cap(self.limits.max_notional_krw, self.limits.max_notional_btc,
                            self.tops.asks("KRW-BTC"))

    def _gate(self, market: str, venues: tuple[str, ...]) -> str | None:
        """The checks every order shares, an intent's or an algorithm child's: kill switch,
        balance hold, halt, known venues with fresh balances."""
        if self.kill.engaged():
            return "kill switch engaged"
        if self.balance_hold:
            return f"balances disagree with the journal ({self.balance_hold}); 'ack-balances'"
        if market in self.halted:
            return f"{market} is halted"
        if any(venue not in self.clients for venue in venues):
            return "unknown venue"
        for venue in venues:
            if venue in self.stale_venues:
                return f"balances of {venue} are stale (the last refresh failed)"
        return None

    def _size_refusal(self, venue: str, market: str, volume: float, price: float,
                      buying: bool = True) -> str | None:
        """The notional cap, and (``buying``) the inventory cap of the coin bought on ``venue``."""
        notional = volume * price
        cap = self.notional_cap()
        if notional > cap * 1.0001:
            return f"notional {notional:,.0f} KRW over the cap of {cap:,.0f} KRW"
        if not buying:
            return None
        coin = coin_of(market)
        held = self.total.get((venue, coin), 0.0) + self.reservations.held(inventory_key(venue, coin))
        if (held + volume) * price > self.limits.max_inventory_krw:
            return f"inventory of {coin} on {venue} would pass max_inventory_krw"
        return None

    def _risk(self, intent: Intent) -> str | None:
        lim = self.limits
        why = (self._gate(intent.market, (intent.buy_venue, intent.sell_venue))
               or self._size_refusal(intent.buy_venue, intent.market, intent.volume,
                                     intent.buy_limit))
        if why is not None:
            return why
        notional = intent.volume * intent.buy_limit
        coin = coin_of(intent.market)
        incoming = inventory_key(intent.buy_venue, coin)
        for venue, limit, buying in ((intent.buy_venue, intent.buy_limit, True),
                                     (intent.sell_venue, intent.sell_limit, False)):
            quote = self.tops.quote(venue, intent.market)
            if quote is None:
                return f"no fresh price on {venue}"
            if quote.age_ms > lim.stale_after_ms:
                return f"price on {venue} is {quote.age_ms:.0f} ms old"
            if (quote.ask > limit) if buying else (quote.bid < limit):
                return f"window closed on {venue}"
        why = self.breaker.allow()
        if why is not None:
            return why
        fee = self.fees[intent.buy_venue]
        why = self.reservations.try_reserve(intent.intent_id, self.free, {
            (intent.buy_venue, "KRW"): notional * (1 + fee),
            (intent.sell_venue, coin): intent.volume,
            incoming: intent.volume})
        if why is not None:
            self.breaker.probe_in_flight = False
            return why
        return None

    def child_refusal(self, venue: str, market: str, side: str, volume: float,
                      price: float) -> str | None:
        """Why one child order of a single-venue execution algorithm may not go now, or None:
        the checks of an intent that apply to one leg (kill switch, balance hold, halt, stale
        balances, the notional cap, the inventory cap for a buy, and what is free after the
        reservations of intents in flight)."""
        why = self._gate(market, (venue,))
        if why is not None:
            return why
        if self.breaker.state != "CLOSED":  # read only: a child is no breaker probe
            return f"circuit breaker {self.breaker.state.lower().replace('_', '-')}"
        quote = self.tops.quote(venue, market)
        if quote is None or quote.age_ms > self.limits.stale_after_ms:
            return f"no fresh price on {venue}"
        why = self._size_refusal(venue, market, volume, price, buying=side == "buy")
        if why is not None:
            return why
        if side == "buy":
            need, have = volume * price * (1 + self.fees[venue]), self.available(venue, "KRW")
        else:
            need, have = volume, self.available(venue, coin_of(market))
        if need > have + 1e-12:
            return f"{need:.8g} needed on {venue}, {have:.8g} free after reservations"
        return None

    # -- running ------------------------------------------------------------------------------------

    async def run(self, intent: Intent, legs: list[LegRecord]) -> None:
        """Send both legs of an accepted intent at once and settle it. The legs live in one task
        group: one leg's failure never leaves its sibling running unowned."""
        try:
            deadline = clock.monotonic() + self.limits.leg_deadline_ms / 1000
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(self.legs.run(leg, intent.recv_mono, deadline))
                         for leg in legs]
            await self.settle(intent.intent_id, intent.market, [t.result() for t in tasks])
        finally:
            self.reservations.release(intent.intent_id)
            self.open.pop(intent.intent_id, None)

    async def settle(self, intent_id: str, market: str, legs: list[LegRecord]) -> None:
        """Flatten and close an intent whose legs are known. Legs still open past their deadline
        halt the market; reconciliation settles the intent once they are resolved."""
        if intent_id in self.settling:
            return
        self.settling.add(intent_id)
        try:
            await self._settle(intent_id, market, legs)
        finally:
            self.settling.discard(intent_id)

    async def _settle(self, intent_id: str, market: str, legs: list[LegRecord]) -> None:
        unresolved = [leg for leg in legs if not leg.final]
        if unresolved:
            names = ", ".join(f"{leg.client_id} {leg.state}" for leg in unresolved)
            self.halt(market, f"{intent_id}: {names} unresolved by the deadline; reconciliation "
                              "will settle it")
            self.journal.reopen_intent(intent_id, f"unresolved: {names}")
            self.breaker.record(success=False)
            return
        if (all(leg.role == "algo" for leg in legs) if legs
                else self.journal.intent_row(intent_id).get("reason", "").startswith("algo ")):
            # An execution algorithm's children (karb.execution.algos) are one-sided on purpose:
            # nothing to hedge, no arbitrage PnL; the algo's runner (or this, after a crash)
            # closes its intent once every child is final.
            filled = sum(leg.executed_volume for leg in legs)
            self.journal.finish_intent(intent_id, "DONE", 0.0, f"algo: {filled:.8g} filled")
            await self.refresh_balances()
            self.publish_position()
            return
        failed = any(leg.role != "hedge" and leg.state in EMPTY_LEG_STATES for leg in legs)
        legs = await self._flatten(intent_id, market, legs)
        if any(not leg.final for leg in legs):
            self.journal.reopen_intent(intent_id, "a hedge is unresolved")
            return
        imbalance = coin_imbalance(legs)
        pnl = intent_pnl(legs)
        row = self.journal.intent_row(intent_id)
        # Only an intent reconciliation reopened can have been booked before (the common path,
        # a fresh intent, is ACCEPTED and skips the events query).
        reopened = row.get("state") == "RECONCILING" and "finished" in self.journal.event_kinds(intent_id)
        self.ledger.book_intent(market, legs, row.get("pnl_krw", 0.0) if reopened else None)
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
        for attempt in range(1, self.limits.hedge_attempts + 1):
            imbalance = coin_imbalance(legs)
            if imbalance == 0:
                return legs
            if attempt > 1:
                # The last attempt met a moved or thinned book (often our own leg took the top
                # level the shared memory still shows) or a 429: let the next frame land.
                await asyncio.sleep(self.limits.hedge_retry_ms / 1000 * (attempt - 1))
            side = "sell" if imbalance > 0 else "buy"
            volume = floor_lot(abs(imbalance))
            best = self._hedge_venue(intent_id, market, side, volume, legs)
            if best is None:
                if attempt < self.limits.hedge_attempts:
                    # No fresh price or no funds right now (a feed restarting, a stalled
                    # stream): ask again after the pause rather than halt at once.
                    log.warning("%s: no venue can take the hedge of %.8g %s yet; asking again",
                                intent_id, volume, market)
                    continue
                self.halt(market, f"{intent_id}: {volume:.8g} {market} "
                                  f"{'long' if side == 'sell' else 'short'} and no venue can take "
                                  "the hedge")
                return legs
            venue, price = best
            if volume * price < MIN_ORDER_KRW:
                log.warning("%s: residual %+.8g %s is under the venue minimum; kept as inventory",
                            intent_id, imbalance, market)
                return legs
            bound = self.limits.hedge_loss_bps / 1e4
            limit = price * (1 - bound) if side == "sell" else price * (1 + bound)
            n = 1 + sum(1 for leg in legs if leg.role == "hedge")  # across settlements, too
            hedge = LegRecord(leg_client_id(intent_id, "hedge", n), intent_id, "hedge",
                              venue, market, side, limit, volume, LegState.PENDING)
            self.journal.add_leg(hedge)
            log.warning("%s: hedging %s %.8g %s on %s at limit %.8g (attempt %d)", intent_id,
                        side, volume, market, venue, limit, n)
            deadline = clock.monotonic() + self.limits.leg_deadline_ms / 1000
            legs = legs + [await self.legs.run(hedge, 0, deadline)]
            if not legs[-1].final:
                self.halt(market, f"{intent_id}: hedge {hedge.client_id} unresolved by its "
                                  "deadline; reconciliation will settle it")
                return legs
        left = coin_imbalance(legs)
        if left != 0:
            quote = self.tops.quote(legs[0].venue, market)
            if quote is None or abs(left) * quote.bid >= MIN_ORDER_KRW:
                self.halt(market, f"{intent_id}: {left:+.8g} {market} left after "
                                  f"{self.limits.hedge_attempts} hedge attempts")
        return legs

    def _hedge_venue(self, intent_id: str, market: str, side: str, volume: float,
                     legs: list[LegRecord]) -> tuple[str, float] | None:
        """The venue with the best shared-memory price for the hedge among those with the funds:
        balances from the last refresh, plus what this intent's legs changed since, less what
        other intents in flight hold."""
        coin = coin_of(market)
        delta: dict[tuple[str, str], float] = defaultdict(float)
        for leg in legs:
            sign = 1 if leg.side == "buy" else -1
            delta[(leg.venue, coin)] += sign * leg.executed_volume
            delta[(leg.venue, "KRW")] -= sign * leg.executed_funds + leg.fee
        best: tuple[str, float] | None = None
        for venue in self.clients:
            quote = self.tops.quote(venue, market)
            if quote is None or quote.age_ms > self.limits.stale_after_ms:
                continue
            if side == "sell":
                funds = self.available(venue, coin, intent_id) + delta[(venue, coin)]
                if funds >= volume and (best is None or quote.bid > best[1]):
                    best = (venue, quote.bid)
            else:
                funds = self.available(venue, "KRW", intent_id) + delta[(venue, "KRW")]
                if funds >= volume * quote.ask * 1.01 and (best is None or quote.ask < best[1]):
                    best = (venue, quote.ask)
        return best

    def halt(self, market: str, text: str) -> None:
        self.halted.add(market)
        self.journal.halt(market, text)
        self.alert("critical", market, f"HALT {market}: {text}")

    def alert(self, level: Literal["warning", "critical"], market: str, text: str) -> None:
        (log.critical if level == "critical" else log.warning)("%s", text)
        now = clock.time_ns()
        self.publish(topics.ALERT, Alert(level=level, market=market, text=text,
                                         ts_event=now, ts_init=now))

    # -- recovery ----------------------------------------------------------------------------------

    async def recover_open(self, not_before_ns: int = 0) -> int:
        """Resolve every leg the journal left open that no running intent owns, then settle the
        intents whose legs are all known. Returns how many legs were looked up."""
        open_legs = [leg for leg in self.journal.legs(only_open=True)
                     if leg.intent_id not in self.open and leg.intent_id not in self.settling]
        for leg in open_legs:
            log.info("reconciling %s (%s %s, journal says %s)", leg.client_id, leg.venue,
                     leg.side, leg.state)
        deadline = clock.monotonic() + self.limits.leg_deadline_ms / 1000
        # Concurrently: each may wait out the settle window, and start_timeout_ms bounds the sum.
        async with asyncio.TaskGroup() as group:
            for leg in open_legs:
                group.create_task(self.legs.recover(leg, deadline, not_before_ns))
        for intent_id in self.journal.open_intents():
            if intent_id in self.open or intent_id in self.settling:
                continue
            legs = self.journal.legs(intent_id)
            if all(leg.final for leg in legs):
                await self.settle(intent_id, self.journal.intent_row(intent_id)["market"], legs)
        return len(open_legs)
