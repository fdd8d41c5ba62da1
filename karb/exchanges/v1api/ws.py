"""Public frames as both venues' ``/websocket/v1`` send them (DEFAULT or SIMPLE keys): the
shared parsers. Order-book frames are whole books (every frame replaces the last, no deltas);
trade frames are one print each, ``sequential_id`` unique but not ordered."""

from __future__ import annotations

import msgspec

from karb.exchanges.types import OrderBook, PublicTrade, Side
from karb.exchanges.v1api import books
from karb.exchanges.v1api.schemas import (V1WsOrderbook, V1WsOrderbookSimple, V1WsTrade,
                                          V1WsTradeSimple)


class _Peek(msgspec.Struct):
    type: str | None = None
    ty: str | None = None
    error: dict[str, object] | None = None


_PEEK = msgspec.json.Decoder(_Peek)
_DEFAULT = msgspec.json.Decoder(V1WsOrderbook)
_SIMPLE = msgspec.json.Decoder(V1WsOrderbookSimple)
_TRADE = msgspec.json.Decoder(V1WsTrade)
_TRADE_SIMPLE = msgspec.json.Decoder(V1WsTradeSimple)
# ask_bid: who took liquidity. ASK = a seller hit the bid, BID = a buyer lifted the ask.
TAKER_SIDES: dict[str, Side] = {"ASK": "sell", "BID": "buy"}


def parse_orderbook(data: bytes, venue: str, ts_init: int) -> OrderBook | None:
    """One order-book frame (DEFAULT or SIMPLE) → our book; None for other frames
    (``{"status":"UP"}``, tickers, trades). Raises msgspec.DecodeError or ValueError when
    malformed."""
    got = parse_public(data, venue, ts_init)
    return got if isinstance(got, OrderBook) else None


def parse_public(data: bytes, venue: str, ts_init: int) -> OrderBook | PublicTrade | None:
    """One public frame → a book, a trade, or None for frames of other types. Raises
    msgspec.DecodeError or ValueError when malformed (a venue error frame included)."""
    # Fast path: the venues send compact JSON with the type first. Anything else (spaces, other
    # key order) takes one cheap peek at the type instead of being mistaken for another type.
    if data.startswith(b'{"ty":"orderbook"'):
        return _book(_SIMPLE.decode(data), venue, ts_init)
    if data.startswith(b'{"type":"orderbook"'):
        return _book(_DEFAULT.decode(data), venue, ts_init)
    if data.startswith(b'{"ty":"trade"'):
        return _trade(_TRADE_SIMPLE.decode(data), venue, ts_init)
    if data.startswith(b'{"type":"trade"'):
        return _trade(_TRADE.decode(data), venue, ts_init)
    peek = _PEEK.decode(data)
    if peek.error is not None:
        raise ValueError(f"venue error frame: {data[:200]!r}")
    if peek.type == "orderbook":
        return _book(_DEFAULT.decode(data), venue, ts_init)
    if peek.ty == "orderbook":
        return _book(_SIMPLE.decode(data), venue, ts_init)
    if peek.type == "trade":
        return _trade(_TRADE.decode(data), venue, ts_init)
    if peek.ty == "trade":
        return _trade(_TRADE_SIMPLE.decode(data), venue, ts_init)
    return None


def _book(frame: V1WsOrderbook | V1WsOrderbookSimple, venue: str, ts_init: int) -> OrderBook:
    bids, asks = books.split_units(frame.orderbook_units)
    return OrderBook(venue, frame.code, bids, asks, books.ms_or_us_to_ns(frame.timestamp), ts_init)


def _trade(frame: V1WsTrade | V1WsTradeSimple, venue: str, ts_init: int) -> PublicTrade:
    side = TAKER_SIDES.get(frame.ask_bid)
    if side is None:
        raise ValueError(f"trade with ask_bid {frame.ask_bid!r}")
    if not (frame.trade_price > 0 and frame.trade_volume > 0):
        raise ValueError(f"trade with price {frame.trade_price} volume {frame.trade_volume}")
    return PublicTrade(venue, frame.code, frame.trade_price, frame.trade_volume, side,
                       frame.sequential_id, books.ms_or_us_to_ns(frame.trade_timestamp), ts_init,
                       frame.stream_type == "SNAPSHOT")
