"""The backtest's venues: a :class:`VenueClient` straight onto the simulator's own matching engine
and accounts (``karb.sim.engine.Exchange``), with a network latency model, and a :class:`Tops`
over the model's books instead of shared memory.

Latency model. A book the model builds at ``t`` reaches us at ``t + rtt/2`` (the feed), we
decide ``decision_ms`` later (our measured tick-to-trade, frame receipt to the first leg's
headers written: ``tools/bench.py`` ``tick_to_trade_us_p50``), and the order reaches the
matching engine ``rtt/2`` after that; its answer comes back ``rtt/2`` later. Every other request
(lookup, cancel, balances) takes one ``rtt``. The waits are ``clock.sleep`` on the virtual
clock: competitors faster than our order trade first (``MarketModel.book_at``).

REST outages of the model's outage schedule (``sim.outages``) make every request of that venue
fail while they last: an order POST as :class:`OutcomeUnknown` (a 5xx: no usable answer, and
the order never reached the engine), anything else as :class:`VenueUnavailable`.
"""

from __future__ import annotations

from collections.abc import Callable

from karb import clock
from karb.exchanges.client import VenueClient
from karb.exchanges.errors import (
    AlreadyFinal,
    DuplicateClientId,
    InsufficientFunds,
    InvalidOrder,
    OrderNotFound,
    OutcomeUnknown,
    VenueError,
    VenueUnavailable,
)
from karb.exchanges.types import (
    Balance,
    Fill,
    Market,
    Order,
    OrderBook,
    OrderState,
    Side,
    Ticker,
    TimeInForce,
)
from karb.execution.tops import Quote
from karb.sim import engine
from karb.sim.market import MarketModel
from karb.sim.rules import dialect

RECENT_S = 120  # what recent_orders lists: well over the reconciliation interval (5 s)
_STATES = {"wait": OrderState.OPEN, "done": OrderState.DONE, "cancel": OrderState.CANCELLED}


def to_order(venue: str, o: engine.Order) -> Order:
    return Order(venue=venue, order_id=o.id, client_id=o.client_id, market=o.market,
                 side="buy" if o.side == "bid" else "sell", order_type=o.ord_type,
                 price=o.price, volume=o.volume, state=_STATES[o.state],
                 executed_volume=o.executed_volume, executed_funds=o.executed_funds,
                 paid_fee=o.paid_fee, time_in_force=o.time_in_force,
                 fills=[Fill(f.trade_id, f.price, f.volume, f.funds) for f in o.fills])


