from __future__ import annotations

import asyncio
import logging
import pickle
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest

from karb.exchanges.bithumb.legacy import LegacyBookProtocol
from karb.exchanges.ticks import floor_lot, floor_lot_decimal
from karb.exchanges.credentials import Credentials, Secret
from karb.exchanges.errors import (
    AuthError,
    InsufficientFunds,
    InvalidOrder,
    OrderNotFound,
    RateLimited,
    VenueUnavailable,
    classify,
)
from karb.exchanges.ratelimit import RateLimiter
from karb.exchanges.ticks import format_decimal, round_price
from karb.exchanges.v1api.ws import parse_orderbook
from karb.exchanges.wsstream import Resync

DATA = Path(__file__).resolve().parents[1] / "data"


def test_upbit_default_frame_drops_padding_and_reads_exponents() -> None:
    book = parse_orderbook((DATA / "upbit_ws_orderbook_default.json").read_bytes(), "upbit", 5)
    assert book is not None and book.market == "KRW-BTC"
    assert book.bids == [(148490000.0, 0.04296774), (148480000.0, 0.2)]  # zero padding dropped
    assert book.asks[2] == (148540000.0, 0.5)  # 1.4854E8
    assert book.ts_event == 1751606867762 * 1_000_000 and book.ts_init == 5


def test_upbit_simple_frame() -> None:
    book = parse_orderbook((DATA / "upbit_ws_orderbook_simple.json").read_bytes(), "upbit", 0)
    assert book is not None and book.market == "KRW-ETH"
    assert book.bids == [(5000000.0, 2.5)] and book.asks == [(5001000.0, 1.5)]


def test_bithumb_microseconds_and_zero_size_levels() -> None:
    book = parse_orderbook((DATA / "bithumb_ws_orderbook_us.json").read_bytes(), "bithumb", 0)
    assert book is not None
    assert book.ts_event == 1751606867762123 * 1000
    assert book.bids == [(2999.0, 5.0)] and book.asks == [(3001.0, 10.0)]


def test_malformed_and_foreign_frames() -> None:
    assert parse_orderbook(b'{"status":"UP"}', "upbit", 0) is None
    for bad in (b'{"type":"orderbook","code":', b"garbage", b'{"error":{"name":"WRONG_FORMAT"}}',
                b'{"type":"orderbook","code":"KRW-BTC","timestamp":"x","orderbook_units":[]}'):
        with pytest.raises((ValueError, msgspec.DecodeError)):
            parse_orderbook(bad, "upbit", 0)


def test_legacy_deltas_resync_when_they_stop_adding_up() -> None:
    proto = LegacyBookProtocol("http://unused")
    proto.books["KRW-BTC"] = {"bid": {100.0: 1.0}, "ask": {101.0: 1.0}}
    proto.snapshot_us["KRW-BTC"] = 1000
    ok = (b'{"type":"orderbookdepth","content":{"list":[{"symbol":"BTC_KRW","orderType":"bid",'
          b'"price":"100","quantity":"0"},{"symbol":"BTC_KRW","orderType":"bid","price":"99",'
          b'"quantity":"2"}],"datetime":2000}}')
    (book,) = proto.parse(ok, 0)
    assert book.bids == [(99.0, 2.0)] and book.asks == [(101.0, 1.0)]
    old = ok.replace(b'"99"', b'"98"').replace(b"2000", b"500")
    assert proto.parse(old, 0) == []  # older than the snapshot: already in it
    crossing = (b'{"type":"orderbookdepth","content":{"list":[{"symbol":"BTC_KRW","orderType":'
                b'"bid","price":"102","quantity":"1"}],"datetime":3000}}')
    with pytest.raises(Resync):
        proto.parse(crossing, 0)


def test_rounding_to_tick_and_lot() -> None:
    assert round_price(148_523_456, "bid") == Decimal(148_523_000)
    assert round_price(148_523_456, "ask") == Decimal(148_524_000)
    assert floor_lot_decimal(0.123456789) == Decimal("0.12345678")
    assert floor_lot(0.3) == 0.3 and floor_lot(0.29999999999) == 0.29999999  # never up past a cap
    assert floor_lot(-1.0) == 0.0
    assert format_decimal(Decimal("1E+3")) == "1000" and format_decimal(1e-8) == "0.00000001"


def test_error_classification() -> None:
    assert isinstance(classify("upbit", 401, "jwt_verification", ""), AuthError)
    assert isinstance(classify("upbit", 400, "insufficient_funds_bid", ""), InsufficientFunds)
    assert isinstance(classify("upbit", 404, "order_not_found", ""), OrderNotFound)
    assert isinstance(classify("upbit", 429, "x", ""), RateLimited)
    assert isinstance(classify("upbit", 503, "x", ""), VenueUnavailable)
    assert isinstance(classify("bithumb", 400, "invalid_price_bid", ""), InvalidOrder)
    err = classify("upbit", 400, "under_min_total_bid", "최소주문금액")
    assert (err.venue, err.name, err.message, err.status) == ("upbit", "under_min_total_bid", "최소주문금액", 400)


async def test_limiter_bursts_within_the_venue_window_and_obeys_headers() -> None:
    limiter = RateLimiter({"g": 10})
    loop = asyncio.get_running_loop()
    start = loop.time()
    for _ in range(5):  # half the limit goes at once: a burst of orders is not held back
        await limiter.acquire("g")
    assert loop.time() - start < 0.05
    for _ in range(5):  # the rest refills at 5/s: never more than 10 in any second
        await limiter.acquire("g")
    assert loop.time() - start >= 0.9
    limiter.observe("g", {"Remaining-Req": "group=g; min=100; sec=0"})
    assert limiter.buckets["g"].tokens == 0
    assert limiter.on_429("g") == 0.5 and limiter.on_429("g") == 1.0  # doubling pause
    limiter.observe("g", {})
    assert limiter.buckets["g"].pause_s == 0.0


def test_secrets_never_print(caplog: pytest.LogCaptureFixture) -> None:
    secret = Secret("do-not-print-me")
    creds = Credentials(Secret("ak-hidden"), secret)
    logging.getLogger("t").warning("creds %s %r %s", creds, secret, f"{secret}")
    text = caplog.text + repr(creds) + str(secret) + repr([secret])
    assert "do-not-print-me" not in text and "ak-hidden" not in text
    with pytest.raises(TypeError):
        pickle.dumps(secret)
