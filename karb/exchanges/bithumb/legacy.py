"""Bithumb's legacy order-book feed: pubwss ``orderbookdepth`` deltas on top of a REST snapshot.

The deltas carry changed levels only (absolute quantity, ``"0"`` removes the level) and no
sequence number, so the book is only as good as the snapshot under it: after every (re)connect
the feed subscribes first, then loads ``/public/orderbook/{COIN}_KRW`` per market, and replays
what arrived meanwhile if it is newer than the snapshot. When the deltas stop adding up (the
book crosses, or a side empties) the feed resyncs: reconnect, resubscribe, new snapshots.
"""

from __future__ import annotations

import json
import time
from typing import Any

import aiohttp
import msgspec

from karb.exchanges.bithumb.schemas import LegacyBook, LegacyDepth
from karb.exchanges.types import OrderBook
from karb.exchanges.wsstream import BookHandler, BookProtocol, Resync

_BOOK = msgspec.json.Decoder(LegacyBook)
_DEPTH = msgspec.json.Decoder(LegacyDepth)
DEPTH = 30


def symbol(market: str) -> str:
    quote, coin = market.split("-", 1)
    return f"{coin}_{quote}"


def market_of(sym: str) -> str:
    coin, quote = sym.split("_", 1)
    return f"{quote}-{coin}"


class LegacyBookProtocol(BookProtocol):
    venue = "bithumb"

    def __init__(self, rest_base_url: str) -> None:
        self.rest = rest_base_url.rstrip("/")
        self.books: dict[str, dict[str, dict[float, float]]] = {}
        self.snapshot_us: dict[str, int] = {}

    def subscription(self, markets: list[str]) -> list[str]:
        self.books.clear()
        self.snapshot_us.clear()
        return [json.dumps({"type": "orderbookdepth", "symbols": [symbol(m) for m in markets]})]

    async def on_connected(self, markets: list[str], emit: BookHandler) -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
            for market in markets:
                url = f"{self.rest}/public/orderbook/{symbol(market)}?count={DEPTH}"
                async with session.get(url) as resp:
                    snap = _BOOK.decode(await resp.read())
                if snap.status != "0000":
                    raise Resync(f"snapshot of {market} refused: status {snap.status}")
                self.books[market] = {
                    "bid": {float(lv.price): float(lv.quantity) for lv in snap.data.bids},
                    "ask": {float(lv.price): float(lv.quantity) for lv in snap.data.asks}}
                self.snapshot_us[market] = int(snap.data.timestamp) * 1000
                emit(self._book(market, int(snap.data.timestamp) * 1_000_000, time.time_ns()))

    def parse(self, data: bytes, ts_init: int) -> list[OrderBook]:
        if b'"status"' in data[:20]:
            status: dict[str, Any] = json.loads(data)
            if status.get("status") != "0000":
                raise ValueError(f"pubwss refused: {status}")
            return []
        depth = _DEPTH.decode(data)
        if depth.type != "orderbookdepth":
            return []
        stamp_us = int(depth.content.datetime)
        touched: set[str] = set()
        for level in depth.content.levels:
            market = market_of(level.symbol)
            book = self.books.get(market)
            if book is None or stamp_us < self.snapshot_us.get(market, 0):
                continue  # older than the snapshot under us: already in it
            side = book["bid" if level.orderType == "bid" else "ask"]
            qty = float(level.quantity)
            if qty == 0:
                side.pop(float(level.price), None)
            else:
                side[float(level.price)] = qty
            touched.add(market)
        out: list[OrderBook] = []
        for market in touched:
            top = self._book(market, stamp_us * 1000, ts_init)
            if not top.bids or not top.asks or top.bids[0][0] >= top.asks[0][0]:
                raise Resync(f"{market} deltas no longer add up (crossed or empty)")
            out.append(top)
        return out

    def _book(self, market: str, ts_event: int, ts_init: int) -> OrderBook:
        book = self.books[market]
        bids = sorted(book["bid"].items(), reverse=True)[:DEPTH]
        asks = sorted(book["ask"].items())[:DEPTH]
        return OrderBook(self.venue, market, bids, asks, ts_event, ts_init)