class InProcessVenue(VenueClient):
    def __init__(self, exchange: engine.Exchange, account: engine.Account, rtt_ms: float,
                 on_order: Callable[[str, int], None] | None = None) -> None:
        self.venue = exchange.venue
        self.exchange = exchange
        self.account = account
        self.rtt_s = rtt_ms / 1000
        self.down_until_ms = 0  # a REST outage lasts until then
        self.on_order = on_order  # (client id, monotonic ns it reached the engine)
        self._dialect = dialect(exchange.venue)
        self.requests = 0

    def _down(self) -> bool:
        return clock.time_ns() // 1_000_000 < self.down_until_ms

    def _error(self, exc: engine.VenueError) -> VenueError:
        name = exc.name
        dup_name, dup_text = self._dialect.dup_client_id
        if name == dup_name and exc.message.startswith(dup_text.split("{cid}")[0]):
            return DuplicateClientId(self.venue, name, exc.message, exc.status)
        if name in self._dialect.not_cancellable:
            return AlreadyFinal(self.venue, name, exc.message, exc.status)
        if name.startswith("insufficient_funds"):
            return InsufficientFunds(self.venue, name, exc.message, exc.status)
        if exc.status == 404:
            return OrderNotFound(self.venue, name, exc.message, exc.status)
        return InvalidOrder(self.venue, name, exc.message, exc.status)

    async def _request(self) -> None:
        self.requests += 1
        await clock.current().sleep(self.rtt_s)
        if self._down():
            raise VenueUnavailable(self.venue, "server_error", "503 (simulated outage)", 503)

    # -- public data (not used by execution; answered from the model) ---------------------------

    async def markets(self) -> list[Market]:
        return [Market(market=m, base=m.split("-", 1)[1], quote="KRW")
                for m in self.exchange.model.markets]

    async def ticker(self, markets: list[str]) -> list[Ticker]:
        raise NotImplementedError("the backtest venue serves orders and balances only")

    async def orderbook(self, market: str) -> OrderBook:
        raise NotImplementedError("the backtest venue serves orders and balances only")

    # -- account --------------------------------------------------------------------------------

    async def balances(self) -> dict[str, Balance]:
        await self._request()
        return {cur: Balance(cur, b.free, b.locked) for cur, b in self.account.balances.items()}

    async def get_order(self, order_id: str | None = None, client_id: str | None = None) -> Order:
        await self._request()
        try:
            return to_order(self.venue, self.exchange.find(self.account, order_id, client_id))
        except engine.VenueError as exc:
            raise self._error(exc) from None

    async def cancel_order(self, order_id: str | None = None, client_id: str | None = None) -> Order:
        await self._request()
        try:
            order = self.exchange.find(self.account, order_id, client_id)
            return to_order(self.venue, self.exchange.cancel(self.account, order))
        except engine.VenueError as exc:
            raise self._error(exc) from None

    async def open_orders(self, market: str | None = None) -> list[Order]:
        await self._request()
        return [to_order(self.venue, o) for o in self.exchange.account_orders(self.account, market)
                if o.state == "wait"]

    async def recent_orders(self, market: str | None = None, limit: int = 100) -> list[Order]:
        """Orders placed in the last ``RECENT_S`` (newest first): the venues list recent orders,
        and a backtest's whole history listed every sweep would cost O(orders) each time."""
        await self._request()
        cutoff = clock.time_ns() - RECENT_S * 1_000_000_000
        out: list[Order] = []
        for o in reversed(self.exchange.orders.values()):  # insertion order: oldest first
            if o.created_ns < cutoff or len(out) >= limit:
                break
            if o.account == self.account.access_key and (market is None or o.market == market):
                out.append(to_order(self.venue, o))
        return out

    async def taker_fee(self, market: str) -> float | None:
        return self.exchange.fee_rate

    async def close(self) -> None:
        return None

    async def _post_order(self, market: str, side: Side, order_type: str, price: str | None,
                          volume: str | None, client_id: str, time_in_force: TimeInForce | None,
                          trace: dict[str, int] | None = None) -> Order:
        self.requests += 1
        sleep = clock.current().sleep
        if trace is not None:
            trace["sent_mono"] = clock.monotonic_ns()
        await sleep(self.rtt_s / 2)
        if self._down():
            await sleep(self.rtt_s / 2)
            raise OutcomeUnknown(self.venue, client_id, VenueUnavailable(
                self.venue, "server_error", "503 (simulated outage)", 503))
        if self.on_order is not None:
            self.on_order(client_id, clock.monotonic_ns())
        try:
            order = self.exchange.place(
                self.account, market, "bid" if side == "buy" else "ask", order_type,
                float(price) if price is not None else None,
                float(volume) if volume is not None else None, time_in_force, client_id)
        except engine.VenueError as exc:
            await sleep(self.rtt_s / 2)
            raise self._error(exc) from None
        await sleep(self.rtt_s / 2)
        return to_order(self.venue, order)


class ModelTops:
    """Execution's view of the tops (karb/execution/tops.py) over the model's books: always the
    book in force, age 0 (a stale feed is not modelled here)."""

    def __init__(self, model: MarketModel, venues: list[str]) -> None:
        self.model = model
        self.venues = venues

    def quote(self, venue: str, market: str) -> Quote | None:
        if market not in self.model.fair or venue not in self.venues:
            return None
        book = self.model.book(venue, market)
        if not book.bids or not book.asks or book.bids[0][0] >= book.asks[0][0]:
            return None
        return Quote(book.bids[0][0], book.asks[0][0], book.bids[0][1], book.asks[0][1], 0.0)

    def asks(self, market: str) -> list[float]:
        return [q.ask for v in self.venues if (q := self.quote(v, market)) is not None]

    def top(self, venue: str, market: str) -> tuple[float, int] | None:
        """The decider's view (karb/trading/decide.py TopView): fresh as of now."""
        q = self.quote(venue, market)
        return None if q is None else (q.ask, clock.monotonic_ns())
