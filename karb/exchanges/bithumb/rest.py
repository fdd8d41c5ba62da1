"""Bithumb REST client on the current API (/v1 reads, /v2 orders with client ids)."""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from karb.exchanges.v1api import books
from karb.exchanges.bithumb import auth
from karb.exchanges.bithumb.schemas import (BithumbCancelled, BithumbChance,
                                            BithumbMarket, BithumbOrder, BithumbOrderCreated)
from karb.exchanges.client import DEFAULT_ORDER_TIMEOUT_MS
from karb.exchanges.v1api.client import V1Client
from karb.exchanges.credentials import Credentials
from karb.exchanges.errors import InvalidOrder
from karb.exchanges.ratelimit import BITHUMB_GROUPS
from karb.exchanges.transport import Params
from karb.exchanges.types import (Market, Order, OrderState, Side, TimeInForce)

VENUE = "bithumb"


class BithumbClient(V1Client):
    venue = VENUE
    GROUPS = BITHUMB_GROUPS
    TICKER_GROUP = ORDERBOOK_GROUP = "public"
    PRIVATE_GROUP = "private"
    authorize = staticmethod(auth.authorization)

    def __init__(self, base_url: str, credentials: Credentials | None, timeout_ms: int = 5000,
                 order_timeout_ms: int = DEFAULT_ORDER_TIMEOUT_MS) -> None:
        super().__init__(base_url, credentials, timeout_ms, order_timeout_ms)
        self._price_units: dict[str, Decimal] = {}

    async def markets(self) -> list[Market]:
        rows = await self.transport.request("GET", "/v1/market/all", "public", list[BithumbMarket],
                                            params=[("isDetails", "true")])
        return [Market(r.market, r.market.split("-", 1)[1], r.market.split("-", 1)[0],
                       r.korean_name, r.english_name, r.market_warning != "NONE") for r in rows]

    async def price_tick_round(self, market: str, price: float, side: Side) -> Decimal:
        """Bithumb publishes its tick per market in orders/chance (``price_unit``)."""
        unit = self._price_units.get(market)
        if unit is None:
            chance = await self._private("GET", "/v1/orders/chance", [("market", market)], BithumbChance)
            raw = chance.market.bid.price_unit
            if not raw:
                return await super().price_tick_round(market, price, side)
            unit = self._price_units[market] = Decimal(raw)
        mode = ROUND_FLOOR if side == "buy" else ROUND_CEILING
        return (Decimal(repr(price)) / unit).to_integral_value(rounding=mode) * unit

    async def _post_order(self, market: str, side: Side, order_type: str, price: str | None,
                          volume: str | None, client_id: str, time_in_force: TimeInForce | None,
                          trace: dict[str, int] | None = None) -> Order:
        body = books.order_body(market, side, order_type, price, volume, client_id,
                                time_in_force, "order_type", "client_order_id")
        created = await self.transport.request("POST", "/v2/orders", "order", BithumbOrderCreated,
                                               body=body, sign=self._sign,
                                               hash_source=auth.body_hash_source(body), safe=False,
                                               trace=trace, timeout_ms=self.order_timeout_ms)
        return Order(venue=VENUE, order_id=created.order_id, client_id=created.client_order_id,
                     market=created.market, side=side, order_type=order_type,
                     price=float(price) if price else None, volume=float(volume) if volume else None,
                     state=OrderState.OPEN, time_in_force=time_in_force, complete=False)

    async def get_order(self, order_id: str | None = None, client_id: str | None = None) -> Order:
        if order_id:
            params: Params = [("uuid", order_id)]
        elif client_id:
            params = [("client_order_id", client_id)]
        else:
            raise InvalidOrder(VENUE, "local_invalid", "an order id or a client id is required")
        wire = await self._private("GET", "/v1/order", params, BithumbOrder)
        return books.order_from_wire(VENUE, wire, wire.client_order_id)

    async def cancel_order(self, order_id: str | None = None, client_id: str | None = None) -> Order:
        params: Params = [("order_id", order_id)] if order_id else [("client_order_id", client_id or "")]
        done = await self._private("DELETE", "/v2/order", params, BithumbCancelled, group="cancel")
        return await self.get_order(order_id=done.order_id)

    async def open_orders(self, market: str | None = None) -> list[Order]:
        params: list[tuple[str, str]] = [("market", market)] if market else []
        params.append(("state", "wait"))
        rows = await self._private("GET", "/v1/orders", params, list[BithumbOrder])
        return [books.order_from_wire(VENUE, r, r.client_order_id) for r in rows]

    async def recent_orders(self, market: str | None = None, limit: int = 100) -> list[Order]:
        params: list[tuple[str, str]] = [("market", market)] if market else []
        params += [("states[]", "done"), ("states[]", "cancel"), ("limit", str(min(limit, 100))),
                   ("order_by", "desc")]
        rows = await self._private("GET", "/v1/orders", params, list[BithumbOrder])
        done = [books.order_from_wire(VENUE, r, r.client_order_id) for r in rows]
        return await self.open_orders(market) + done
