"""Upbit's public stream: order books (and, if asked, trades): request format, and frame
parsing in DEFAULT or SIMPLE keys.

Every book frame is a whole top-N book (no deltas): the normalised book replaces the last one.
Trades ride on the same connection as one more type in the same request (a request may list
several types; a new one replaces the whole subscription)."""

from __future__ import annotations

import json
import uuid

from karb.exchanges.types import OrderBook, PublicTrade
from karb.exchanges.v1api.ws import parse_orderbook, parse_public
from karb.exchanges.wsstream import BookProtocol

__all__ = ["UpbitBookProtocol", "parse_orderbook"]

class UpbitBookProtocol(BookProtocol):
    venue = "upbit"

    def __init__(self, fmt: str = "SIMPLE", depth: int = 30, trades: bool = False) -> None:
        self.fmt = fmt
        self.depth = depth
        self.trades = trades

    def subscription(self, markets: list[str]) -> list[str]:
        codes = [m if self.depth == 30 else f"{m}.{self.depth}" for m in markets]
        types: list[dict[str, object]] = [{"type": "orderbook", "codes": codes}]
        if self.trades:
            types.append({"type": "trade", "codes": list(markets)})
        return [json.dumps([{"ticket": str(uuid.uuid4())}, *types, {"format": self.fmt}])]

    def parse(self, data: bytes, ts_init: int) -> list[OrderBook | PublicTrade]:
        got = parse_public(data, self.venue, ts_init)
        return [got] if got is not None else []
