"""``feed.<venue>``: one venue's order-book WebSocket → ``md.<venue>.<market>`` on the bus.

``ts_event`` is the venue's time of the book, ``ts_init`` our receipt, ``recv_mono`` the
monotonic receipt time latency figures start from. The heartbeat carries each market's data
age; a market silent for ``stale_after_ms`` is reported stale (and logged once).
"""

from __future__ import annotations

import time
from typing import Any

import msgspec

from karb import topics
from karb.actors.base import Actor
from karb.config import Config, ConfigError, VenueConfig
from karb.exchanges.registry import make_book_stream
from karb.exchanges.types import OrderBook
from karb.messages import BookUpdate


class FeedParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    venue: str
    # Levels to subscribe to (Upbit's .N suffix: 1, 5, 15 or 30; Bithumb sends at most 15).
    # Fewer levels are cheaper for every process downstream; the strategy walks at most ten.
    depth: int = 15

    def __post_init__(self) -> None:
        if self.depth not in (1, 5, 15, 30):
            raise ValueError("depth must be 1, 5, 15 or 30")


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
        # Until a market's first book, its age counts from our start (no "stale" at birth).
        self.started_mono = time.monotonic_ns()
        self.last_mono: dict[str, int] = {}
        self.stale: set[str] = set()
        self.stream = make_book_stream(self.venue, self.markets, self._on_book, self.params.depth)
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
                     malformed_frames=float(st.malformed), stale_reconnects=float(st.stale_reconnects))
        return extra
