"""Bithumb's own wire shapes. Where /v1 matches Upbit's (tickers, books, accounts, the WebSocket
book), the shared structs in ``karb.exchanges.v1api.schemas`` are used."""

from __future__ import annotations

import msgspec

from karb.exchanges.v1api.schemas import OrderFields


class BithumbMarket(msgspec.Struct, gc=False):
    market: str
    korean_name: str = ""
    english_name: str = ""
    market_warning: str = "NONE"


class BithumbOrder(OrderFields, gc=False):
    client_order_id: str | None = None


class BithumbOrderCreated(msgspec.Struct, gc=False):
    """POST /v2/orders answers with this much only."""

    order_id: str
    market: str
    side: str
    order_type: str
    client_order_id: str | None = None


class BithumbCancelled(msgspec.Struct, gc=False):
    order_id: str


class BithumbChanceSide(msgspec.Struct, gc=False):
    currency: str
    price_unit: str | None = None
    min_total: str | None = None


class BithumbChanceMarket(msgspec.Struct, gc=False):
    id: str
    bid: BithumbChanceSide
    ask: BithumbChanceSide


class BithumbChance(msgspec.Struct, gc=False):
    bid_fee: str
    ask_fee: str
    market: BithumbChanceMarket


# Legacy v1.2.0 public order book and the pubwss stream.
class LegacyLevel(msgspec.Struct, gc=False):
    price: str
    quantity: str


class LegacyBookData(msgspec.Struct, gc=False):
    timestamp: str
    bids: list[LegacyLevel]
    asks: list[LegacyLevel]


class LegacyBook(msgspec.Struct, gc=False):
    status: str
    data: LegacyBookData


class LegacyDepthLevel(msgspec.Struct, gc=False):
    symbol: str
    orderType: str
    price: str
    quantity: str


class LegacyDepthContent(msgspec.Struct, gc=False):
    levels: list[LegacyDepthLevel] = msgspec.field(name="list")
    datetime: int | str = 0


class LegacyDepth(msgspec.Struct, gc=False):
    type: str
    content: LegacyDepthContent
