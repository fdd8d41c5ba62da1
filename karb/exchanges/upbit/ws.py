"""Upbit's order-book stream: request format, and frame parsing in DEFAULT or SIMPLE keys.

Every frame is a whole top-N book (no deltas): the normalised book replaces the last one."""

from __future__ import annotations

import json
import uuid

from karb.exchanges.types import OrderBook
from karb.exchanges.v1api.ws import parse_orderbook
from karb.exchanges.wsstream import BookProtocol

__all__ = ["UpbitBookProtocol", "parse_orderbook"]

class UpbitBookProtocol(BookProtocol):
    venue = "upbit"

    def __init__(self, fmt: str = "SIMPLE", depth: int = 30) -> None:
        self.fmt = fmt
        self.depth = depth

    def subscription(self, markets: list[str]) -> list[str]:
        codes = [m if self.depth == 30 else f"{m}.{self.depth}" for m in markets]
        return [json.dumps([{"ticket": str(uuid.uuid4())},
                            {"type": "orderbook", "codes": codes},
                            {"format": self.fmt}])]

    def parse(self, data: bytes, ts_init: int) -> list[OrderBook]:
        book = parse_orderbook(data, self.venue, ts_init)
        return [book] if book is not None else []
