"""``--data RECORDING``: a backtest on recorded books instead of the synthetic market.

A recording (``karb/recording.py``; the ``recorder`` actor writes one) holds the feeds'
normalised books, ``md.<venue>.<market>`` (:class:`~karb.messages.BookUpdate`), each with the
wall time it was received. :class:`ReplayMarket` stands where the market model stands: at each
step it applies every book received up to that time, and the matching engine fills our orders
against the book in force (what our own order took stays taken until the venue's next book).
There are no competitors and no synthetic outages: the recording already is what happened —
except our own orders' effect on others, which a replay cannot know.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from karb.messages import BookUpdate
from karb.recording import read_messages
from karb.sim.market import Book, MarketModel, Trade


@dataclass
class _Slot:
    book: Book


def first_book_ns(path: Path) -> int:
    """When the recording's first book was received (wall ns); ValueError if it has none."""
    for recv_ns, _, msg in read_messages(path):
        if isinstance(msg, BookUpdate):
            return recv_ns
    raise ValueError(f"{path}: no recorded books (md.*) to replay")


class ReplayMarket(MarketModel):
    """The recorded books, stepped by time. Only what the backtest and the engine read."""

    def __init__(self, path: Path, markets: list[str], venues: list[str], now_ms: int) -> None:
        # Not MarketModel.__init__: nothing here is drawn.
        self.markets = list(markets)
        self.venues = venues
        self.now_ms = now_ms
        self.competitors = None
        self.state = {(v, m): _Slot(Book(m, [], [], now_ms)) for v in venues for m in markets}  # type: ignore[misc]
        self.fair: dict[str, float] = {}
        self.built = self.skipped = 0
        self.books_read = 0
        self._records: Iterator[tuple[int, bytes, object]] = iter(read_messages(path))
        self._next: tuple[int, BookUpdate] | None = None
        self._advance()

    def _advance(self) -> None:
        for recv_ns, _, msg in self._records:
            if isinstance(msg, BookUpdate) and (msg.venue, msg.market) in self.state:
                self._next = (recv_ns, msg)
                return
        self._next = None

    @property
    def exhausted(self) -> bool:
        return self._next is None

    def step(self, now_ms: int) -> list[tuple[str, str]]:
        self.now_ms = now_ms
        changed: dict[tuple[str, str], None] = {}
        while self._next is not None and self._next[0] // 1_000_000 <= now_ms:
            recv_ns, msg = self._next
            key = (msg.venue, msg.market)
            self.state[key].book = Book(msg.market, [[p, q] for p, q in msg.bids],
                                        [[p, q] for p, q in msg.asks], recv_ns // 1_000_000)
            changed[key] = None
            self.books_read += 1
            if msg.bids and msg.asks:
                self.fair[msg.market] = (msg.bids[0][0] + msg.asks[0][0]) / 2
            self._advance()
        self.built += len(changed)
        return list(changed)

    def book(self, venue: str, market: str) -> Book:
        return self.state[(venue, market)].book

    def book_at(self, venue: str, market: str, now_ms: int) -> Book:
        return self.state[(venue, market)].book

    def record_trade(self, venue: str, market: str, price: float, volume: float, side: str) -> Trade:
        return Trade(price, volume, side, self.now_ms, 0)  # the recording has its own trades
