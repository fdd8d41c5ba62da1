"""``feed.<venue>``: one venue's public WebSocket → ``md.<venue>.<market>`` (books) and
``trade.<venue>.<market>`` (public trades) on the bus.

``ts_event`` is the venue's time of the book or trade, ``ts_init`` our receipt, ``recv_mono``
the monotonic receipt time latency figures start from. The heartbeat carries each market's data
age; a market silent for ``stale_after_ms`` is reported stale (and logged once).

Trades (``trades: true``, the default) are one more type in the same subscription request.
``sequential_id`` is unique per trade but not ordered, so repeats (the SNAPSHOT a reconnect
replays) are dropped by a bounded set of the last ``TRADE_IDS_KEPT`` ids per market, not by a
high-water mark. Bithumb's legacy feed streams books only (:func:`trades_supported`).
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

import msgspec

from karb import topics
from karb.actors.base import Actor
from karb.config import Config, ConfigError, VenueConfig
from karb.exchanges.registry import make_book_stream, trades_supported
from karb.exchanges.types import OrderBook, PublicTrade
from karb.messages import BookUpdate, TradeTick

# Far more than a venue prints between two reconnects' snapshots (a SNAPSHOT repeats one trade).
TRADE_IDS_KEPT = 512


class FeedParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    venue: str
    # Levels to subscribe to (Upbit's .N suffix: 1, 5, 15 or 30; Bithumb sends at most 15).
    # Fewer levels are cheaper for every process downstream; the strategy walks at most ten.
    depth: int = 15
    # Also subscribe to the venue's public trades and publish them on trade.<venue>.<market>
    # (the market-state monitor's volume profile, vwap's weights).
    trades: bool = True

    def __post_init__(self) -> None:
        if self.depth not in (1, 5, 15, 30):
            raise ValueError("depth must be 1, 5, 15 or 30")


class TradeDedup:
    """The last ``keep`` trade ids of one market: is this one new?"""

    def __init__(self, keep: int = TRADE_IDS_KEPT) -> None:
        self.order: deque[int] = deque()
        self.ids: set[int] = set()
        self.keep = keep

    def fresh(self, trade_id: int) -> bool:
        if trade_id in self.ids:
            return False
        self.ids.add(trade_id)
        self.order.append(trade_id)
        if len(self.order) > self.keep:
            self.ids.discard(self.order.popleft())
        return True


class Feed(Actor):
    Params = FeedParams

    @classmethod
    def preflight(cls, config: Config, params: Any) -> None:
        if not any(v.name == params.venue for v in config.venues):
            raise ConfigError(f"config error: {config.path}: feed venue {params.venue!r} is not "
                              "in venues")

    async def on_start(self) -> None:
        self.venue: VenueConfig = next(v for v in self.config.venues if v.name == self.params.venue)
        self.markets = list(self.config.markets)
        self.topics = {m: topics.market_data(self.venue.name, m) for m in self.markets}
        self.trade_topics = {m: topics.trade(self.venue.name, m) for m in self.markets}
        self.dedup = {m: TradeDedup() for m in self.markets}
        self.trades_published = 0
        self.trades_repeated = 0
        # Until a market's first book, its age counts from our start (no "stale" at birth).
        self.started_mono = time.monotonic_ns()
        self.last_mono: dict[str, int] = {}
        self.stale: set[str] = set()
        with_trades = self.params.trades and trades_supported(self.venue)
        if self.params.trades and not with_trades:
            self.log.info("%s (%s API): no public trade stream; books only", self.venue.name,
                          self.venue.api)
        self.stream = make_book_stream(self.venue, self.markets, self._on_book, self.params.depth,
                                       on_trade=self._on_trade if with_trades else None)
        self.spawn(self.stream.run(), name="stream")

    def _on_book(self, book: OrderBook) -> None:
        topic = self.topics.get(book.market)
        if topic is None:
            return  # a market we did not ask for
        now = time.monotonic_ns()
        self.last_mono[book.market] = now
        if book.market in self.stale:
            self.stale.discard(book.market)
            self.log.info("%s %s: data flowing again", self.venue.name, book.market)
        self.publish(topic, BookUpdate(venue=book.venue, market=book.market, bids=book.bids,
                                       asks=book.asks, recv_mono=self.stream.last_recv_mono or now,
                                       ts_event=book.ts_event, ts_init=book.ts_init))

    def _on_trade(self, t: PublicTrade) -> None:
        topic = self.trade_topics.get(t.market)
        if topic is None:
            return  # a market we did not ask for
        if not self.dedup[t.market].fresh(t.seq):
            self.trades_repeated += 1
            return
        self.trades_published += 1
        self.publish(topic, TradeTick(venue=t.venue, market=t.market, price=t.price,
                                      volume=t.volume, side=t.side, sequential_id=t.seq,
                                      snapshot=t.snapshot,
                                      recv_mono=self.stream.last_recv_mono or time.monotonic_ns(),
                                      ts_event=t.ts_event, ts_init=t.ts_init))

    def heartbeat_extra(self) -> dict[str, float]:
        now = time.monotonic_ns()
        limit = self.venue.stale_after_ms
        extra: dict[str, float] = {}
        for market in self.markets:
            last = self.last_mono.get(market)
            age_ms = (now - (last or self.started_mono)) / 1e6
            extra[f"age_ms.{market}"] = round(age_ms, 1) if last else -1.0
            if age_ms > limit and market not in self.stale:
                self.stale.add(market)
                self.log.warning("%s %s: no data for %d ms (stale)", self.venue.name, market, limit)
        st = self.stream.stats
        extra.update(stale_markets=float(len(self.stale)), connects=float(st.connects),
                     malformed_frames=float(st.malformed), stale_reconnects=float(st.stale_reconnects),
                     trades=float(self.trades_published), trades_repeated=float(self.trades_repeated))
        return extra
