"""A hand-written venue with the real :class:`VenueClient` interface and scripted answers (no mock
library): each order POST, lookup and cancel can be told what to do — answer, time out and land
later, time out and never land, say the client id is used, refuse, stay open forever, hide a new
order from lookups for a while, answer 422, or fill while a cancel is on its way."""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import msgspec

from karb.exchanges.client import VenueClient
from karb.exchanges.errors import (AlreadyFinal, DuplicateClientId, InvalidOrder, OrderNotFound,
                                   RateLimited, VenueUnavailable)
from karb.exchanges.types import (Balance, Fill, Market, Order, OrderBook, OrderState, Side, Ticker,
                                  TimeInForce)
from karb.execution.tops import Quote

PostAction = Literal["fill", "partial", "empty", "timeout_lands", "timeout_lost", "duplicate",
                     "reject", "rate_limited", "open"]


@dataclass
class Post:
    """What the next order POST does. ``land_after_s``: for ``timeout_lands``, when the order
    reaches the engine after the client gave up. ``fill``: the fraction that executes."""

    action: PostAction = "fill"
    fill: float = 1.0
    land_after_s: float = 0.0


@dataclass
class StubVenue(VenueClient):
    venue: str = "upbit"
    fee_rate: float = 0.0005
    posts: deque[Post] = field(default_factory=deque)  # scripted POSTs; then "fill"
    lookup_errors: deque[Exception] = field(default_factory=deque)  # next get_order calls raise these
    cancel_errors: deque[Exception] = field(default_factory=deque)
    invisible_s: float = 0.0  # new orders missing from lookups this long
    cancel_races_fill: bool = False  # a cancel finds the order filled: AlreadyFinal
    balances_fail: bool = False
    cash: dict[str, Balance] = field(default_factory=dict)
    orders: dict[str, Order] = field(default_factory=dict)  # by client id
    visible_at: dict[str, float] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    # "accepted": a POST is answered as Bithumb's /v2/orders is (the order id, nothing more:
    # complete=False), so the order must be followed. ``on_order``: told each order as it is
    # created, before the POST is answered (a private stream's myOrder would be).
    answer: Literal["full", "accepted"] = "full"
    on_order: Callable[[Order], None] | None = None
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    # -- the scripted order path -------------------------------------------------------------------

    async def _post_order(self, market: str, side: Side, order_type: str, price: str | None,
                          volume: str | None, client_id: str, time_in_force: TimeInForce | None,
                          trace: dict[str, int] | None = None) -> Order:
        self.calls.append(f"post {client_id}")
        step = self.posts.popleft() if self.posts else Post()
        if client_id in self.orders or step.action == "duplicate":
            raise DuplicateClientId(self.venue, "validation_error", f"identifier {client_id} is already used", 400)
        if step.action == "reject":
            raise InvalidOrder(self.venue, "invalid_price", "scripted refusal", 400)
        if step.action == "rate_limited":
            raise RateLimited(self.venue, "too_many_requests", "scripted 429")
        px, vol = float(price or 0), float(volume or 0)
        if step.action == "timeout_lost":
            raise VenueUnavailable(self.venue, "TimeoutError", "scripted timeout")
        if step.action == "timeout_lands":
            loop = asyncio.get_running_loop()
            loop.call_later(step.land_after_s, self._create, client_id, market, side, px, vol,
                            step.fill, False)
            raise VenueUnavailable(self.venue, "TimeoutError", "scripted timeout")
        fill = {"fill": step.fill, "partial": step.fill if step.fill < 1 else 0.5,
                "empty": 0.0, "open": 0.0}[step.action]
        order = self._create(client_id, market, side, px, vol, fill, step.action == "open")
        if self.answer == "accepted":
            return msgspec.structs.replace(order, state=OrderState.OPEN, executed_volume=0.0,
                                           executed_funds=0.0, paid_fee=0.0, fills=[],
                                           complete=False)
        return order

    def _create(self, client_id: str, market: str, side: Side, price: float, volume: float,
                fill: float, stay_open: bool) -> Order:
        if client_id in self.orders:  # a late landing after a resend: the venue keeps one
            return self.orders[client_id]
        executed = round(volume * fill, 8)
        funds = executed * price
        state = OrderState.OPEN if stay_open else (OrderState.DONE if executed == volume
                                                   else OrderState.CANCELLED)
        order = Order(venue=self.venue, order_id=f"{self.venue}-{next(self._ids)}",
                      client_id=client_id, market=market, side=side, order_type="limit",
                      price=price, volume=volume, state=state, executed_volume=executed,
                      executed_funds=funds, paid_fee=funds * self.fee_rate,
                      fills=[Fill(f"t-{client_id}", price, executed, funds)] if executed else [])
        self.orders[client_id] = order
        self.visible_at[client_id] = asyncio.get_running_loop().time() + self.invisible_s
        self._book(order, executed, funds)
        if self.on_order is not None:
            self.on_order(order)
        return order

    def _book(self, order: Order, volume: float, funds: float) -> None:
        """Balances move with every fill, as at a venue: coin and KRW, fee in KRW."""
        coin = order.market.split("-", 1)[1]
        sign = 1 if order.side == "buy" else -1
        fee = funds * self.fee_rate
        for currency, change in ((coin, sign * volume), ("KRW", -sign * funds - fee)):
            held = self.cash.get(currency, Balance(currency, 0.0, 0.0))
            self.cash[currency] = Balance(currency, held.free + change, held.locked)

    def landed(self, client_id: str) -> bool:
        return client_id in self.orders

    # -- lookups and cancels ---------------------------------------------------------------------

    def _find(self, order_id: str | None, client_id: str | None) -> Order:
        for cid, order in self.orders.items():
            if (order_id and order.order_id == order_id) or (client_id and cid == client_id):
                if asyncio.get_running_loop().time() < self.visible_at[cid]:
                    break
                return order
        raise OrderNotFound(self.venue, "order_not_found", f"{order_id or client_id}", 404)

    async def get_order(self, order_id: str | None = None, client_id: str | None = None) -> Order:
        self.calls.append(f"get {order_id or client_id}")
        if self.lookup_errors:
            raise self.lookup_errors.popleft()
        return self._find(order_id, client_id)

    async def cancel_order(self, order_id: str | None = None, client_id: str | None = None) -> Order:
        self.calls.append(f"cancel {order_id or client_id}")
        if self.cancel_errors:
            raise self.cancel_errors.popleft()
        order = self._find(order_id, client_id)
        if order.state.final:
            raise AlreadyFinal(self.venue, "validation_error", f"order {order.order_id} is already done", 400)
        cid = order.client_id or ""
        if self.cancel_races_fill:  # it filled while the cancel was on its way
            volume = order.volume or 0.0
            funds = volume * (order.price or 0.0)
            self.orders[cid] = msgspec.structs.replace(
                order, state=OrderState.DONE, executed_volume=volume, executed_funds=funds,
                paid_fee=funds * self.fee_rate, fills=[Fill(f"t-{cid}", order.price or 0.0, volume, funds)])
            self._book(order, volume - order.executed_volume, funds - order.executed_funds)
            raise AlreadyFinal(self.venue, "order_not_ready", f"order {order.order_id} is already done", 400)
        self.orders[cid] = msgspec.structs.replace(order, state=OrderState.CANCELLED)
        return self.orders[cid]

    async def open_orders(self, market: str | None = None) -> list[Order]:
        return [o for o in self.orders.values() if not o.state.final]

    async def recent_orders(self, market: str | None = None, limit: int = 100) -> list[Order]:
        now = asyncio.get_running_loop().time()
        # listings carry no trades, as the venues' do
        return [msgspec.structs.replace(o, fills=[], executed_funds=0.0)
                for cid, o in self.orders.items() if now >= self.visible_at[cid]]

    async def balances(self) -> dict[str, Balance]:
        if self.balances_fail:
            raise VenueUnavailable(self.venue, "http_503", "scripted", 503)
        return dict(self.cash)

    # -- unused by execution's money path --------------------------------------------------------

    async def markets(self) -> list[Market]:
        return []

    async def ticker(self, markets: list[str]) -> list[Ticker]:
        return []

    async def orderbook(self, market: str) -> OrderBook:
        raise AssertionError("execution must not read books over REST while exposed")

    async def close(self) -> None:
        return None


@dataclass
class StubTops:
    """Shared-memory tops as a dict: (venue, market) → Quote."""

    quotes: dict[tuple[str, str], Quote] = field(default_factory=dict)

    def quote(self, venue: str, market: str) -> Quote | None:
        return self.quotes.get((venue, market))

    def asks(self, market: str) -> list[float]:
        return [q.ask for (v, m), q in self.quotes.items() if m == market]
