"""The ``/v1`` wire shapes both venues print alike, in the venues' own field names (Bithumb's
/v1 adds fields; its differences live in ``karb.exchanges.bithumb.schemas``)."""

from __future__ import annotations

import msgspec


class V1Ticker(msgspec.Struct, gc=False):
    market: str
    trade_price: float
    opening_price: float
    high_price: float
    low_price: float
    acc_trade_volume_24h: float
    timestamp: int


class V1Unit(msgspec.Struct, gc=False):
    ask_price: float
    bid_price: float
    ask_size: float
    bid_size: float


class V1Orderbook(msgspec.Struct, gc=False):
    market: str
    timestamp: int
    orderbook_units: list[V1Unit]


class V1Account(msgspec.Struct, gc=False):
    currency: str
    balance: str
    locked: str


class V1Trade(msgspec.Struct, gc=False):
    uuid: str
    price: str
    volume: str
    funds: str


class OrderFields(msgspec.Struct, gc=False):
    """An order as Upbit prints it; Bithumb's /v1 prints the same with its own client-id key."""

    uuid: str
    side: str
    ord_type: str
    state: str
    market: str
    price: str | None = None
    volume: str | None = None
    executed_volume: str = "0"
    executed_funds: str | None = None
    paid_fee: str = "0"
    time_in_force: str | None = None
    trades: list[V1Trade] = []


# WebSocket order book, DEFAULT format.
class V1WsOrderbook(msgspec.Struct, gc=False):
    type: str
    code: str
    timestamp: int
    orderbook_units: list[V1Unit]


# WebSocket order book, SIMPLE format (the short keys).
class V1SimpleUnit(msgspec.Struct, gc=False, rename={"ask_price": "ap", "bid_price": "bp",
                                                        "ask_size": "as", "bid_size": "bs"}):
    ask_price: float
    bid_price: float
    ask_size: float
    bid_size: float


class V1WsOrderbookSimple(msgspec.Struct, gc=False,
                             rename={"type": "ty", "code": "cd", "timestamp": "tms",
                                     "orderbook_units": "obu"}):
    type: str
    code: str
    timestamp: int
    orderbook_units: list[V1SimpleUnit]


# WebSocket public trade (both venues' /websocket/v1), DEFAULT and SIMPLE keys: only what we use.
class V1WsTrade(msgspec.Struct, gc=False):
    type: str
    code: str
    trade_price: float
    trade_volume: float
    ask_bid: str
    trade_timestamp: int
    sequential_id: int
    stream_type: str = "REALTIME"


class V1WsTradeSimple(msgspec.Struct, gc=False,
                      rename={"type": "ty", "code": "cd", "trade_price": "tp", "trade_volume": "tv",
                              "ask_bid": "ab", "trade_timestamp": "ttms", "sequential_id": "sid",
                              "stream_type": "st"}):
    type: str
    code: str
    trade_price: float
    trade_volume: float
    ask_bid: str
    trade_timestamp: int
    sequential_id: int
    stream_type: str = "REALTIME"


class V1Chance(msgspec.Struct, gc=False):
    bid_fee: str
    ask_fee: str
