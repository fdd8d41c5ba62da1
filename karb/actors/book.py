"""``book``: the L2 book per (venue, market), validated, with its top in shared memory.

Feeds publish whole books, so each one replaces the last (a feed that reads deltas, such as the
legacy Bithumb one, composes them before publishing). A book is refused when it is crossed,
has a non-positive price or size, or is older than the one it would replace. Each accepted
top goes into its shared-memory slot (seqlock; this actor is the only writer), then
``tob.<venue>.<market>`` if the top changed and ``depth.<venue>.<market>`` (top N) always.
A book with no update for ``stale_after_ms`` is flagged STALE in shared memory and on the bus.
On start every slot is flagged STALE until fresh data arrives, so readers never trade on
numbers a dead predecessor left behind.
"""

from __future__ import annotations

import asyncio
import math
import time

import msgspec

from karb import topics
from karb.actors.base import Actor
from karb.messages import BookUpdate, BusMessage, DepthUpdate, TopOfBookUpdate
from karb.shm import CROSSED, STALE, VALID, TopOfBookTable, segment_path


class BookParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    depth_levels: int = 10
    stale_after_ms: int = 2000


class Book(Actor):
    Params = BookParams

    def subscriptions(self) -> list[tuple[str, bytes]]:
        feeds = [a.name for a in self.config.actors if a.kind == "feed"]
        return [(feed, topics.MARKET_DATA) for feed in feeds]

    async def on_start(self) -> None:
        cfg = self.config
        self.venue_index: dict[str, int] = {v.name: i for i, v in enumerate(cfg.venues)}
        self.market_index = {m: i for i, m in enumerate(cfg.markets)}
        self.table = TopOfBookTable.attach(segment_path(cfg.run_dir), len(cfg.venues),
                                           len(cfg.markets), writable=True)
        fixed = self.table.recover()
        if fixed:
            self.log.warning("finished %d half-written shared-memory slots (a writer died)", fixed)
        self.last: dict[tuple[str, str], TopOfBookUpdate] = {}
        self.last_event: dict[tuple[str, str], int] = {}
        self.updated_mono: dict[tuple[str, str], int] = {}
        self.stale: set[tuple[str, str]] = set()
        self.rejected = {"crossed": 0, "invalid": 0, "out_of_order": 0}
        now = time.time_ns()
        for slot in range(self.table.n_slots):
            top = self.table.read(slot)
            if top is not None:
                self.table.write(slot, top.bid_px, top.bid_size, top.ask_px, top.ask_size,
                                 top.ts_event, top.ts_init, (top.flags & ~VALID) | STALE,
                                 top.recv_mono)
        self.log.info("shared-memory top of book: %d slots, all STALE until fresh data (%d ns)",
                      self.table.n_slots, time.time_ns() - now)
        self.spawn(self._sweep(), name="stale-sweep")

    def on_message(self, topic: bytes, msg: BusMessage) -> None:
        if not isinstance(msg, BookUpdate):
            return
        key = (msg.venue, msg.market)
        vi, mi = self.venue_index.get(msg.venue), self.market_index.get(msg.market)
        if vi is None or mi is None:
            return
        if msg.ts_event < self.last_event.get(key, 0):
            self.rejected["out_of_order"] += 1
            return
        if not msg.bids or not msg.asks or not _sane(msg.bids) or not _sane(msg.asks):
            self.rejected["invalid"] += 1
            return
        self.last_event[key] = msg.ts_event
        bid_px, bid_size = msg.bids[0]
        ask_px, ask_size = msg.asks[0]
        flags = VALID
        if bid_px >= ask_px:
            flags = CROSSED
            self.rejected["crossed"] += 1
        self.table.write(self.table.slot(vi, mi), bid_px, bid_size, ask_px, ask_size,
                         msg.ts_event, msg.ts_init, flags, msg.recv_mono)
        shm_mono = time.monotonic_ns()
        self.updated_mono[key] = shm_mono
        self.stale.discard(key)
        prev = self.last.get(key)
        if (prev is None or prev.flags != flags or prev.bid_px != bid_px or prev.ask_px != ask_px
                or prev.bid_size != bid_size or prev.ask_size != ask_size):
            tob = TopOfBookUpdate(venue=msg.venue, market=msg.market, bid_px=bid_px,
                                  bid_size=bid_size, ask_px=ask_px, ask_size=ask_size, flags=flags,
                                  recv_mono=msg.recv_mono, shm_mono=shm_mono,
                                  ts_event=msg.ts_event, ts_init=msg.ts_init)
            self.last[key] = tob
            self.publish(topics.top_of_book(msg.venue, msg.market), tob)
        if flags == VALID:
            n = self.params.depth_levels
            self.publish(topics.depth(msg.venue, msg.market), DepthUpdate(
                venue=msg.venue, market=msg.market, bids=msg.bids[:n], asks=msg.asks[:n],
                recv_mono=msg.recv_mono, ts_event=msg.ts_event, ts_init=msg.ts_init))

    async def _sweep(self) -> None:
        limit_ns = self.params.stale_after_ms * 1_000_000
        while True:
            await asyncio.sleep(0.1)
            now = time.monotonic_ns()
            for key, updated in self.updated_mono.items():
                if key in self.stale or now - updated <= limit_ns:
                    continue
                self.stale.add(key)
                prev = self.last[key]
                slot = self.table.slot(self.venue_index[key[0]], self.market_index[key[1]])
                self.table.write(slot, prev.bid_px, prev.bid_size, prev.ask_px, prev.ask_size,
                                 prev.ts_event, prev.ts_init, STALE, prev.recv_mono)
                stale = msgspec.structs.replace(prev, flags=STALE, ts_init=time.time_ns())
                self.last[key] = stale
                self.publish(topics.top_of_book(*key), stale)
                self.log.warning("%s %s: no book for %d ms: STALE", key[0], key[1],
                                 self.params.stale_after_ms)

    def heartbeat_extra(self) -> dict[str, float]:
        return {f"rejected_{k}": float(v) for k, v in self.rejected.items()} | {
            "stale_books": float(len(self.stale))}

    async def on_stop(self) -> None:
        self.table.close()


def _sane(levels: list[tuple[float, float]]) -> bool:
    for px, size in levels:
        if not (px > 0 and size > 0 and math.isfinite(px) and math.isfinite(size)):
            return False
    return True
