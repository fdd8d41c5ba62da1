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
        return [json.dumps([{"ticket": str(uuid.uuid4())},
                            {"type": "orderbook", "codes": list(markets),
                             "isOnlySnapshot": False, "isOnlyRealtime": False},
                            {"format": self.fmt}])]

    def parse(self, data: bytes, ts_init: int) -> list[OrderBook]:
        book = parse_orderbook(data, self.venue, ts_init)
        return [book] if book is not None else []
