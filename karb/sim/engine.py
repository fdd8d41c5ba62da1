"""Matching and accounts of one simulated venue.

Orders cross against the model's current book at book prices, walking levels and consuming
their size until the next model step; whatever rests fills at its own price when the model
crosses it later. Funds are locked at placement the way Upbit does it (a bid locks price x
volume plus the fee; an ask locks the coin) and released when an order is final. Client ids are
unique per account forever, failed orders included. Errors carry the venue's HTTP status and
error name; each API module renders them in its own wire shape.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal

from karb.sim.market import MarketModel
from karb.sim.rules import dialect, on_tick

VOLUME_PLACES = 8


class VenueError(Exception):
    def __init__(self, status: int, name: str, message: str) -> None:
        super().__init__(f"{status} {name}: {message}")
        self.status = status
        self.name = name
        self.message = message


@dataclass
class Balance:
    free: float = 0.0
    locked: float = 0.0
    avg_buy_price: float = 0.0


@dataclass
class Account:
    access_key: str
    secret_key: str
    balances: dict[str, Balance]
    client_ids: set[str] = field(default_factory=set)

    def balance(self, currency: str) -> Balance:
        return self.balances.setdefault(currency, Balance())


@dataclass
class Fill:
    trade_id: str
    price: float
    volume: float
    funds: float
    fee: float
    ts_ns: int
    is_maker: bool


@dataclass
class Order:
    id: str
    client_id: str | None
    account: str
    market: str
    side: str  # "bid" | "ask"
    ord_type: str  # "limit" | "price" | "market"
    price: float | None
    volume: float | None
    time_in_force: str | None
    created_ns: int
    remaining_volume: float = 0.0
    executed_volume: float = 0.0
    executed_funds: float = 0.0
    paid_fee: float = 0.0
    reserved_fee: float = 0.0
    locked: float = 0.0
    state: str = "wait"  # "wait" | "done" | "cancel"
    fills: list[Fill] = field(default_factory=list)
    # For a market buy: KRW not yet spent.
    remaining_funds: float = 0.0
    # Lookups do not see the order before this time (the ``invisible`` fault: read paths lag).
    visible_ns: int = 0

    @property
    def base(self) -> str:
        return self.market.split("-", 1)[1]

    @property
    def quote(self) -> str:
        return self.market.split("-", 1)[0]


@dataclass
class OrderFault:
    """What the next order meets: a rejection or a partial fill (``/_sim/`` faults)."""

    action: str  # "reject" | "partial"
    fraction: float = 0.5


OrderListener = Callable[[Order, Fill | None], None]


class Exchange:
    """One venue's accounts, orders and matching."""

    def __init__(self, venue: str, model: MarketModel, fee_rate: float, min_total: float,
                 accounts: list[Account], clock_ns: Callable[[], int]) -> None:
        self.venue = venue
        self.model = model
        self.fee_rate = fee_rate
        self.min_total = min_total
        self.accounts = {a.access_key: a for a in accounts}
        self.clock_ns = clock_ns
        self.orders: dict[str, Order] = {}
        self.by_client: dict[tuple[str, str], Order] = {}
        self.next_order_faults: list[OrderFault] = []
        self.listeners: list[OrderListener] = []
        self.invisible_ms = 0  # new orders stay out of lookups this long (``/_sim/`` fault)
        self.dialect = dialect(venue)

    # -- ids ------------------------------------------------------------------------------------

    def new_order_id(self) -> str:
        return self.dialect.new_order_id()

    def _trade_id(self) -> str:
        return self.dialect.new_trade_id()

    # -- placing --------------------------------------------------------------------------------

    def place(self, account: Account, market: str, side: str, ord_type: str,
              price: float | None, volume: float | None, time_in_force: str | None,
              client_id: str | None, id_reserved: bool = False) -> Order:
        """``id_reserved``: the client id was reserved when the request arrived
        (:meth:`reserve_client_id`) and the order reaches the engine only now."""
        if client_id is not None and not id_reserved:
            self.reserve_client_id(account, client_id)
        self._validate(market, side, ord_type, price, volume, time_in_force)
        # At the order's time: competing arbitrageurs faster than it have traded already.
        book = self.model.book_at(self.venue, market, self.clock_ns() // 1_000_000)
        fault = self.next_order_faults.pop(0) if self.next_order_faults else None
        if fault is not None and fault.action == "reject":
            raise VenueError(400, f"create_{side}_error", "주문 생성에 실패했습니다. (simulated)")
        order = Order(self.new_order_id(), client_id, account.access_key, market, side, ord_type,
                      price, volume, time_in_force, self.clock_ns())
        order.visible_ns = order.created_ns + self.invisible_ms * 1_000_000
        self._check_minimum_and_funds(account, order, book.best_bid())
        self._lock(account, order)
        self.orders[order.id] = order
        if client_id is not None:
            self.by_client[(account.access_key, client_id)] = order
        self._notify(order, None)
        levels = book.asks if side == "bid" else book.bids
        if time_in_force == "post_only" and levels and self._crosses(order, levels[0][0]):
            self._finish(account, order, "cancel")  # it would have taken liquidity
            return order
        self._take(account, order, fault.fraction if fault is not None else 1.0)
        if order.state == "wait" and (ord_type != "limit" or time_in_force in ("ioc", "fok")):
            self._finish(account, order, self._final_state(order))
        return order

    def reserve_client_id(self, account: Account, client_id: str) -> None:
        """Client ids are unique per account forever: burnt at receipt, even if the order then
        fails or reaches the engine late (a resend meanwhile is refused as a reused id)."""
        if client_id in account.client_ids:
            raise self._dup_error(client_id)
        account.client_ids.add(client_id)

    def _final_state(self, order: Order) -> str:
        """How an order that cannot rest ends: Upbit calls an IOC with a partial fill
        ``cancel``, Bithumb ``done``; a market buy with KRW left over is ``cancel``."""
        if order.ord_type == "price":
            return "done" if order.remaining_funds < 1 else "cancel"
        if order.remaining_volume <= 1e-12:
            return "done"
        return self.dialect.ioc_partial_state if order.executed_volume > 0 else "cancel"

    def _dup_error(self, client_id: str) -> VenueError:
        name, message = self.dialect.dup_client_id
        return VenueError(400, name, message.format(cid=client_id))

    def _validate(self, market: str, side: str, ord_type: str, price: float | None,
                  volume: float | None, tif: str | None) -> None:
        bad = self.dialect.param_error
        if market not in self.model.markets:
            raise VenueError(400, bad, f"market {market} does not exist")
        if side not in ("bid", "ask"):
            raise VenueError(400, bad, "side is missing, side does not have a valid value")
        shapes = {"limit": price is not None and volume is not None,
                  "price": side == "bid" and price is not None and volume is None,
                  "market": side == "ask" and volume is not None and price is None}
        if not shapes.get(ord_type, False):
            raise VenueError(400, bad, f"ord_type {ord_type} does not fit side/price/volume")
        if tif not in (None, "ioc", "fok", "post_only"):
            raise VenueError(400, "validation_error", f"time_in_force {tif} is not supported")
        for value in (price, volume):
            if value is not None and (not math.isfinite(value) or value <= 0):
                raise VenueError(400, bad, "price and volume must be positive numbers")
        if volume is not None and round(volume, VOLUME_PLACES) != volume:
            raise VenueError(400, "validation_error", f"volume has more than {VOLUME_PLACES} decimals")
        if ord_type == "limit" and price is not None and not on_tick(Decimal(repr(price))):
            raise VenueError(400, f"invalid_price_{side}", "주문 가격 단위를 잘못 입력하셨습니다.")

    def _check_minimum_and_funds(self, account: Account, order: Order, best_bid: float) -> None:
        side = order.side
        if order.ord_type == "limit":
            total = order.price * order.volume  # type: ignore[operator]
        elif order.ord_type == "price":
            total = order.price
        else:
            total = order.volume * best_bid  # type: ignore[operator]
        if total < self.min_total:
            name = self.dialect.under_min_error.format(side=side)
            raise VenueError(400, name, f"최소주문금액 이상으로 주문해주세요 ({self.min_total:g} KRW)")
        if side == "bid":
            need = total * (1 + self.fee_rate)
            have = account.balance(order.quote).free
        else:
            need = order.volume
            have = account.balance(order.base).free
        if need > have + 1e-12:
            currency = order.quote if side == "bid" else order.base
            raise VenueError(400, f"insufficient_funds_{side}", f"주문가능한 금액({currency})이 부족합니다.")

    def _lock(self, account: Account, order: Order) -> None:
        if order.side == "bid":
            total = order.price if order.ord_type == "price" else order.price * order.volume  # type: ignore[operator]
            order.reserved_fee = total * self.fee_rate  # type: ignore[operator]
            order.locked = total + order.reserved_fee  # type: ignore[operator]
            order.remaining_funds = total if order.ord_type == "price" else 0.0  # type: ignore[assignment]
            bal = account.balance(order.quote)
        else:
            order.locked = order.volume  # type: ignore[assignment]
            bal = account.balance(order.base)
        bal.free -= order.locked
        bal.locked += order.locked
        order.remaining_volume = order.volume or 0.0

    # -- matching -------------------------------------------------------------------------------

    def _take(self, account: Account, order: Order, fraction: float = 1.0) -> None:
        """Cross ``order`` against the book as a taker, walking levels."""
        book = self.model.book(self.venue, order.market)
        levels = book.asks if order.side == "bid" else book.bids
        if order.time_in_force == "fok" and not self._fillable(order, levels):
            return
        cap = (order.remaining_volume * fraction) if order.ord_type != "price" else math.inf
        budget = order.remaining_funds * fraction if order.ord_type == "price" else math.inf
        for level in levels:
            px, size = level
            if size <= 0 or (order.ord_type == "limit" and not self._crosses(order, px)):
                if size <= 0:
                    continue
                break
            qty = round(min(size, cap), VOLUME_PLACES)  # stay on the lot: no 0.015000000000000001
            if order.ord_type == "price":
                qty = min(size, math.floor(budget / px * 10**VOLUME_PLACES) / 10**VOLUME_PLACES)
            if qty <= 0:
                break
            self._fill(account, order, px, qty, is_maker=False)
            level[1] = round(size - qty, VOLUME_PLACES)
            cap -= qty
            budget -= px * qty
            if cap <= 1e-12 or budget < px * 1e-8:
                break
        for side_levels in (book.asks, book.bids):
            side_levels[:] = [lv for lv in side_levels if lv[1] > 0]
        if order.ord_type == "limit" and order.remaining_volume <= 1e-12:
            self._finish(account, order, "done")

    def _crosses(self, order: Order, px: float) -> bool:
        return px <= order.price if order.side == "bid" else px >= order.price  # type: ignore[operator]

    def _fillable(self, order: Order, levels: list[list[float]]) -> bool:
        need = order.remaining_volume
        for px, size in levels:
            if order.ord_type == "limit" and not self._crosses(order, px):
                break
            need -= size
            if need <= 1e-12:
                return True
        return False

    def _fill(self, account: Account, order: Order, px: float, qty: float, is_maker: bool) -> None:
        funds = px * qty
        fee = funds * self.fee_rate
        fill = Fill(self._trade_id(), px, qty, funds, fee, self.clock_ns(), is_maker)
        order.fills.append(fill)
        order.executed_volume = round(order.executed_volume + qty, VOLUME_PLACES)
        order.executed_funds += funds
        order.paid_fee += fee
        base, quote = account.balance(order.base), account.balance(order.quote)
        if order.side == "bid":
            cost = funds + fee
            order.locked -= cost
            quote.locked -= cost
            held = base.free + base.locked
            base.avg_buy_price = (base.avg_buy_price * held + funds) / (held + qty)
            base.free += qty
            order.remaining_funds -= funds
        else:
            order.locked -= qty
            base.locked -= qty
            quote.free += funds - fee
        if order.ord_type != "price":
            order.remaining_volume = round(order.remaining_volume - qty, VOLUME_PLACES)
        self.model.record_trade(self.venue, order.market, px, qty, order.side)
        self._notify(order, fill)

    def _finish(self, account: Account, order: Order, state: str) -> None:
        if order.state != "wait":
            return
        bal = account.balance(order.quote if order.side == "bid" else order.base)
        bal.locked -= order.locked
        bal.free += order.locked
        order.locked = 0.0
        order.state = state
        self._notify(order, None)

    def on_step(self) -> None:
        """Fill resting limit orders the market has moved through, at their own price."""
        for order in [o for o in self.orders.values() if o.state == "wait"]:
            book = self.model.book(self.venue, order.market)
            touch = book.best_ask() if order.side == "bid" else book.best_bid()
            if touch and self._crosses(order, touch):
                account = self.accounts[order.account]
                self._fill(account, order, order.price, order.remaining_volume, is_maker=True)  # type: ignore[arg-type]
                self._finish(account, order, "done")

    # -- queries --------------------------------------------------------------------------------

    def fill_now(self, order: Order) -> None:
        """Fill a resting order completely: against the book up to its limit, the rest at its
        own price (the ``cancel_race`` fault: the fill wins the race with a cancel)."""
        if order.state != "wait":
            return
        account = self.accounts[order.account]
        self._take(account, order)
        if order.state == "wait":
            if order.ord_type == "limit" and order.remaining_volume > 1e-12:
                self._fill(account, order, order.price, order.remaining_volume, is_maker=True)  # type: ignore[arg-type]
            self._finish(account, order, "done")

    def cancel(self, account: Account, order: Order) -> Order:
        if order.state != "wait":
            raise self._not_cancellable(order)
        self._finish(account, order, "cancel")
        return order

    def _not_cancellable(self, order: Order) -> VenueError:
        """A cancel of an order that is already final (names: ``rules.Dialect.not_cancellable``)."""
        message = f"order {order.id} is already {order.state}"
        when_done, when_cancelled = self.dialect.not_cancellable
        if order.state == "done":
            return VenueError(400, when_done, f"이미 체결된 주문입니다. ({message})")
        return VenueError(400, when_cancelled, message)

    def find(self, account: Account, order_id: str | None = None,
             client_id: str | None = None) -> Order:
        order = self.orders.get(order_id) if order_id else (
            self.by_client.get((account.access_key, client_id)) if client_id else None)
        if order is None or order.account != account.access_key or not self.visible(order):
            raise VenueError(404, "order_not_found", "주문을 찾지 못했습니다.")
        return order

    def visible(self, order: Order) -> bool:
        return order.visible_ns <= self.clock_ns()

    def account_orders(self, account: Account, market: str | None = None) -> list[Order]:
        now = self.clock_ns()
        return [o for o in self.orders.values() if o.account == account.access_key
                and (market is None or o.market == market) and o.visible_ns <= now]

    def _notify(self, order: Order, fill: Fill | None) -> None:
        for listener in self.listeners:
            listener(order, fill)
