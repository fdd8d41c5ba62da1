"""Public trades: frames of both venues, the subscription, repeats, the monitor's volume profile
and vwap's weights from it, the simulator's SIMPLE keys, the tap's line."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import msgspec
import pytest

from karb import messages, topics
from karb.actors.feed import TradeDedup
from karb.config import VenueConfig
from karb.exchanges.bithumb.legacy import LegacyBookProtocol
from karb.exchanges.bithumb.ws import BithumbBookProtocol
from karb.exchanges.registry import book_protocol, trades_supported
from karb.exchanges.types import PublicTrade
from karb.exchanges.upbit.ws import UpbitBookProtocol
from karb.exchanges.v1api.ws import parse_orderbook, parse_public
from karb.execution.algos import AlgoOrder, MarketView, Progress
from karb.execution.algos.optimizer import AlgoOptimizer, size_basis
from karb.execution.algos.schedules import Child, Vwap, profile_weights
from karb.messages import MarketStateUpdate, TradeTick
from karb.ops.volume import TradeVolumes, VolumeProfile
from karb.sim import frames

DATA = Path(__file__).resolve().parents[1] / "data"


def load_tap() -> ModuleType:
    """tools/tap.py is a script, not a package module (mypy would see it twice otherwise)."""
    spec = importlib.util.spec_from_file_location(
        "tap_script", Path(__file__).resolve().parents[2] / "tools" / "tap.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_upbit_default_trade_frame() -> None:
    t = parse_public((DATA / "upbit_ws_trade_default.json").read_bytes(), "upbit", 7)
    assert isinstance(t, PublicTrade)
    assert (t.venue, t.market, t.price, t.volume, t.side) == ("upbit", "KRW-BTC", 148520000.0,
                                                              0.00269231, "buy")
    assert t.seq == 17516068679900000 and t.ts_event == 1751606867990 * 1_000_000
    assert t.ts_init == 7 and not t.snapshot


def test_upbit_simple_trade_frame_is_a_snapshot_sell() -> None:
    t = parse_public((DATA / "upbit_ws_trade_simple.json").read_bytes(), "upbit", 0)
    assert isinstance(t, PublicTrade)
    assert (t.market, t.price, t.volume, t.side, t.snapshot) == ("KRW-ETH", 5001000.0, 1.5,
                                                                 "sell", True)


def test_bithumb_trade_frame_and_books_parser_ignores_trades() -> None:
    data = (DATA / "bithumb_ws_trade_simple.json").read_bytes()
    t = parse_public(data, "bithumb", 0)
    assert isinstance(t, PublicTrade) and t.venue == "bithumb" and t.side == "sell"
    assert t.ts_event == 1751606867990 * 1_000_000
    assert parse_orderbook(data, "bithumb", 0) is None  # a book-only caller skips trades
    # key order the fast path does not expect still parses (the peek)
    reordered = json.dumps({"cd": "KRW-XRP", "ty": "trade", "tp": 1, "tv": 2, "ab": "BID",
                            "ttms": 1751606867990123, "sid": 9}).encode()
    t2 = parse_public(reordered, "bithumb", 0)
    assert isinstance(t2, PublicTrade) and t2.ts_event == 1751606867990123 * 1000  # μs too


@pytest.mark.parametrize("bad", [
    b'{"type":"trade","code":',  # cut short
    b'{"type":"trade","code":"KRW-BTC","trade_price":1,"trade_volume":1,"ask_bid":"X",'
    b'"trade_timestamp":1,"sequential_id":1}',  # unknown side
    b'{"ty":"trade","cd":"KRW-BTC","tp":1,"tv":0,"ab":"BID","ttms":1,"sid":1}',  # no volume
    b'{"ty":"trade","cd":"KRW-BTC","tp":1,"tv":1,"ab":"BID","ttms":1}',  # no sequential_id
])
def test_malformed_trade_frames_raise(bad: bytes) -> None:
    with pytest.raises((ValueError, msgspec.DecodeError)):
        parse_public(bad, "upbit", 0)


def test_trades_are_one_more_type_in_the_same_request() -> None:
    (up,) = UpbitBookProtocol(depth=15, trades=True).subscription(["KRW-BTC", "KRW-ETH"])
    req = json.loads(up)
    assert [i.get("type") for i in req] == [None, "orderbook", "trade", None]
    assert req[1]["codes"] == ["KRW-BTC.15", "KRW-ETH.15"]
    assert req[2]["codes"] == ["KRW-BTC", "KRW-ETH"]  # no depth suffix on trades
    (bt,) = BithumbBookProtocol(trades=True).subscription(["KRW-BTC"])
    assert json.loads(bt)[2] == {"type": "trade", "codes": ["KRW-BTC"], "isOnlySnapshot": False,
                                 "isOnlyRealtime": False}
    (plain,) = UpbitBookProtocol().subscription(["KRW-BTC"])
    assert [i.get("type") for i in json.loads(plain)] == [None, "orderbook", None]


def test_bithumb_legacy_streams_books_only() -> None:
    legacy = VenueConfig(name="bithumb", api="legacy")
    assert not trades_supported(legacy)
    assert isinstance(book_protocol(legacy, trades=True), LegacyBookProtocol)
    assert trades_supported(VenueConfig(name="bithumb")) and trades_supported(VenueConfig(name="upbit"))


def test_repeated_sequential_ids_are_dropped_and_the_memory_is_bounded() -> None:
    d = TradeDedup(keep=3)
    assert [d.fresh(i) for i in (5, 3, 5, 4, 3)] == [True, True, False, True, False]
    assert d.fresh(6) and d.fresh(5)  # 5 fell out of the last three: counted again
    assert len(d.ids) == 3


def tick(market: str, volume: float, venue: str = "upbit", snapshot: bool = False,
         sid: int = 0) -> TradeTick:
    return TradeTick(venue=venue, market=market, price=100.0, volume=volume, side="buy",
                     sequential_id=sid, snapshot=snapshot)


def test_volume_profile_buckets_both_venues_and_skips_snapshots() -> None:
    vols = TradeVolumes(["KRW-BTC", "KRW-ETH"], bucket_s=5.0, buckets=4, start_s=100.0)
    assert vols.on_trade(tick("KRW-BTC", 1.0), 101.0)
    assert vols.on_trade(tick("KRW-BTC", 2.0, venue="bithumb"), 104.9)  # both venues summed
    assert not vols.on_trade(tick("KRW-BTC", 50.0, snapshot=True), 104.9)
    assert not vols.on_trade(tick("KRW-DOGE", 1.0), 104.9)  # not watched
    assert vols.figures("KRW-BTC", 104.9).profile == ()  # the first bucket is still filling
    vols.on_trade(tick("KRW-BTC", 0.5), 106.0)
    f = vols.figures("KRW-BTC", 111.0)  # 105-110 closed: [3.0, 0.5]
    assert f.profile == (3.0, 0.5) and f.recent_volume == 3.5 and f.trades == 3
    assert vols.figures("KRW-ETH", 111.0).profile == (0.0, 0.0)  # silence counts as 0
    # a long silence: only the last `buckets` remain, all empty
    f = vols.figures("KRW-BTC", 200.0)
    assert f.profile == (0.0,) * 4 and f.recent_volume == 0.0 and f.trades == 0
    assert vols.counted == 3


def test_volume_profile_rejects_a_bad_shape() -> None:
    with pytest.raises(ValueError):
        VolumeProfile(0.0, 4, 0.0)


def test_vwap_slices_follow_the_monitors_profile() -> None:
    vols = TradeVolumes(["KRW-BTC"], bucket_s=5.0, buckets=12, start_s=0.0)
    for i in range(4):  # four buckets: 1, 3, 0, 4 coins
        for v in ([1.0], [1.0, 2.0], [], [4.0])[i]:
            vols.on_trade(tick("KRW-BTC", v), i * 5.0 + 1.0)
    f = vols.figures("KRW-BTC", 20.0)
    msg = MarketStateUpdate(market="KRW-BTC", state="normal", volatility_bps=0, trend_bps=0,
                            efficiency=0, range_bps=0, spread_bps=0, depth_krw=0, samples=10,
                            volume_profile=f.profile, recent_volume=f.recent_volume,
                            trades=f.trades)
    got = messages.decode(messages.encode(msg))  # over the bus
    assert isinstance(got, MarketStateUpdate) and got.recent_volume == 8.0
    assert profile_weights(tuple(got.volume_profile), 4) == [1.0, 3.0, 0.0, 4.0]
    assert profile_weights(tuple(got.volume_profile), 5) == [1.0] * 5  # too short: even
    order = AlgoOrder("upbit", "KRW-BTC", "buy", 8.0, 200.0, horizon_s=20.0, slices=4)
    view = MarketView(99.0, 100.0, volume_profile=tuple(got.volume_profile))
    first = Vwap().next(order, Progress(started_s=0.0), 0.0, view)
    assert isinstance(first, Child) and first.volume == pytest.approx(1.0)  # 1/8 of 8
    second = Vwap().next(order, Progress(started_s=0.0, filled=1.0, children=1), 5.0, view)
    assert isinstance(second, Child) and second.volume == pytest.approx(3.0)


def test_simulator_trade_frames_use_the_trade_tables_simple_keys() -> None:
    out = frames.simple({"type": "trade", "trade_date": "2025-07-04", "trade_volume": 1.0})
    assert out == {"ty": "trade", "td": "2025-07-04", "tv": 1.0}
    assert frames.simple({"type": "ticker", "trade_date": "20250704"})["tdt"] == "20250704"


def test_tap_prints_one_readable_line_per_trade() -> None:
    t = TradeTick(venue="upbit", market="KRW-BTC", price=148520000.0, volume=0.0027, side="sell",
                  sequential_id=42, src="feed.upbit", seq=7, ts_event=1_000_000_000,
                  ts_init=1_012_000_000)
    got = messages.decode(messages.encode(t))
    assert isinstance(got, TradeTick) and got.sequential_id == 42 and got.seq == 7
    tap = load_tap()
    line = tap.format_line(topics.trade("upbit", "KRW-BTC").decode(), got)
    assert "trade.upbit.KRW-BTC" in line and "sell 0.0027 @ 148,520,000 #42 venue+12ms" in line
    assert "\n" not in line
    assert tap.message_fields(got)["type"] == "trade"


def test_auto_weighs_size_against_the_monitors_recent_volume_depth_before() -> None:
    opt = AlgoOptimizer()
    before = size_basis(0.0, (), top_depth=10.0, slices=4)  # no monitor figures yet
    assert (before.recent_volume, before.source, before.has_profile) == (10.0, "depth", False)
    assert opt.choose("normal", 5.0, before.recent_volume, 0.3, before.has_profile).algo == "twap"
    profile = (10.0, 30.0, 0.0, 60.0)
    basis = size_basis(100.0, profile, top_depth=10.0, slices=4)
    assert (basis.recent_volume, basis.source, basis.has_profile) == (100.0, "trades", True)
    # 5 of 100 traded: between small and large → twap; 30 of 100 → vwap along the profile
    assert opt.choose("normal", 5.0, basis.recent_volume, 0.3, basis.has_profile).algo == "twap"
    assert opt.choose("normal", 30.0, basis.recent_volume, 0.3, basis.has_profile).algo == "vwap"
    short = size_basis(100.0, profile, top_depth=10.0, slices=12)  # profile shorter than slices
    assert short.has_profile is False
