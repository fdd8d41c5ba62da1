"""What Upbit and Bithumb's current API share: the Upbit-shaped ``/v1`` (same paths, fields and
JWT-with-query_hash scheme). The venue clients add their order endpoints and differences."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import TypeVar

from karb.exchanges.client import DEFAULT_ORDER_TIMEOUT_MS, VenueClient
from karb.exchanges.credentials import Credentials
from karb.exchanges.errors import InvalidOrder
from karb.exchanges.ratelimit import RateLimiter
from karb.exchanges.transport import Params, RestTransport
from karb.exchanges.types import Balance, OrderBook, Ticker
from karb.exchanges.v1api import books
from karb.exchanges.v1api.schemas import V1Account, V1Chance, V1Orderbook, V1Ticker
from karb.exchanges.v1api.signing import query_hash_source

Authorize = Callable[[Credentials, str | None], dict[str, str]]
T = TypeVar("T")


class V1Client(VenueClient):
    # Set by each venue: its rate-limit groups and the group of each kind of call.
    GROUPS: Mapping[str, int]
    TICKER_GROUP: str
    ORDERBOOK_GROUP: str
    PRIVATE_GROUP: str
    authorize: Authorize  # the venue's signing (Bithumb adds the timestamp claim)

    def __init__(self, base_url: str, credentials: Credentials | None, timeout_ms: int = 5000,
                 order_timeout_ms: int = DEFAULT_ORDER_TIMEOUT_MS) -> None:
        self._creds = credentials
        self.order_timeout_ms = order_timeout_ms
        self.transport = RestTransport(self.venue, base_url, RateLimiter(self.GROUPS), timeout_ms)

    def _sign(self, hash_source: str | None) -> dict[str, str]:
        if self._creds is None:
            raise InvalidOrder(self.venue, "no_credentials", "this client has no API keys")
        return type(self).authorize(self._creds, hash_source)

    async def _private(self, method: str, path: str, params: Params, decode: type[T],
                       group: str | None = None) -> T:
        return await self.transport.request(method, path, group or self.PRIVATE_GROUP, decode,
                                            params=params, sign=self._sign,
                                            hash_source=query_hash_source(params) or None,
                                            safe=method == "GET")

    async def ticker(self, markets: list[str]) -> list[Ticker]:
        rows = await self.transport.request("GET", "/v1/ticker", self.TICKER_GROUP,
                                            list[V1Ticker], params=[("markets", ",".join(markets))])
        return [Ticker(r.market, r.trade_price, r.opening_price, r.high_price, r.low_price,
                       r.acc_trade_volume_24h, books.ms_or_us_to_ns(r.timestamp)) for r in rows]

    async def orderbook(self, market: str) -> OrderBook:
        rows = await self.transport.request("GET", "/v1/orderbook", self.ORDERBOOK_GROUP,
                                            list[V1Orderbook], params=[("markets", market)])
        row = rows[0]
        bids, asks = books.split_units(row.orderbook_units)
        return OrderBook(self.venue, row.market, bids, asks, books.ms_or_us_to_ns(row.timestamp),
                         time.time_ns())

    async def balances(self) -> dict[str, Balance]:
        rows = await self._private("GET", "/v1/accounts", [], list[V1Account])
        return {r.currency: Balance(r.currency, float(r.balance), float(r.locked))
                for r in rows}

    async def taker_fee(self, market: str) -> float | None:
        chance = await self._private("GET", "/v1/orders/chance", [("market", market)], V1Chance)
        return max(float(chance.bid_fee), float(chance.ask_fee))

    async def close(self) -> None:
        await self.transport.close()
