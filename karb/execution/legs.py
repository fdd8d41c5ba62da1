"""One leg of an intent: sent once as an IOC limit order, followed to a final state, its fills
published and journaled — and, when the venue's answer is lost, found again by client id.

This module is the one owner of order recovery. The venue client sends once and reports
(:class:`OutcomeUnknown` when a POST got no usable answer, :class:`DuplicateClientId` when the
venue says the id was used); nothing below decides what that means. Here:

- An unanswered POST makes the leg ``UNKNOWN`` with ``gave_up_ns`` — when the request gave up —
  on the in-memory record and in the journal alike. The leg is then looked up by client id;
  "not found" becomes ``NOT_SENT`` only once ``settle_ms`` have passed since ``gave_up_ns``
  (a POST held in front of a venue's matching engine lands after the client gave up).
- "Client id already used" means the order exists: look it up, never ``REJECTED``.
- Every leg ends final or ``UNKNOWN``/``SENT`` by the caller's deadline: the caller halts the
  market and continuous reconciliation (karb.execution.reconcile) finishes the job.
- A cancel refused because the order is already done or cancelled is a final answer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from karb import clock, topics
from karb.exchanges.client import VenueClient
from karb.exchanges.errors import (AlreadyFinal, AuthError, DuplicateClientId, InsufficientFunds,
                                   InvalidOrder, OrderNotFound, OutcomeUnknown, RateLimited,
                                   VenueError, VenueUnavailable)
from karb.exchanges.types import Order, OrderState
from karb.execution.journal import Journal
from karb.execution.stream_book import StreamBook
from karb.messages import FillEvent, Msg, OrderEvent
from karb.retry import Backoff
from karb.trading.ledger import Ledger
from karb.trading.limits import ExecutionLimits
from karb.trading.orders import LegRecord, LegState

log = logging.getLogger("karb.execution")

Publish = Callable[[bytes, Msg], None]
# Errors after which asking again may help; anything else about a lookup is logged and retried
# too (until the deadline), since giving up on a leg is what must never happen silently.
TRANSIENT = (VenueUnavailable, RateLimited)


class LegRunner:
    def __init__(self, clients: dict[str, VenueClient], journal: Journal, limits: ExecutionLimits,
                 publish: Publish, ledger: Ledger,
                 streams: dict[str, StreamBook] | None = None) -> None:
        self.clients = clients
        # Per venue, what its private stream said (live mode only): a faster source of final
        # states than polling, never an owner — lookups by client id stay REST (resolve).
        self.streams = streams or {}
        self.journal = journal
        self.limits = limits
        self.publish = publish
        self.ledger = ledger
        # Told of every leg called NOT_SENT: continuous reconciliation watches it a while longer
        # (a POST held in front of a matching engine can land even after the settle window).
        self.on_not_sent: Callable[[LegRecord], None] | None = None

    # -- sending ----------------------------------------------------------------------------------

    async def run(self, leg: LegRecord, recv_mono: int, deadline: float) -> LegRecord:
        """Send one leg as an IOC limit order and follow it to a final state, or until
        ``deadline`` (clock.monotonic()) — then it comes back ``UNKNOWN`` or ``SENT``."""
        client = self.clients[leg.venue]
        if getattr(client, "dry_run", False):
            leg.state = LegState.DRY_RUN
            self.journal.update_leg(leg, "dry_run")
            self._event(leg, reason="dry run: not sent", recv_mono=recv_mono)
            log.info("DRY RUN would send %s %s %s %.8g %s @ %.8g IOC", leg.client_id, leg.venue,
                     leg.side, leg.volume, leg.market, leg.price)
            return leg
        # The leg is in the journal (PENDING, with its client id) since the intent was accepted;
        # reconciliation treats PENDING like UNKNOWN, so nothing more is written before the send.
        trace: dict[str, int] = {}
        try:
            order = await client.place_limit_order(leg.market, leg.side, leg.price, leg.volume,  # type: ignore[arg-type]  # side is "buy"/"sell" by construction
                                                   leg.client_id, "ioc", trace)
        except OutcomeUnknown as exc:
            self._unknown(leg, f"no answer to the order ({exc.name})", trace)
            return await self.resolve(leg, deadline)
        except DuplicateClientId as exc:
            self._unknown(leg, f"the venue says the id is used ({exc.name}): looking it up", trace)
            return await self.resolve(leg, deadline)
        except (InvalidOrder, InsufficientFunds, AuthError, RateLimited) as exc:
            # A definite refusal: nothing executed (a 429 is refused before the engine).
            leg.state = LegState.REJECTED
            self.journal.update_leg(leg, "rejected", {"error": exc.name, "message": exc.message})
            self._event(leg, reason=f"{exc.name}: {exc.message}", recv_mono=recv_mono,
                        sent_mono=trace.get("sent_mono", 0))
            log.warning("leg %s rejected by %s: %s", leg.client_id, leg.venue, exc)
            return leg
        leg.state = LegState.SENT
        leg.order_id = order.order_id
        self.journal.update_leg(leg, "sent", {"order_id": order.order_id})
        self._event(leg, recv_mono=recv_mono, sent_mono=trace.get("sent_mono", 0))
        log.info("leg %s %s %s %.8g %s @ %.8g sent", leg.client_id, leg.venue, leg.side,
                 leg.volume, leg.market, leg.price)
        return await self.follow(leg, order, deadline)

    def _unknown(self, leg: LegRecord, why: str, trace: dict[str, int]) -> None:
        leg.state = LegState.UNKNOWN
        leg.gave_up_ns = clock.time_ns()  # the settle window runs from the moment we gave up
        self.journal.update_leg(leg, "unknown", {"why": why})
        self._event(leg, reason=why, sent_mono=trace.get("sent_mono", 0))
        log.warning("leg %s on %s: %s", leg.client_id, leg.venue, why)

    # -- following --------------------------------------------------------------------------------

    async def follow(self, leg: LegRecord, order: Order, deadline: float) -> LegRecord:
        """Follow an order until it is final (an IOC is at once); cancel what lingers past
        ``leg_timeout_ms``. Returns the leg ``SENT`` (not final) if ``deadline`` passes first.

        While the venue's private stream is connected, the stream comes first: the follower
        waits up to ``stream_wait_ms`` for the order's final update (often already buffered:
        an IOC is final before its POST is answered) and journals it when its fills add up;
        else it reads the order by REST once and waits again. While the stream is down it polls
        REST every ``poll_interval_ms`` as before. Either source ends in the same ``_apply``."""
        client = self.clients[leg.venue]
        book = self.streams.get(leg.venue)
        cancel_at = clock.monotonic() + self.limits.leg_timeout_ms / 1000
        cancelled = False
        backoff = Backoff(self.limits.poll_interval_ms / 1000, 1.0, deadline - clock.monotonic())
        first = True
        source = "rest"
        while not (order.state.final and order.complete):
            if book is not None and book.live:
                update = await book.wait_final(order.order_id, leg.client_id,
                                               min(self.limits.stream_wait_ms / 1000,
                                                   max(deadline - clock.monotonic(), 0.0)))
                if update is not None:
                    streamed = book.order(update.order_id)
                    if streamed is not None:
                        order, source = streamed, "stream"
                        break
                    # Final, but its fills do not add up to the venue's totals (a trade event
                    # missed across a reconnect): read the order in full by REST, from now on.
                    log.info("leg %s: stream's fills for %s do not add up; reading REST",
                             leg.client_id, update.order_id)
                    book = None
                elif clock.monotonic() >= deadline:
                    self._overdue(leg, "not final")
                    return leg
            elif not first and not await backoff.sleep():
                self._overdue(leg, "not final")
                return leg
            first = False
            if not cancelled and clock.monotonic() > cancel_at:
                cancelled = await self._cancel(leg, client, order)
            try:
                order = await client.get_order(order_id=order.order_id)
            except (*TRANSIENT, OrderNotFound) as exc:  # not found: the read path lags
                log.info("leg %s: lookup on %s failed (%s); asking again", leg.client_id,
                         leg.venue, exc.name)
            except VenueError as exc:
                log.error("leg %s: unexpected answer from %s: %s", leg.client_id, leg.venue, exc)
        self.apply(leg, order, source)
        return leg

    async def _cancel(self, leg: LegRecord, client: VenueClient, order: Order) -> bool:
        """Ask once; True when the venue answered (cancel accepted, or already final)."""
        try:
            await client.cancel_order(order_id=order.order_id)
        except AlreadyFinal:
            log.info("leg %s: cancel refused, already final: reading its fills", leg.client_id)
        except (*TRANSIENT, OrderNotFound) as exc:
            log.warning("leg %s: cancel on %s failed (%s); will ask again", leg.client_id,
                        leg.venue, exc.name)
            return False
        except VenueError as exc:
            log.error("leg %s: cancel refused by %s: %s", leg.client_id, leg.venue, exc)
        return True

    def apply(self, leg: LegRecord, order: Order, source: str = "rest") -> None:
        """Journal a final order on its leg and publish its fills (also for an order found by
        reconciliation)."""
        known = leg.executed_volume
        leg.order_id = order.order_id
        leg.executed_volume = order.executed_volume
        leg.executed_funds = order.executed_funds
        leg.fee = order.paid_fee
        leg.state = LegState.DONE if order.state == OrderState.DONE else LegState.CANCELLED
        self.journal.update_leg(leg, "final", {"state": str(leg.state),
                                               "executed": leg.executed_volume,
                                               "funds": leg.executed_funds, "fee": leg.fee,
                                               "source": source})
        if order.executed_volume > known:
            self.ledger.fills += len(order.fills) or 1
            now = clock.time_ns()
            for fill in order.fills:
                fee = fill.funds / order.executed_funds * order.paid_fee if order.executed_funds else 0.0
                self.publish(topics.fill(leg.venue), FillEvent(
                    intent_id=leg.intent_id, venue=leg.venue, market=leg.market, side=leg.side,
                    client_id=leg.client_id, trade_id=fill.trade_id, price=fill.price,
                    volume=fill.volume, funds=fill.funds, fee=fee, ts_event=now, ts_init=now))
        self._event(leg)
        avg = leg.executed_funds / leg.executed_volume if leg.executed_volume else 0.0
        log.info("leg %s %s %s: %s %.8g of %.8g %s at avg %.8g, fee %.0f KRW", leg.client_id,
                 leg.venue, leg.side, "filled" if leg.state == LegState.DONE else "cancelled after",
                 leg.executed_volume, leg.volume, leg.market, avg, leg.fee)

    def _event(self, leg: LegRecord, reason: str = "", recv_mono: int = 0, sent_mono: int = 0) -> None:
        now = clock.time_ns()
        self.publish(topics.order(leg.venue), OrderEvent(
            intent_id=leg.intent_id, role=leg.role, venue=leg.venue, market=leg.market,
            side=leg.side, client_id=leg.client_id, order_id=leg.order_id, state=str(leg.state),
            price=leg.price, volume=leg.volume, executed_volume=leg.executed_volume,
            executed_funds=leg.executed_funds, fee=leg.fee, reason=reason, recv_mono=recv_mono,
            sent_mono=sent_mono, ts_event=now, ts_init=now))

    def _overdue(self, leg: LegRecord, what: str) -> None:
        self.journal.update_leg(leg, "overdue", {"state": str(leg.state), "what": what})
        log.error("leg %s on %s: %s by its deadline (state %s); reconciliation will finish it",
                  leg.client_id, leg.venue, what, leg.state)

    # -- recovery -------------------------------------------------------------------------------

    async def resolve(self, leg: LegRecord, deadline: float) -> LegRecord:
        """Find an ``UNKNOWN``/``PENDING`` leg at its venue by client id. Found: follow it.
        Not found: ``NOT_SENT`` once ``settle_ms`` have passed since ``gave_up_ns``; until then,
        and through venue errors, ask again — up to ``deadline``, then it stays ``UNKNOWN``."""
        client = self.clients[leg.venue]
        settle_ns = self.limits.settle_ms * 1_000_000
        backoff = Backoff(0.05, 0.5, deadline - clock.monotonic())
        while True:
            try:
                order = await client.get_order(client_id=leg.client_id)
            except OrderNotFound:
                waited = clock.time_ns() - leg.gave_up_ns
                # A leg the venue acknowledged (it has an order id) exists, whatever a lagging
                # read path says: it is never NOT_SENT, only looked for until the deadline.
                if waited >= settle_ns and not leg.order_id:
                    leg.state = LegState.NOT_SENT
                    self.journal.update_leg(leg, "reconciled", {"state": "NOT_SENT",
                                                                "settled_ms": waited // 1_000_000})
                    self._event(leg, reason=f"not at the venue {waited / 1e9:.2f} s after the "
                                            "last request gave up")
                    log.info("leg %s: not at %s %.2f s after the last request gave up: NOT_SENT",
                             leg.client_id, leg.venue, waited / 1e9)
                    if self.on_not_sent is not None:
                        self.on_not_sent(leg)
                    return leg
                # Ask again no later than the end of the settle window.
                if not await self._pause(backoff, (settle_ns - waited) / 1e9, leg):
                    return leg
                continue
            except VenueError as exc:  # unavailable, rate limited, not ready (422), unexpected
                log.warning("resolving %s: %s answered %s; asking again", leg.client_id, leg.venue,
                            exc.name)
                if not await self._pause(backoff, None, leg):
                    return leg
                continue
            if leg.state != LegState.SENT or leg.order_id != order.order_id:
                leg.state = LegState.SENT
                leg.order_id = order.order_id
                self.journal.update_leg(leg, "found", {"order_id": order.order_id})
                log.info("leg %s found at %s (order %s)", leg.client_id, leg.venue, order.order_id)
            return await self.follow(leg, order, deadline)

    async def _pause(self, backoff: Backoff, at_most_s: float | None, leg: LegRecord) -> bool:
        if backoff.expired:
            self._overdue(leg, "not resolved")
            return False
        delay = backoff.next_delay()
        if at_most_s is not None:
            delay = min(delay, max(at_most_s, 0.0) + 0.005)
        await asyncio.sleep(delay)
        return True

    async def recover(self, leg: LegRecord, deadline: float, not_before_ns: int = 0) -> LegRecord:
        """A leg the journal left open (after a crash, or past an earlier deadline): follow it by
        order id if the venue gave one, else resolve it by client id. ``not_before_ns``: a
        request may have been in flight until then (our own death), so the settle window cannot
        start earlier."""
        # Whatever its state, a request for it may have been in flight when we died.
        leg.gave_up_ns = max(leg.gave_up_ns, not_before_ns)
        if leg.order_id:
            client = self.clients[leg.venue]
            try:
                order = await client.get_order(order_id=leg.order_id)
            except VenueError as exc:
                log.warning("recovering %s: %s (%s); resolving by client id", leg.client_id,
                            leg.venue, exc.name)
            else:
                return await self.follow(leg, order, deadline)
        return await self.resolve(leg, deadline)
