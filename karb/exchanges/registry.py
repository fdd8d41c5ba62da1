"""Build a venue's REST client and order-book stream from its config."""

from __future__ import annotations

from karb.config import Config, VenueConfig
from karb.exchanges.bithumb.legacy import LegacyBookProtocol
from karb.exchanges.bithumb.rest import BithumbClient
from karb.exchanges.bithumb.ws import BithumbBookProtocol
from karb.exchanges.client import VenueClient
from karb.exchanges.credentials import resolve
from karb.exchanges.upbit.rest import UpbitClient
from karb.exchanges.upbit.ws import UpbitBookProtocol
from karb.exchanges.wsstream import BookHandler, BookProtocol, BookStream, TradeHandler


def make_client(config: Config, venue: VenueConfig, with_keys: bool = True) -> VenueClient:
    creds = resolve(config, venue) if with_keys else None
    cls = UpbitClient if venue.name == "upbit" else BithumbClient
    return cls(venue.rest_url, creds, venue.request_timeout_ms, venue.order_timeout_ms)


def book_protocol(venue: VenueConfig, depth: int = 30, trades: bool = False) -> BookProtocol:
    """The venue's public stream; ``trades`` adds the public trade type to its subscription
    (Bithumb's legacy pubwss feed has none we use: its ``transaction`` prints carry no trade
    id to deduplicate by, so it streams books only)."""
    if venue.name == "upbit":
        return UpbitBookProtocol(depth=depth, trades=trades)
    if venue.api == "legacy":
        return LegacyBookProtocol(venue.rest_url)
    return BithumbBookProtocol(trades=trades)


def trades_supported(venue: VenueConfig) -> bool:
    return venue.name == "upbit" or venue.api != "legacy"


def make_book_stream(venue: VenueConfig, markets: list[str], on_book: BookHandler,
                     depth: int = 30, on_trade: TradeHandler | None = None) -> BookStream:
    return BookStream(book_protocol(venue, depth, trades=on_trade is not None), venue.ws_url,
                      markets, on_book, stale_after_ms=venue.stale_after_ms, on_trade=on_trade)
