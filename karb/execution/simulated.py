"""Venues that are not there: ``paper`` fills IOC orders against the live book with simulated
balances; ``dry_run`` sends nothing. Both speak VenueClient, so execution runs one code path."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable

from karb.exchanges.client import VenueClient
from karb.exchanges.errors import InsufficientFunds, OrderNotFound
from karb.exchanges.types import (Balance, Fill, Market, Order, OrderBook, OrderState, Side,
                                  Ticker, TimeInForce)
from karb.messages import DepthUpdate

log = logging.getLogger(__name__)
DepthSource = Callable[[str, str], DepthUpdate | None]


class PaperClient(VenueClient):
    def __init__(self, venue: str, depth: DepthSource, balances: dict[str, float], fee: float) -> None:
        self.venue = venue
        self._depth = depth
        self._free = dict(balances)
        self._fee = fee
        self._orders: dict[str, Order] = {}
        self._by_client: dict[str, Order] = {}
        self._ids = itertools.count(1)

    async def markets(self) -> list[Market]:
        return []

    async def ticker(self, markets: list[str]) -> list[Ticker]:
        return []

    async def orderbook(self, market: str) -> OrderBook:
        d = self._depth(self.venue, market)
        if d is None:
            return OrderBook(self.venue, market, [], [], 0, 0)
        return OrderBook(self.venue, market, d.bids, d.asks, d.ts_event, d.ts_init)

    async def balances(self) -> dict[str, Balance]:
        return {c: Balance(c, v, 0.0) for c, v in self._free.items()}

    async def _post_order(self, market: str, side: Side, order_type: str, price: str | None,
                          volume: str | None, client_id: str, time_in_force: TimeInForce | None,
                          trace: dict[str, int] | None = None) -> Order:
        base, quote = market.split("-", 1)[1], market.split("-", 1)[0]
        book = self._depth(self.venue, market)
        levels = (book.asks if side == "buy" else book.bids) if book else []
        limit, want = float(price or 0), float(volume or 0)
        got = funds = 0.0
        fills = []
        for px, size in levels:
            if (side == "buy" and px > limit) or (side == "sell" and px < limit) or got >= want:
                break
            q = min(size, want - got)
            got, funds = got + q, funds + px * q
            fills.append(Fill(f"paper-{next(self._ids)}", px, q, px * q))
        fee = funds * self._fee
        if side == "buy" and funds + fee > self._free.get(quote, 0.0):
            raise InsufficientFunds(self.venue, "insufficient_funds_bid", "paper balance")
        if side == "sell" and got > self._free.get(base, 0.0):
            raise InsufficientFunds(self.venue, "insufficient_funds_ask", "paper balance")
        sign = 1 if side == "buy" else -1
        self._free[base] = self._free.get(base, 0.0) + sign * got
        self._free[quote] = self._free.get(quote, 0.0) - sign * funds - fee
        order = Order(self.venue, f"paper-{next(self._ids)}", client_id, market, side, "limit",
                      limit, want, OrderState.DONE if got >= want else OrderState.CANCELLED,
                      got, funds, fee, time_in_force, fills)
        self._orders[order.order_id] = self._by_client[client_id] = order
        return order

    async def get_order(self, order_id: str | None = None, client_id: str | None = None) -> Order:
        order = self._orders.get(order_id or "") or self._by_client.get(client_id or "")
        if order is None:
            raise OrderNotFound(self.venue, "order_not_found", "no such paper order")
        return order

    async def cancel_order(self, order_id: str | None = None, client_id: str | None = None) -> Order:
        return await self.get_order(order_id, client_id)

    async def open_orders(self, market: str | None = None) -> list[Order]:
        return []

    async def close(self) -> None:
        pass


class DryRunClient(VenueClient):
    """The live venue for everything that reads (balances, books, orders); execution sees
    ``dry_run`` and logs the legs it would send instead of sending them."""

    dry_run = True

    def __init__(self, live: VenueClient) -> None:
        self.venue = live.venue
        self._live = live

    async def markets(self) -> list[Market]:
        return await self._live.markets()

    async def ticker(self, markets: list[str]) -> list[Ticker]:
        return await self._live.ticker(markets)

    async def orderbook(self, market: str) -> OrderBook:
        return await self._live.orderbook(market)

    async def balances(self) -> dict[str, Balance]:
        return await self._live.balances()

    async def taker_fee(self, market: str) -> float | None:
        return await self._live.taker_fee(market)

    async def get_order(self, order_id: str | None = None, client_id: str | None = None) -> Order:
        return await self._live.get_order(order_id, client_id)

    async def cancel_order(self, order_id: str | None = None, client_id: str | None = None) -> Order:
        raise OrderNotFound(self.venue, "dry_run", "a dry run never has orders to cancel")

    async def open_orders(self, market: str | None = None) -> list[Order]:
        return await self._live.open_orders(market)

    async def _post_order(self, market: str, side: Side, order_type: str, price: str | None,
                          volume: str | None, client_id: str, time_in_force: TimeInForce | None,
                          trace: dict[str, int] | None = None) -> Order:
        raise AssertionError("a dry run never sends an order")

    async def close(self) -> None:
        await self._live.close()
