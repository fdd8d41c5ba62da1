"""Whole-book order-book frames as both venues' ``/websocket/v1`` send them (DEFAULT or
SIMPLE keys): the shared parser. Every frame replaces the last book; there are no deltas."""

from __future__ import annotations

import msgspec

from karb.exchanges.types import OrderBook
from karb.exchanges.v1api import books
from karb.exchanges.v1api.schemas import V1WsOrderbook, V1WsOrderbookSimple


class _Peek(msgspec.Struct):
    type: str | None = None
    ty: str | None = None
    error: dict[str, object] | None = None


_PEEK = msgspec.json.Decoder(_Peek)
_DEFAULT = msgspec.json.Decoder(V1WsOrderbook)
_SIMPLE = msgspec.json.Decoder(V1WsOrderbookSimple)


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
