"""One leg of an intent: sent as an IOC limit order, followed to a final state, its fills
published and journaled; and, after a crash, found again at its venue by client id."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from karb import topics
from karb.exchanges.client import VenueClient
from karb.exchanges.errors import (AuthError, InsufficientFunds, InvalidOrder, OrderNotFound,
                                   RateLimited, VenueUnavailable)
from karb.exchanges.types import Order, OrderState
from karb.messages import FillEvent, Msg, OrderEvent
from karb.trading.journal import Journal, LegRecord
from karb.trading.ledger import Ledger
from karb.trading.limits import ExecutionLimits

log = logging.getLogger("karb.execution")

Publish = Callable[[bytes, Msg], None]


class LegRunner:
    def __init__(self, clients: dict[str, VenueClient], journal: Journal, limits: ExecutionLimits,
                 publish: Publish, ledger: Ledger) -> None:
        self.clients = clients
        self.journal = journal
        self.limits = limits
        self.publish = publish
        self.ledger = ledger

    async def run(self, leg: LegRecord, recv_mono: int) -> LegRecord:
        """Send one leg as an IOC limit order and follow it to a final state."""
        client = self.clients[leg.venue]
        if getattr(client, "dry_run", False):
            leg.state = "DRY_RUN"
            self.journal.update_leg(leg, "dry_run")
            self._event(leg, reason="dry run: not sent", recv_mono=recv_mono)
            log.info("DRY RUN would send %s %s %s %.8g %s @ %.8g IOC", leg.client_id, leg.venue,
                     leg.side, leg.volume, leg.market, leg.price)
            return leg
        # The leg is already in the journal (PENDING, with its client id) since the intent was
        # accepted, and reconciliation treats PENDING like SENT: nothing more is written, logged
        # or published before the request leaves.
        trace: dict[str, int] = {}
        try:
            order = await client.place_limit_order(leg.market, leg.side, leg.price, leg.volume,  # type: ignore[arg-type]
                                                   leg.client_id, "ioc", trace)
        except (InvalidOrder, InsufficientFunds, AuthError) as exc:
            leg.state = "REJECTED"
            self.journal.update_leg(leg, "rejected", {"error": exc.name, "message": exc.message})
            self._event(leg, reason=f"{exc.name}: {exc.message}", recv_mono=recv_mono,
                        sent_mono=trace.get("sent_mono", 0))
            log.warning("leg %s rejected by %s: %s", leg.client_id, leg.venue, exc)
            return leg
        except (VenueUnavailable, RateLimited) as exc:
            log.warning("leg %s: no answer from %s (%s); reconciling", leg.client_id, leg.venue, exc)
            return await self.reconcile(leg)
        leg.state = "SENT"
        leg.order_id = order.order_id
        self.journal.update_leg(leg, "sent", {"order_id": order.order_id})
        self._event(leg, recv_mono=recv_mono, sent_mono=trace.get("sent_mono", 0))
        log.info("leg %s %s %s %.8g %s @ %.8g sent", leg.client_id, leg.venue, leg.side,
                 leg.volume, leg.market, leg.price)
        return await self._follow(leg, order)

    async def _follow(self, leg: LegRecord, order: Order) -> LegRecord:
        """Poll an order until it is final (an IOC should be at once); cancel what lingers."""
        client = self.clients[leg.venue]
        deadline = time.monotonic() + self.limits.leg_timeout_ms / 1000
        polls = 0
        while not (order.state.final and order.complete):
            if time.monotonic() > deadline:
                try:
                    order = await client.cancel_order(order_id=order.order_id)
                except OrderNotFound:
                    pass
                deadline = float("inf")
            if polls:  # the first look is at once: an IOC is usually final already
                await asyncio.sleep(self.limits.poll_interval_ms / 1000)
            polls += 1
            try:
                order = await client.get_order(order_id=order.order_id)
            except (VenueUnavailable, RateLimited):
                continue
        self._apply(leg, order)
        return leg

    def _apply(self, leg: LegRecord, order: Order) -> None:
        known = leg.executed_volume
        leg.order_id = order.order_id
        leg.executed_volume = order.executed_volume
        leg.executed_funds = order.executed_funds
        leg.fee = order.paid_fee
        leg.state = "DONE" if order.state == OrderState.DONE else "CANCELLED"
        self.journal.update_leg(leg, "final", {"state": leg.state, "executed": leg.executed_volume,
                                               "funds": leg.executed_funds, "fee": leg.fee})
        if order.executed_volume > known:
            self.ledger.fills += len(order.fills) or 1
            now = time.time_ns()
            for fill in order.fills:
                fee = fill.funds / order.executed_funds * order.paid_fee if order.executed_funds else 0.0
                self.publish(topics.fill(leg.venue), FillEvent(
                    intent_id=leg.intent_id, venue=leg.venue, market=leg.market, side=leg.side,
                    client_id=leg.client_id, trade_id=fill.trade_id, price=fill.price,
                    volume=fill.volume, funds=fill.funds, fee=fee, ts_event=now, ts_init=now))
        self._event(leg)
        avg = leg.executed_funds / leg.executed_volume if leg.executed_volume else 0.0
        log.info("leg %s %s %s: %s %.8g of %.8g %s at avg %.8g, fee %.0f KRW", leg.client_id,
                 leg.venue, leg.side, "filled" if leg.state == "DONE" else "cancelled after",
                 leg.executed_volume, leg.volume, leg.market, avg, leg.fee)

    def _event(self, leg: LegRecord, reason: str = "", recv_mono: int = 0, sent_mono: int = 0) -> None:
        now = time.time_ns()
        self.publish(topics.order(leg.venue), OrderEvent(
            intent_id=leg.intent_id, role=leg.role, venue=leg.venue, market=leg.market,
            side=leg.side, client_id=leg.client_id, order_id=leg.order_id, state=leg.state,
            price=leg.price, volume=leg.volume, executed_volume=leg.executed_volume,
            executed_funds=leg.executed_funds, fee=leg.fee, reason=reason, recv_mono=recv_mono,
            sent_mono=sent_mono, ts_event=now, ts_init=now))

    # -- recovery -------------------------------------------------------------------------------------

    async def reconcile(self, leg: LegRecord) -> LegRecord:
        """Ask the venue about a leg by its client id until it answers."""
        client = self.clients[leg.venue]
        delay = 0.1
        while True:
            try:
                order = await client.get_order(client_id=leg.client_id)
            except OrderNotFound:
                age_ms = (time.time_ns() - leg.updated_ns) / 1e6 if leg.updated_ns else 1e12
                if age_ms < self.limits.settle_ms:
                    # A POST sent just before a crash may not have reached the venue yet.
                    log.info("reconciling %s: not at %s yet; asking again until it is %d ms old",
                             leg.client_id, leg.venue, self.limits.settle_ms)
                    await asyncio.sleep(min(0.25, (self.limits.settle_ms - age_ms) / 1000))
                    continue
                leg.state = "NOT_SENT"
                self.journal.update_leg(leg, "reconciled", {"state": "NOT_SENT"})
                self._event(leg, reason="the venue never received it")
                return leg
            except (VenueUnavailable, RateLimited) as exc:
                log.warning("reconciling %s: %s unavailable (%s), retrying", leg.client_id,
                            leg.venue, exc.name)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            return await self._follow(leg, order)
