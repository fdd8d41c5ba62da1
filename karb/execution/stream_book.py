"""What a venue's private stream (karb.exchanges.private_stream) said about our orders lately:
the latest update and the fills per order, so a leg's follower can take its final state from
the stream instead of polling REST.

The stream is a faster source, never a second owner (karb.execution.legs owns recovery):
- An IOC is final before its POST is answered, so updates arrive before the follower knows the
  order id: they are buffered here, bounded (the last ``keep`` orders, none older than
  ``ttl_s``), and a follower finds them when it asks.
- A final update is used only when the fills it carries add up to the venue's cumulative
  executed volume and funds (:meth:`StreamBook.order`); otherwise the follower reads the order
  once by REST.
- ``live`` is the stream's ``connected`` event: while it is clear, followers poll REST.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from dataclasses import dataclass, field

from karb import clock
from karb.exchanges.private_stream import OrderUpdate, StreamFill
from karb.exchanges.types import Fill, Order

log = logging.getLogger("karb.execution")


@dataclass
class _Entry:
    latest: OrderUpdate
    fills: dict[str, StreamFill] = field(default_factory=dict)  # by trade id: a replay is one fill
    seen_mono: float = 0.0


@dataclass
class StreamBookStats:
    updates: int = 0
    fills: int = 0
    gaps: int = 0
    evicted: int = 0


class StreamBook:
    """``on_update`` is the stream's handler; ``wait_final`` lets a follower await an order's
    final update; ``order`` turns it into a complete :class:`Order` (or None: read REST)."""

    def __init__(self, venue: str, connected: asyncio.Event | None = None, keep: int = 2048,
                 ttl_s: float = 300.0) -> None:
        self.venue = venue
        # Replaced by the stream's own event when one is attached (karb.actors.execution).
        self.connected = connected or asyncio.Event()
        self.keep = keep
        self.ttl_s = ttl_s
        self.stats = StreamBookStats()
        self._orders: OrderedDict[str, _Entry] = OrderedDict()  # by order id, oldest first
        self._by_client: dict[str, str] = {}  # client id → order id
        self._waiters: dict[str, set[asyncio.Event]] = {}  # order id or client id → waiting

    @property
    def live(self) -> bool:
        return self.connected.is_set()

    # -- from the stream ------------------------------------------------------------------------

    def on_update(self, update: OrderUpdate) -> None:
        now = clock.monotonic()
        entry = self._orders.get(update.order_id)
        if entry is None:
            entry = self._orders[update.order_id] = _Entry(update)
        else:
            self._orders.move_to_end(update.order_id)
            # Frames come in order on one connection, but a final state is never undone by a
            # late duplicate after a reconnect.
            if not entry.latest.state.final or update.state.final:
                entry.latest = update
        entry.seen_mono = now
        if update.fill is not None and update.fill.trade_id not in entry.fills:
            entry.fills[update.fill.trade_id] = update.fill
            self.stats.fills += 1
        if update.client_id:
            self._by_client[update.client_id] = update.order_id
        self.stats.updates += 1
        self._evict(now)
        for key in (update.order_id, update.client_id):
            for waiter in self._waiters.get(key or "", ()):
                waiter.set()

    def on_gap(self) -> None:
        """After a reconnect updates may have been missed. Nothing else to do: a follower waits
        at most ``stream_wait_ms`` for a final update before it reads REST, so a missed update
        costs that wait, never the leg."""
        self.stats.gaps += 1
        log.info("%s private stream reconnected: updates may have been missed (REST covers them)",
                 self.venue)

    def _evict(self, now: float) -> None:
        while self._orders:
            order_id, oldest = next(iter(self._orders.items()))
            if len(self._orders) <= self.keep and now - oldest.seen_mono <= self.ttl_s:
                return
            del self._orders[order_id]
            if oldest.latest.client_id and self._by_client.get(oldest.latest.client_id) == order_id:
                del self._by_client[oldest.latest.client_id]
            self.stats.evicted += 1

    # -- for followers --------------------------------------------------------------------------

    def latest(self, order_id: str | None = None, client_id: str | None = None) -> OrderUpdate | None:
        entry = self._entry(order_id, client_id)
        return entry.latest if entry else None

    def fills(self, order_id: str | None = None, client_id: str | None = None) -> list[StreamFill]:
        entry = self._entry(order_id, client_id)
        return list(entry.fills.values()) if entry else []

    def _entry(self, order_id: str | None, client_id: str | None) -> _Entry | None:
        if not order_id and client_id:
            order_id = self._by_client.get(client_id)
        return self._orders.get(order_id) if order_id else None

    async def wait_final(self, order_id: str | None, client_id: str | None,
                         timeout_s: float) -> OrderUpdate | None:
        """The order's final update, at once if it came already; None if none comes within
        ``timeout_s``."""
        deadline = clock.monotonic() + max(timeout_s, 0.0)
        waiter = asyncio.Event()
        keys = [k for k in (order_id, client_id) if k]
        for key in keys:
            self._waiters.setdefault(key, set()).add(waiter)
        try:
            while True:
                latest = self.latest(order_id, client_id)
                if latest is not None and latest.state.final:
                    return latest
                left = deadline - clock.monotonic()
                if left <= 0:
                    return None
                waiter.clear()
                try:
                    await asyncio.wait_for(waiter.wait(), left)
                except TimeoutError:
                    return None
        finally:
            for key in keys:
                waiting = self._waiters.get(key)
                if waiting is not None:
                    waiting.discard(waiter)
                    if not waiting:
                        del self._waiters[key]

    def order(self, order_id: str | None = None, client_id: str | None = None) -> Order | None:
        """The order in full from its final update and the fills seen: None unless it is final
        and its fills add up to the venue's cumulative executed volume and funds (a fill missed
        across a reconnect, say): then the order must be read by REST."""
        entry = self._entry(order_id, client_id)
        if entry is None or not entry.latest.state.final:
            return None
        u = entry.latest
        fills = sorted(entry.fills.values(), key=lambda f: f.ts_event)
        volume = sum(f.volume for f in fills)
        funds = sum(f.funds for f in fills)
        if (abs(volume - u.executed_volume) > 1e-9 * max(1.0, u.executed_volume)
                or abs(funds - u.executed_funds) > 1e-6 * max(1.0, u.executed_funds)):
            return None
        return Order(venue=u.venue, order_id=u.order_id, client_id=u.client_id, market=u.market,
                     side=u.side, order_type=u.order_type, price=u.price, volume=u.volume,
                     state=u.state, executed_volume=u.executed_volume,
                     executed_funds=u.executed_funds, paid_fee=u.paid_fee,
                     fills=[Fill(f.trade_id, f.price, f.volume, f.funds) for f in fills])
