"""One interface, two venues: what the rest of K-Arb calls to talk to an exchange.

Orders go out as decimal strings rounded to the venue's tick (buys down, sells up: never a
worse price than asked) and lot (8 decimals, down); an order under the 5,000 KRW minimum is
refused here with a clear error before anything is sent. Every order carries our client id.

The client sends an order once and reports; it never resends and never decides what a missing
answer means. A POST with no usable answer (timeout, 5xx, 504, reset, garbage) raises
:class:`OutcomeUnknown` with the client id; a refusal of a reused client id raises
:class:`DuplicateClientId`. The leg runner (karb.execution.legs) alone resolves both, by looking
the order up. Order POSTs have their own short timeout (``order_timeout_ms``): the venues answer
an order in tens of ms, and the time a leg can stay unknown — a position one-sided — starts there.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from decimal import ROUND_DOWN, Decimal

from karb.exchanges.errors import InvalidOrder, OutcomeUnknown, VenueUnavailable
from karb.exchanges.ticks import floor_lot_decimal, format_decimal, round_price
from karb.exchanges.types import Balance, Market, Order, OrderBook, Side, Ticker, TimeInForce

log = logging.getLogger(__name__)

MIN_TOTAL_KRW = Decimal(5000)
DEFAULT_ORDER_TIMEOUT_MS = 1000


class VenueClient(ABC):
    venue: str
    order_timeout_ms: int = DEFAULT_ORDER_TIMEOUT_MS

    # -- public data ---------------------------------------------------------------------------

    @abstractmethod
    async def markets(self) -> list[Market]: ...

    @abstractmethod
    async def ticker(self, markets: list[str]) -> list[Ticker]: ...

    @abstractmethod
    async def orderbook(self, market: str) -> OrderBook: ...

    # -- account -------------------------------------------------------------------------------

    @abstractmethod
    async def balances(self) -> dict[str, Balance]: ...

    @abstractmethod
    async def get_order(self, order_id: str | None = None, client_id: str | None = None) -> Order: ...

    @abstractmethod
    async def cancel_order(self, order_id: str | None = None, client_id: str | None = None) -> Order: ...

    @abstractmethod
    async def open_orders(self, market: str | None = None) -> list[Order]: ...

    async def recent_orders(self, market: str | None = None, limit: int = 100) -> list[Order]:
        """Open and recently closed orders, newest first (continuous reconciliation)."""
        return await self.open_orders(market)

    @abstractmethod
    async def close(self) -> None: ...

    async def taker_fee(self, market: str) -> float | None:
        """The account's real taker fee on ``market`` (orders/chance), None if unknown."""
        return None

    @abstractmethod
    async def _post_order(self, market: str, side: Side, order_type: str, price: str | None,
                          volume: str | None, client_id: str, time_in_force: TimeInForce | None,
                          trace: dict[str, int] | None = None) -> Order:
        """Send one order as given (already rounded and checked). ``trace`` receives
        ``sent_mono``: when the request's headers were written."""

    async def price_tick_round(self, market: str, price: float, side: Side) -> Decimal:
        """The price on the venue's tick, rounded so it is never worse for ``side``."""
        return round_price(price, "bid" if side == "buy" else "ask")

    # -- orders --------------------------------------------------------------------------------

    async def place_limit_order(self, market: str, side: Side, price: float, volume: float,
                                client_id: str, time_in_force: TimeInForce | None = None,
                                trace: dict[str, int] | None = None) -> Order:
        px = await self.price_tick_round(market, price, side)
        vol = floor_lot_decimal(volume)
        if vol <= 0 or px <= 0:
            raise InvalidOrder(self.venue, "local_invalid", f"price {price} / volume {volume} "
                               "round to nothing on the venue's tick and lot")
        if px * vol < MIN_TOTAL_KRW:
            raise InvalidOrder(self.venue, "local_under_min_total",
                               f"{market} {side} {format_decimal(vol)} @ {format_decimal(px)} = "
                               f"{format_decimal(px * vol, 0)} KRW, under the {MIN_TOTAL_KRW} KRW minimum")
        return await self._submit(market, side, "limit", format_decimal(px), format_decimal(vol),
                                  client_id, time_in_force, trace)

    async def place_market_order(self, market: str, side: Side, amount: float,
                                 client_id: str) -> Order:
        """Buy: ``amount`` is KRW to spend. Sell: ``amount`` is the coin volume to sell."""
        if side == "buy":
            krw = Decimal(repr(amount)).quantize(Decimal(1), rounding=ROUND_DOWN)
            if krw < MIN_TOTAL_KRW:
                raise InvalidOrder(self.venue, "local_under_min_total",
                                   f"market buy of {krw} KRW is under the {MIN_TOTAL_KRW} KRW minimum")
            return await self._submit(market, side, "market", format_decimal(krw), None, client_id, None)
        vol = floor_lot_decimal(amount)
        if vol <= 0:
            raise InvalidOrder(self.venue, "local_invalid", f"volume {amount} rounds to nothing")
        return await self._submit(market, side, "market", None, format_decimal(vol), client_id, None)

    async def _submit(self, market: str, side: Side, order_type: str, price: str | None,
                      volume: str | None, client_id: str, tif: TimeInForce | None,
                      trace: dict[str, int] | None = None) -> Order:
        try:
            return await self._post_order(market, side, order_type, price, volume, client_id,
                                          tif, trace)
        except VenueUnavailable as exc:  # incl. timeouts, resets, 5xx and unreadable answers
            raise OutcomeUnknown(self.venue, client_id, exc) from None
