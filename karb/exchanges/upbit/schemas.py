"""Upbit's wire shapes, in Upbit's own field names (converted to ours in rest.py / ws.py)."""

from __future__ import annotations

import msgspec


class UpbitMarket(msgspec.Struct, gc=False):
    market: str
    korean_name: str = ""
    english_name: str = ""


class UpbitTicker(msgspec.Struct, gc=False):
    market: str
    trade_price: float
    opening_price: float
    high_price: float
    low_price: float
    acc_trade_volume_24h: float
    timestamp: int


class UpbitUnit(msgspec.Struct, gc=False):
    ask_price: float
    bid_price: float
    ask_size: float
    bid_size: float


class UpbitOrderbook(msgspec.Struct, gc=False):
    market: str
    timestamp: int
    orderbook_units: list[UpbitUnit]


class UpbitAccount(msgspec.Struct, gc=False):
    currency: str
    balance: str
    locked: str


class UpbitTrade(msgspec.Struct, gc=False):
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
    trades: list[UpbitTrade] = []


class UpbitOrder(OrderFields, gc=False):
    identifier: str | None = None


# WebSocket order book, DEFAULT format.
class UpbitWsOrderbook(msgspec.Struct, gc=False):
    type: str
    code: str
    timestamp: int
    orderbook_units: list[UpbitUnit]


# WebSocket order book, SIMPLE format (the short keys).
class UpbitSimpleUnit(msgspec.Struct, gc=False, rename={"ask_price": "ap", "bid_price": "bp",
                                                        "ask_size": "as", "bid_size": "bs"}):
    ask_price: float
    bid_price: float
    ask_size: float
    bid_size: float


class UpbitWsOrderbookSimple(msgspec.Struct, gc=False,
                             rename={"type": "ty", "code": "cd", "timestamp": "tms",
                                     "orderbook_units": "obu"}):
    type: str
    code: str
    timestamp: int
    orderbook_units: list[UpbitSimpleUnit]


class UpbitChance(msgspec.Struct, gc=False):
    bid_fee: str
    ask_fee: str
