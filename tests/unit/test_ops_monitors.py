"""The market-state classifier's rules and the execution-quality tracker, as pure functions."""

from __future__ import annotations

import math

from karb.messages import OrderEvent, Signal
from karb.ops.execquality import ExecQualityTracker
from karb.ops.marketstate import (
    MarketState,
    MarketStateRules,
    Sample,
    Window,
    classify,
    sample,
)

RULES = MarketStateRules(min_samples=10)
DEEP = 50_000_000.0


def series(mids: list[float], spread_bps: float = 2.0, depth: float = DEEP) -> list[Sample]:
    return [Sample(m, spread_bps, depth) for m in mids]


def test_too_few_samples_is_normal() -> None:
    v = classify(series([100.0, 130.0, 70.0]), RULES)
    assert v.state is MarketState.NORMAL and v.samples == 3


def test_wide_spread_or_thin_book_is_illiquid_first() -> None:
    wild = [100.0 * (1.01 if i % 2 else 0.99) for i in range(30)]  # volatile too
    assert classify(series(wild, spread_bps=40.0), RULES).state is MarketState.ILLIQUID
    flat = [100.0] * 30
    assert classify(series(flat, depth=50_000.0), RULES).state is MarketState.ILLIQUID


def test_large_return_dispersion_is_volatile() -> None:
    mids = [100.0 * (1 + 0.002 * math.sin(i * 1.7)) for i in range(40)]  # ~20 bps swings
    v = classify(series(mids), RULES)
    assert v.state is MarketState.VOLATILE and v.volatility_bps >= RULES.volatile_bps


def test_steady_efficient_move_is_trending() -> None:
    mids = [100.0 * (1 + 0.0002 * i) for i in range(40)]  # +2 bps a sample, ~78 bps in all
    v = classify(series(mids), RULES)
    assert v.state is MarketState.TRENDING
    assert v.trend_bps > RULES.trend_bps and v.efficiency > 0.99


def test_back_and_forth_in_a_band_is_ranging() -> None:
    mids = [100.0 * (1 + 0.0003 * (1 if i % 2 else -1)) for i in range(40)]  # ±3 bps
    v = classify(series(mids), RULES)
    assert v.state is MarketState.RANGING and v.efficiency <= RULES.ranging_efficiency


def test_a_moderate_wandering_market_is_normal() -> None:
    # Drifts 20 bps (under trend_bps) with pullbacks: neither trending nor ranging.
    steps = [3, -1] * 10
    mids = [100.0]
    for s in steps:
        mids.append(mids[-1] * (1 + s / 1e4))
    v = classify(series(mids), RULES)
    assert v.state is MarketState.NORMAL, v


def test_sample_combines_venues_and_window_is_bounded() -> None:
    s = sample([(100.0, 2.0, 101.0, 1.0), (100.5, 5.0, 100.7, 5.0), (0.0, 0.0, 0.0, 0.0)])
    assert s is not None
    assert abs(s.mid - (100.5 + 100.6) / 2) < 1e-9
    assert abs(s.spread_bps - 1 / 100.5 * 1e4) < 1e-6  # the worse venue
    assert s.depth_krw == 101.0  # the thinnest side of the thinnest venue
    assert sample([(0.0, 0.0, 0.0, 0.0)]) is None
    w = Window(MarketStateRules(window_s=5, sample_ms=1000))
    for i in range(20):
        w.add(Sample(100.0 + i, 1.0, DEEP))
    assert len(w.samples) == 5


def _ord(state: str, role: str = "buy", side: str = "buy", **kw: float | str) -> OrderEvent:
    base: dict = {"intent_id": "i1", "role": role, "venue": "upbit", "market": "KRW-BTC", "side": side,
                      "client_id": f"i1-{role}", "order_id": "o", "state": state, "price": 101.0, "volume": 2.0}
    base.update(kw)
    return OrderEvent(**base)


def test_leg_quality_against_the_signal() -> None:
    t = ExecQualityTracker()
    t.on_signal(Signal(market="KRW-BTC", buy_venue="upbit", sell_venue="bithumb", best_ask=100.0,
                       best_bid=103.0, gross_bps=0, net_bps=0, volume=2.0, buy_limit=101.0,
                       sell_limit=102.0, expected_pnl_krw=0, decision="sent", intent_id="i1"))
    assert t.on_order(_ord("PENDING"), 0) is None
    assert t.on_order(_ord("SENT", sent_mono=1_000_000_000), 0) is None
    q = t.on_order(_ord("DONE", executed_volume=1.0, executed_funds=100.5), 1_250_000_000)
    assert q is not None
    assert abs(q.slippage_bps - 50.0) < 1e-6  # paid 100.5 against an ask of 100
    assert q.fill_ratio == 0.5 and abs(q.latency_s - 0.25) < 1e-9 and q.reference_px == 100.0
    assert t.on_order(_ord("DONE", executed_volume=1.0, executed_funds=100.5), 2) is None  # once
    # A hedge sell below the signal's bid costs the difference plus its fee; an unknown new
    # state is simply not final.
    assert t.on_order(_ord("UNKNOWN", role="hedge", side="sell"), 0) is None
    h = t.on_order(_ord("DONE", role="hedge", side="sell", executed_volume=1.0,
                        executed_funds=102.0, fee=0.05), 0)
    assert h is not None and h.latency_s == -1.0
    assert abs(h.slippage_bps - (1.0 / 103.0 * 1e4)) < 1e-3
    assert abs(h.hedge_cost_krw - 1.05) < 1e-9
