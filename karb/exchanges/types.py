"""Normalised venue data: our own field names, one shape for both exchanges.

Prices and sizes are floats here (venue shapes stop at the edge); timestamps are integer
nanoseconds (``ts_event`` the venue's time, ``ts_init`` when we received it). Sides are
``buy``/``sell``; order states are ours (:class:`OrderState`), mapped from each venue's.
"""

from __future__ import annotations

from enum import Enum
from typing import Literal

import msgspec

Side = Literal["buy", "sell"]
TimeInForce = Literal["ioc", "fok"]
Level = tuple[float, float]  # (price, size)


class OrderState(str, Enum):
    OPEN = "open"  # accepted, may fill further (Upbit/Bithumb "wait", "watch")
    DONE = "done"  # final: fully filled, or (Bithumb) an IOC that filled in part
    CANCELLED = "cancelled"  # final: cancelled, possibly after partial fills

    @property
    def final(self) -> bool:
        return self is not OrderState.OPEN


class Market(msgspec.Struct, frozen=True, gc=False):
    market: str  # KRW-BTC
    base: str
    quote: str
    korean_name: str = ""
    english_name: str = ""
    warning: bool = False


class Ticker(msgspec.Struct, frozen=True, gc=False):
    market: str
    last: float
    open: float
    high: float
    low: float
    volume_24h: float
    ts_event: int


class OrderBook(msgspec.Struct, frozen=True, gc=False):
    """Best first on both sides; padded and zero-size levels are already dropped."""

    venue: str
    market: str
    bids: list[Level]
    asks: list[Level]
    ts_event: int
    ts_init: int


class PublicTrade(msgspec.Struct, frozen=True, gc=False):
    """One print on the venue's public trade stream. ``side`` is the taker's (the venue's
    ``ask_bid``: ASK = a seller hit the bid → ``sell``); ``seq`` the venue's ``sequential_id``
    (unique per trade, but not in order, so duplicates are found by set, not by max);
    ``snapshot``: the frame was the subscription's SNAPSHOT (the last trade before we asked)."""

    venue: str
    market: str
    price: float
    volume: float
    side: Side
    seq: int
    ts_event: int
    ts_init: int
    snapshot: bool = False


class Balance(msgspec.Struct, frozen=True, gc=False):
    currency: str
    free: float
    locked: float

    @property
    def total(self) -> float:
        return self.free + self.locked


class Fill(msgspec.Struct, frozen=True, gc=False):
    trade_id: str
    price: float
    volume: float
    funds: float


class Order(msgspec.Struct, frozen=True, gc=False):
    venue: str
    order_id: str
    client_id: str | None
    market: str
    side: Side
    order_type: str  # limit | market
    price: float | None
    volume: float | None
    state: OrderState
    executed_volume: float = 0.0
    executed_funds: float = 0.0
    paid_fee: float = 0.0
    time_in_force: str | None = None
    fills: list[Fill] = []
    # False when the venue answered with less than an order (Bithumb's POST /v2/orders):
    # state and fills are then unknown until the order is fetched.
    complete: bool = True
