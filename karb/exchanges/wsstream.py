"""A venue order-book stream that stays up: connect, subscribe to the full list, keep alive,
reconnect when the venue goes silent or away. Public trades, where the protocol subscribes to
them, come through the same connection to ``on_trade``.

- Every (re)connect sends the whole subscription (a new request replaces the old one).
- Keepalive: text ``PING`` every ``ping_interval_s`` (≤ 30 s: the venues close idle sockets
  after 60-120 s).
- Receive deadline: no frame for ``stale_after_ms`` → the connection counts as stalled and is
  replaced.
- Reconnects back off exponentially with jitter from 0.25 s (never faster than 4 connects/s,
  inside both venues' connect limits) to 10 s, and reset after a healthy session.
- A malformed frame is counted and skipped; it never ends the stream.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import aiohttp
import msgspec

from karb.exchanges.types import OrderBook, PublicTrade
from karb.retry import Backoff

log = logging.getLogger(__name__)

BookHandler = Callable[[OrderBook], None]
TradeHandler = Callable[[PublicTrade], None]


class Resync(Exception):
    """The protocol cannot trust its state any more (e.g. deltas no longer add up)."""


@dataclass
class StreamStats:
    connects: int = 0
    frames: int = 0
    books: int = 0
    trades: int = 0
    malformed: int = 0
    stale_reconnects: int = 0
    resyncs: int = 0
    errors: int = 0
    last_error: str = ""


class BookProtocol(ABC):
    """What differs between venues: the subscription and the frame parser."""

    venue: str

    @abstractmethod
    def subscription(self, markets: list[str]) -> list[str]:
        """Text frames to send after each connect, covering every market."""

    async def on_connected(self, markets: list[str], emit: BookHandler) -> None:  # noqa: B027
        """After subscribing (the legacy feed loads REST snapshots here); nothing by default."""

    @abstractmethod
    def parse(self, data: bytes, ts_init: int) -> Sequence[OrderBook | PublicTrade]:
        """Books (and trades, if subscribed) in one frame; [] for frames of other types.
        Raises ValueError or msgspec.DecodeError when malformed, Resync when state cannot be
        trusted."""


class BookStream:
    def __init__(self, protocol: BookProtocol, url: str, markets: list[str], on_book: BookHandler,
                 stale_after_ms: int = 5000, ping_interval_s: float = 20.0,
                 backoff_initial_s: float = 0.25, backoff_max_s: float = 10.0,
                 rng: random.Random | None = None, on_trade: TradeHandler | None = None) -> None:
        self.protocol = protocol
        self.url = url
        self.markets = list(markets)
        self.on_book = on_book
        self.on_trade = on_trade
        self.stale_after_s = stale_after_ms / 1000
        self.ping_interval_s = min(ping_interval_s, 30.0)
        self.backoff_initial_s = max(backoff_initial_s, 0.25)
        self.backoff_max_s = backoff_max_s
        self.stats = StreamStats()
        self.connected = asyncio.Event()
        self.last_recv_mono = 0  # monotonic ns when the frame being handled arrived
        self._rng = rng or random.Random()
        self._session: aiohttp.ClientSession | None = None

    async def run(self) -> None:
        """Run until cancelled (a stream lives as long as its actor: no overall deadline)."""
        # ±20 % around 1.25× the initial delay: never under the initial delay (≥ 0.25 s).
        backoff = Backoff(self.backoff_initial_s * 1.25, self.backoff_max_s * 1.25, None,
                          jitter=0.2, rng=self._rng)
        self._session = aiohttp.ClientSession()
        try:
            while True:
                if await self._one_session():
                    backoff.reset()
                delay = backoff.next_delay()
                log.info("%s stream: reconnecting in %.2f s", self.protocol.venue, delay)
                await asyncio.sleep(delay)
        finally:
            await self._session.close()

    async def _one_session(self) -> bool:
        """One connection; True if it delivered books before it ended."""
        assert self._session is not None
        books_before = self.stats.books
        try:
            async with self._session.ws_connect(self.url, heartbeat=None, autoping=True,
                                                max_msg_size=8 << 20) as ws:
                self.stats.connects += 1
                for frame in self.protocol.subscription(self.markets):
                    await ws.send_str(frame)
                await self.protocol.on_connected(self.markets, self._emit)
                self.connected.set()
                pinger = asyncio.create_task(self._ping(ws))
                try:
                    await self._receive(ws)
                finally:
                    pinger.cancel()
                    self.connected.clear()
        except Resync as exc:
            self.stats.resyncs += 1
            log.warning("%s stream: resync (%s)", self.protocol.venue, exc)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            self.stats.errors += 1
            self.stats.last_error = f"{type(exc).__name__}: {exc}"
            log.warning("%s stream: %s", self.protocol.venue, self.stats.last_error)
        return self.stats.books > books_before

    async def _receive(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        while True:
            try:
                msg = await ws.receive(timeout=self.stale_after_s)
            except TimeoutError:
                self.stats.stale_reconnects += 1
                log.warning("%s stream: no frame for %.1f s, replacing the connection",
                            self.protocol.venue, self.stale_after_s)
                return
            if msg.type in (aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.TEXT):
                self.last_recv_mono = time.monotonic_ns()
                data = msg.data if isinstance(msg.data, bytes) else msg.data.encode()
                self.stats.frames += 1
                try:
                    books = self.protocol.parse(data, time.time_ns())
                except (ValueError, msgspec.DecodeError) as exc:
                    self.stats.malformed += 1
                    log.warning("%s stream: malformed frame skipped (%d so far): %.120s",
                                self.protocol.venue, self.stats.malformed, exc)
                    continue
                for item in books:
                    if isinstance(item, OrderBook):
                        self._emit(item)
                    else:
                        self.stats.trades += 1
                        if self.on_trade is not None:
                            self.on_trade(item)
            elif msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING,
                              aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                log.info("%s stream: closed by the venue (%s)", self.protocol.venue, msg.extra or msg.data)
                return

    def _emit(self, book: OrderBook) -> None:
        self.stats.books += 1
        self.on_book(book)

    async def _ping(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        while True:
            await asyncio.sleep(self.ping_interval_s)
            await ws.send_str("PING")
