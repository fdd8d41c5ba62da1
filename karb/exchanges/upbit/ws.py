"""Upbit's order-book stream: request format, and frame parsing in DEFAULT or SIMPLE keys.

Every frame is a whole top-N book (no deltas): the normalised book replaces the last one."""

from __future__ import annotations

import json
import uuid

import msgspec

from karb.exchanges import books
from karb.exchanges.types import OrderBook
from karb.exchanges.upbit.schemas import UpbitWsOrderbook, UpbitWsOrderbookSimple
from karb.exchanges.wsstream import BookProtocol

class _Peek(msgspec.Struct):
    type: str | None = None
    ty: str | None = None
    error: dict[str, object] | None = None


_PEEK = msgspec.json.Decoder(_Peek)
_DEFAULT = msgspec.json.Decoder(UpbitWsOrderbook)
_SIMPLE = msgspec.json.Decoder(UpbitWsOrderbookSimple)


def parse_orderbook(data: bytes, venue: str, ts_init: int) -> OrderBook | None:
    """One order-book frame (DEFAULT or SIMPLE) → our book; None for other frames
    (``{"status":"UP"}``, tickers). Raises msgspec.DecodeError or ValueError when malformed."""
    # Fast path: the venues send compact JSON with the type first. Anything else (spaces, other
    # key order) takes one cheap peek at the type instead of being mistaken for a non-book.
    if data.startswith(b'{"ty":"orderbook"'):
        frame = _SIMPLE.decode(data)
    elif data.startswith(b'{"type":"orderbook"'):
        frame = _DEFAULT.decode(data)  # type: ignore[assignment]
    else:
        peek = _PEEK.decode(data)
        if peek.error is not None:
            raise ValueError(f"venue error frame: {data[:200]!r}")
        if peek.type == "orderbook":
            frame = _DEFAULT.decode(data)  # type: ignore[assignment]
        elif peek.ty == "orderbook":
            frame = _SIMPLE.decode(data)
        else:
            return None
    bids, asks = books.split_units(frame.orderbook_units)
    return OrderBook(venue, frame.code, bids, asks, books.ms_or_us_to_ns(frame.timestamp), ts_init)


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
