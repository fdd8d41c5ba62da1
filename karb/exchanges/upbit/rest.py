"""Upbit REST client (exchanges.md §1)."""

from __future__ import annotations


from karb.exchanges.v1api import books
from karb.exchanges.v1api.client import V1Client
from karb.exchanges.errors import InvalidOrder
from karb.exchanges.ratelimit import UPBIT_GROUPS
from karb.exchanges.transport import Params
from karb.exchanges.types import Market, Order, Side, TimeInForce
from karb.exchanges.upbit import auth
from karb.exchanges.upbit.schemas import (UpbitMarket, UpbitOrder)

VENUE = "upbit"


class UpbitClient(V1Client):
    venue = VENUE
    GROUPS = UPBIT_GROUPS
    TICKER_GROUP, ORDERBOOK_GROUP, PRIVATE_GROUP = "ticker", "orderbook", "default"
    authorize = staticmethod(auth.authorization)

    async def markets(self) -> list[Market]:
        rows = await self.transport.request("GET", "/v1/market/all", "market", list[UpbitMarket],
                                            params=[("is_details", "false")])
        return [Market(r.market, r.market.split("-", 1)[1], r.market.split("-", 1)[0],
                       r.korean_name, r.english_name) for r in rows]

    async def _post_order(self, market: str, side: Side, order_type: str, price: str | None,
                          volume: str | None, client_id: str, time_in_force: TimeInForce | None,
                          trace: dict[str, int] | None = None) -> Order:
        body = books.order_body(market, side, order_type, price, volume, client_id,
                                time_in_force, "ord_type", "identifier")
        wire = await self.transport.request("POST", "/v1/orders", "order", UpbitOrder, body=body,
                                            sign=self._sign,
                                            hash_source=auth.body_hash_source(body), safe=False,
                                            trace=trace, timeout_ms=self.order_timeout_ms)
        return books.order_from_wire(VENUE, wire, wire.identifier)

    def _id_params(self, order_id: str | None, client_id: str | None) -> Params:
        if order_id:
            return [("uuid", order_id)]
        if client_id:
            return [("identifier", client_id)]
        raise InvalidOrder(VENUE, "local_invalid", "an order id or a client id is required")

    async def get_order(self, order_id: str | None = None, client_id: str | None = None) -> Order:
        wire = await self._private("GET", "/v1/order", self._id_params(order_id, client_id), UpbitOrder)
        return books.order_from_wire(VENUE, wire, wire.identifier)

    async def cancel_order(self, order_id: str | None = None, client_id: str | None = None) -> Order:
        wire = await self._private("DELETE", "/v1/order", self._id_params(order_id, client_id),
                                   UpbitOrder)
        return books.order_from_wire(VENUE, wire, wire.identifier)

    async def open_orders(self, market: str | None = None) -> list[Order]:
        params: list[tuple[str, str]] = [("market", market)] if market else []
        params += [("states[]", "wait"), ("states[]", "watch")]
        rows = await self._private("GET", "/v1/orders/open", params, list[UpbitOrder])
        return [books.order_from_wire(VENUE, r, r.identifier) for r in rows]

    async def recent_orders(self, market: str | None = None, limit: int = 100) -> list[Order]:
        closed: list[tuple[str, str]] = [("market", market)] if market else []
        closed += [("states[]", "done"), ("states[]", "cancel"), ("limit", str(limit)),
                   ("order_by", "desc")]
        rows = await self._private("GET", "/v1/orders/closed", closed, list[UpbitOrder])
        done = [books.order_from_wire(VENUE, r, r.identifier) for r in rows]
        return await self.open_orders(market) + done
