"""Upbit REST client (exchanges.md §1)."""

from __future__ import annotations

import time

from karb.exchanges import books
from karb.exchanges.client import VenueClient
from karb.exchanges.credentials import Credentials
from karb.exchanges.errors import InvalidOrder
from karb.exchanges.ratelimit import UPBIT_GROUPS, RateLimiter
from karb.exchanges.transport import Params, RestTransport
from karb.exchanges.types import Balance, Market, Order, OrderBook, Side, Ticker, TimeInForce
from karb.exchanges.upbit import auth
from karb.exchanges.upbit.schemas import (UpbitAccount, UpbitChance, UpbitMarket, UpbitOrder,
                                          UpbitOrderbook, UpbitTicker)

VENUE = "upbit"


class UpbitClient(VenueClient):
    venue = VENUE

    def __init__(self, base_url: str, credentials: Credentials | None, timeout_ms: int = 5000) -> None:
        self._creds = credentials
        self.transport = RestTransport(VENUE, base_url, RateLimiter(UPBIT_GROUPS), timeout_ms)

    def _sign(self, hash_source: str | None) -> dict[str, str]:
        if self._creds is None:
            raise InvalidOrder(VENUE, "no_credentials", "this client has no API keys")
        return auth.authorization(self._creds, hash_source)

    async def _private_get(self, path: str, params: Params, decode: type, method: str = "GET") -> object:
        return await self.transport.request(method, path, "default", decode, params=params,
                                            sign=self._sign,
                                            hash_source=auth.query_hash_source(params) or None,
                                            safe=method == "GET")

    # -- public --------------------------------------------------------------------------------

    async def markets(self) -> list[Market]:
        rows = await self.transport.request("GET", "/v1/market/all", "market", list[UpbitMarket],
                                            params=[("is_details", "false")])
        return [Market(r.market, r.market.split("-", 1)[1], r.market.split("-", 1)[0],
                       r.korean_name, r.english_name) for r in rows]

    async def ticker(self, markets: list[str]) -> list[Ticker]:
        rows = await self.transport.request("GET", "/v1/ticker", "ticker", list[UpbitTicker],
                                            params=[("markets", ",".join(markets))])
        return [Ticker(r.market, r.trade_price, r.opening_price, r.high_price, r.low_price,
                       r.acc_trade_volume_24h, r.timestamp * 1_000_000) for r in rows]

    async def orderbook(self, market: str) -> OrderBook:
        rows = await self.transport.request("GET", "/v1/orderbook", "orderbook",
                                            list[UpbitOrderbook], params=[("markets", market)])
        row = rows[0]
        bids, asks = books.split_units(row.orderbook_units)
        return OrderBook(VENUE, row.market, bids, asks, books.ms_or_us_to_ns(row.timestamp),
                         time.time_ns())

    # -- account -------------------------------------------------------------------------------

    async def balances(self) -> dict[str, Balance]:
        rows = await self._private_get("/v1/accounts", [], list[UpbitAccount])
        return {r.currency: Balance(r.currency, float(r.balance), float(r.locked))
                for r in rows}  # type: ignore[attr-defined]

    async def _post_order(self, market: str, side: Side, order_type: str, price: str | None,
                          volume: str | None, client_id: str, time_in_force: TimeInForce | None,
                          trace: dict[str, int] | None = None) -> Order:
        body = books.order_body(market, side, order_type, price, volume, client_id,
                                time_in_force, "ord_type", "identifier")
        wire = await self.transport.request("POST", "/v1/orders", "order", UpbitOrder, body=body,
                                            sign=self._sign,
                                            hash_source=auth.body_hash_source(body), safe=False,
                                            trace=trace)
        return books.order_from_wire(VENUE, wire, wire.identifier)

    def _id_params(self, order_id: str | None, client_id: str | None) -> Params:
        if order_id:
            return [("uuid", order_id)]
        if client_id:
            return [("identifier", client_id)]
        raise InvalidOrder(VENUE, "local_invalid", "an order id or a client id is required")

    async def get_order(self, order_id: str | None = None, client_id: str | None = None) -> Order:
        wire = await self._private_get("/v1/order", self._id_params(order_id, client_id), UpbitOrder)
        return books.order_from_wire(VENUE, wire, wire.identifier)  # type: ignore[attr-defined]

    async def cancel_order(self, order_id: str | None = None, client_id: str | None = None) -> Order:
        wire = await self._private_get("/v1/order", self._id_params(order_id, client_id),
                                       UpbitOrder, method="DELETE")
        return books.order_from_wire(VENUE, wire, wire.identifier)  # type: ignore[attr-defined]

    async def open_orders(self, market: str | None = None) -> list[Order]:
        params: list[tuple[str, str]] = [("market", market)] if market else []
        params += [("states[]", "wait"), ("states[]", "watch")]
        rows = await self._private_get("/v1/orders/open", params, list[UpbitOrder])
        return [books.order_from_wire(VENUE, r, r.identifier) for r in rows]  # type: ignore[attr-defined]

    async def taker_fee(self, market: str) -> float | None:
        chance = await self._private_get("/v1/orders/chance", [("market", market)], UpbitChance)
        return max(float(chance.bid_fee), float(chance.ask_fee))  # type: ignore[attr-defined]

    async def close(self) -> None:
        await self.transport.close()
