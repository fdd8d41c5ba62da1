"""Bithumb's current public stream (ws-api /websocket/v1): Upbit's request format with
camelCase flags; at most 15 levels; microsecond book timestamps. Whole books, no deltas; trades
(if asked) as one more type in the same request."""

from __future__ import annotations

import json
import uuid

from karb.exchanges.types import OrderBook, PublicTrade
from karb.exchanges.v1api.ws import parse_public
from karb.exchanges.wsstream import BookProtocol


class BithumbBookProtocol(BookProtocol):
    venue = "bithumb"

    def __init__(self, fmt: str = "SIMPLE", trades: bool = False) -> None:
        self.fmt = fmt
        self.trades = trades

    def subscription(self, markets: list[str]) -> list[str]:
        # Many markets on one connection (exchanges.md §2.5; ccxt.pro's Bithumb notes the same):
        # every request replaces the socket's whole subscription, so one request carries every
        # code, and a change of markets resends the full list. Several items of one type in a
        # request are merged. (ccxt.pro's Bithumb watch_order_book sends one code per request,
        # so on one connection only its last symbol streams.)
        types: list[dict[str, object]] = [{"type": "orderbook", "codes": list(markets),
                                           "isOnlySnapshot": False, "isOnlyRealtime": False}]
        if self.trades:
            types.append({"type": "trade", "codes": list(markets),
                          "isOnlySnapshot": False, "isOnlyRealtime": False})
        return [json.dumps([{"ticket": str(uuid.uuid4())}, *types, {"format": self.fmt}])]

    def parse(self, data: bytes, ts_init: int) -> list[OrderBook | PublicTrade]:
        got = parse_public(data, self.venue, ts_init)
        return [got] if got is not None else []
