"""Bithumb's current order-book stream (ws-api /websocket/v1): Upbit's request format with
camelCase flags; at most 15 levels; microsecond timestamps. Whole books, no deltas."""

from __future__ import annotations

import json
import uuid

from karb.exchanges.types import OrderBook
from karb.exchanges.v1api.ws import parse_orderbook
from karb.exchanges.wsstream import BookProtocol


class BithumbBookProtocol(BookProtocol):
    venue = "bithumb"

    def __init__(self, fmt: str = "SIMPLE") -> None:
        self.fmt = fmt

    def subscription(self, markets: list[str]) -> list[str]:
        # Many markets on one connection (exchanges.md §2.5; ccxt.pro's Bithumb notes the same):
        # every request replaces the socket's whole subscription, so one request carries every
        # code, and a change of markets resends the full list. Several items of one type in a
        # request are merged. (ccxt.pro's Bithumb watch_order_book sends one code per request,
        # so on one connection only its last symbol streams.)
        return [json.dumps([{"ticket": str(uuid.uuid4())},
                            {"type": "orderbook", "codes": list(markets),
                             "isOnlySnapshot": False, "isOnlyRealtime": False},
                            {"format": self.fmt}])]

    def parse(self, data: bytes, ts_init: int) -> list[OrderBook]:
        book = parse_orderbook(data, self.venue, ts_init)
        return [book] if book is not None else []
