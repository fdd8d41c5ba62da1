"""Topic builders: the only place bus topics are spelled.

Topics are ASCII, dotted, and matched by prefix (ZeroMQ SUB). Building them here means a typo
fails loudly at the call site instead of silently subscribing to nothing.
"""

from __future__ import annotations

import re

_PART = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")

HEARTBEAT = b"hb."
PROBE = b"probe."


def _topic(*parts: str) -> bytes:
    for part in parts:
        if not _PART.match(part):
            raise ValueError(f"bad topic part {part!r}")
    return ".".join(parts).encode("ascii")


def heartbeat(actor: str) -> bytes:
    """``hb.<actor>``; actor names may themselves be dotted (``hb.feed.upbit``)."""
    return _topic("hb", actor)


def probe(actor: str) -> bytes:
    return _topic("probe", actor)


def probe_report(actor: str) -> bytes:
    return _topic("probe_report", actor)


def market_data(venue: str, market: str) -> bytes:
    return _topic("md", venue, market)


def trade(venue: str, market: str) -> bytes:
    """``trade.<venue>.<market>``: the venue's public trades (TradeTick), from its feed."""
    return _topic("trade", venue, market)


def top_of_book(venue: str, market: str) -> bytes:
    return _topic("tob", venue, market)


def depth(venue: str, market: str) -> bytes:
    return _topic("depth", venue, market)


def signal(market: str) -> bytes:
    return _topic("sig", market)


def order(venue: str) -> bytes:
    return _topic("ord", venue)


def fill(venue: str) -> bytes:
    return _topic("fill", venue)


def market_state(market: str) -> bytes:
    """``mstate.<market>``: the market-state monitor's verdict (karb.ops.marketstate)."""
    return _topic("mstate", market)


def leg_quality(venue: str, market: str) -> bytes:
    """``xq.<venue>.<market>``: one final leg measured by the execution-quality monitor."""
    return _topic("xq", venue, market)


POSITION = b"pos"
ALERT = b"alert"
MARKET_DATA = b"md."
TRADE = b"trade."
TOP_OF_BOOK = b"tob."
DEPTH = b"depth."
ORDER = b"ord."
FILL = b"fill."
SIGNAL = b"sig."
MARKET_STATE = b"mstate."
LEG_QUALITY = b"xq."
