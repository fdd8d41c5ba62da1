"""The backtest report on a scripted two-day run whose numbers are known by hand."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from karb.backtest.report import PLOTS, per_day, per_market_direction, write_report
from karb.backtest.results import (
    DAY_NS,
    BacktestResults,
    BalancePoint,
    FillRecord,
    HaltRecord,
    IntentRecord,
    LegRecord,
    SignalRecord,
)

T0 = 1_767_225_600 * 10**9
S = 10**9
FEES = {"upbit": 0.0005, "bithumb": 0.0004}
START = {"upbit": {"KRW": 50_000_000.0, "BTC": 1.0, "XRP": 16_000.0},
         "bithumb": {"KRW": 50_000_000.0, "BTC": 1.0, "XRP": 16_000.0}}
REQUIRED = ["simulated_days", "wall_s", "speedup", "markets", "intents", "round_trips",
            "order_success_rate", "pnl_krw", "fees_krw", "max_drawdown_krw", "max_drawdown_pct",
            "sharpe_daily", "hedges", "hedge_cost_krw", "halts", "min_balance_krw",
            "negative_balance_events", "inventory_blocked_s", "crashes"]


def fill(intent: str, role: str, ts: int, venue: str, market: str, side: str, price: float,
         volume: float) -> FillRecord:
    return FillRecord(intent_id=intent, role=role, ts_ns=ts, venue=venue, market=market,  # type: ignore[arg-type]
                      side=side, price=price, volume=volume,  # type: ignore[arg-type]
                      fee_krw=price * volume * FEES[venue])


def scripted() -> BacktestResults:
    """Day 1: a BTC round trip that pays; an XRP trade whose sell leg fails and is hedged on
    Upbit at a worse price. Day 2: a BTC round trip that loses; an intent risk refused."""
    intents = [
        IntentRecord(intent_id="a", ts_ns=T0 + 3600 * S, market="KRW-BTC", buy_venue="upbit",
                     sell_venue="bithumb", volume=0.01, buy_limit=100_000_000.0,
                     sell_limit=100_500_000.0, net_bps=41.0, accepted=True),
        IntentRecord(intent_id="b", ts_ns=T0 + 7200 * S, market="KRW-XRP", buy_venue="bithumb",
                     sell_venue="upbit", volume=1000.0, buy_limit=3000.0, sell_limit=3020.0,
                     net_bps=57.0, accepted=True),
        IntentRecord(intent_id="c", ts_ns=T0 + DAY_NS + 3600 * S, market="KRW-BTC",
                     buy_venue="bithumb", sell_venue="upbit", volume=0.02,
                     buy_limit=100_200_000.0, sell_limit=100_300_000.0, net_bps=1.0,
                     accepted=True),
        IntentRecord(intent_id="d", ts_ns=T0 + DAY_NS + 7200 * S, market="KRW-BTC",
                     buy_venue="upbit", sell_venue="bithumb", volume=0.02, buy_limit=1.0,
                     sell_limit=2.0, net_bps=12.0, accepted=False),
    ]
    legs = [
        LegRecord(intent_id="a", role="buy", venue="upbit", market="KRW-BTC", side="bid",
                  volume=0.01, executed_volume=0.01, sent_ns=T0 + 3600 * S, latency_ms=8.0),
        LegRecord(intent_id="a", role="sell", venue="bithumb", market="KRW-BTC", side="ask",
                  volume=0.01, executed_volume=0.01, sent_ns=T0 + 3600 * S, latency_ms=9.0),
        LegRecord(intent_id="b", role="buy", venue="bithumb", market="KRW-XRP", side="bid",
                  volume=1000.0, executed_volume=1000.0, sent_ns=T0 + 7200 * S, latency_ms=30.0),
        LegRecord(intent_id="b", role="sell", venue="upbit", market="KRW-XRP", side="ask",
                  volume=1000.0, executed_volume=0.0, sent_ns=T0 + 7200 * S, latency_ms=80.0),
        LegRecord(intent_id="b", role="hedge", venue="upbit", market="KRW-XRP", side="ask",
                  volume=1000.0, executed_volume=1000.0, sent_ns=T0 + 7201 * S, latency_ms=10.0),
        LegRecord(intent_id="c", role="buy", venue="bithumb", market="KRW-BTC", side="bid",
                  volume=0.02, executed_volume=0.02, sent_ns=T0 + DAY_NS + 3600 * S, latency_ms=12.0),
        LegRecord(intent_id="c", role="sell", venue="upbit", market="KRW-BTC", side="ask",
                  volume=0.02, executed_volume=0.02, sent_ns=T0 + DAY_NS + 3600 * S, latency_ms=15.0),
    ]
    fills = [
        fill("a", "buy", T0 + 3600 * S, "upbit", "KRW-BTC", "bid", 100_000_000.0, 0.01),
        fill("a", "sell", T0 + 3600 * S + 1, "bithumb", "KRW-BTC", "ask", 100_500_000.0, 0.01),
        fill("b", "buy", T0 + 7200 * S, "bithumb", "KRW-XRP", "bid", 3000.0, 1000.0),
        fill("b", "hedge", T0 + 7201 * S, "upbit", "KRW-XRP", "ask", 2990.0, 1000.0),
        fill("c", "buy", T0 + DAY_NS + 3600 * S, "bithumb", "KRW-BTC", "bid", 100_200_000.0, 0.02),
        fill("c", "sell", T0 + DAY_NS + 3600 * S + 1, "upbit", "KRW-BTC", "ask", 100_180_000.0, 0.02),
    ]
    balances = [BalancePoint(ts_ns=T0, balances=copy.deepcopy(START))]
    book = copy.deepcopy(START)
    for f in fills:  # the venues' accounts, moved by each fill (fees paid in KRW)
        coin = f.market.split("-")[1]
        sign = 1 if f.side == "bid" else -1
        book[f.venue][coin] += sign * f.volume
        book[f.venue]["KRW"] -= sign * f.price * f.volume + f.fee_krw
        balances.append(BalancePoint(ts_ns=f.ts_ns, balances=copy.deepcopy(book)))
    signals = [
        SignalRecord(ts_ns=T0 + 100 * S, market="KRW-XRP", buy_venue="upbit", sell_venue="bithumb",
                     gross_bps=15.0, net_bps=6.0, decision="below_min_order", inventory_blocked=True),
        SignalRecord(ts_ns=T0 + 100 * S + S // 2, market="KRW-XRP", buy_venue="upbit",
                     sell_venue="bithumb", gross_bps=14.0, net_bps=5.0, decision="sent"),
        SignalRecord(ts_ns=T0 + 200 * S, market="KRW-BTC", buy_venue="bithumb", sell_venue="upbit",
                     gross_bps=4.0, net_bps=-5.0, decision="below_min", inventory_blocked=True),
        SignalRecord(ts_ns=T0 + 300 * S, market="KRW-BTC", buy_venue="upbit", sell_venue="bithumb",
                     gross_bps=50.0, net_bps=41.0, decision="sent"),
    ]
    return BacktestResults(
        started_ns=T0, ended_ns=T0 + 2 * DAY_NS, wall_s=120.0, markets=["KRW-BTC", "KRW-XRP"],
        fee_bps={v: f * 1e4 for v, f in FEES.items()},
        start_equity_krw=2 * (50_000_000 + 100_000_000 + 16_000 * 3000), intents=intents,
        legs=legs, fills=fills, signals=signals, balances=balances,
        halts=[HaltRecord(ts_ns=T0 + 7201 * S, market="KRW-XRP", reason="test")],
        final_marks={"KRW-BTC": 100_100_000.0, "KRW-XRP": 3000.0}, crashes=0)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[BacktestResults, Path, dict[str, Any]]:
    """Written once: drawing the plots is most of this file's time."""
    res, out = scripted(), tmp_path_factory.mktemp("report")
    summary = write_report(res, out, title="scripted",
                           command="python -m karb.backtest configs/backtest.yaml")
    return res, out, summary


def test_the_summary_is_internally_consistent_and_matches_the_hand_numbers(
        report: tuple[BacktestResults, Path, dict[str, Any]]) -> None:
    res, tmp_path, summary = report
    assert set(REQUIRED) <= summary.keys()
    # By hand: fills (sells - buys) and fees.
    gross = (1_005_000 - 1_000_000) + (2_990_000 - 3_000_000) + (2_003_600 - 2_004_000)
    fees = (1_000_000 * 0.0005 + 1_005_000 * 0.0004 + 3_000_000 * 0.0004 + 2_990_000 * 0.0005
            + 2_004_000 * 0.0004 + 2_003_600 * 0.0005)
    assert summary["gross_krw"] == pytest.approx(gross)
    assert summary["fees_krw"] == pytest.approx(fees)
    assert summary["leftover_value_krw"] == pytest.approx(0.0)  # every coin bought was sold
    assert summary["pnl_krw"] == pytest.approx(gross - fees)  # PnL = fills - fees
    # The accounts agree: KRW moved by exactly the PnL, coins came back to where they started.
    first, last = res.balances[0].balances, res.balances[-1].balances
    krw_change = sum(last[v]["KRW"] - first[v]["KRW"] for v in first)
    assert krw_change == pytest.approx(summary["pnl_krw"])
    assert all(sum(last[v][c] for v in last) == pytest.approx(sum(first[v][c] for v in first))
               for c in ("BTC", "XRP"))
    assert summary["min_balance_krw"] == pytest.approx(
        min(p.balances[v]["KRW"] for p in res.balances for v in p.balances))
    assert summary["negative_balance_events"] == 0
    # Success from the legs: five of six buy/sell legs filled in full; a and c round trips.
    assert summary["intents"] == 3 and summary["round_trips"] == 2
    assert summary["order_success_rate"] == pytest.approx(5 / 6, abs=1e-4)
    assert summary["hedges"] == 1 and summary["halts"] == 1 and summary["crashes"] == 0
    assert summary["hedge_cost_krw"] == pytest.approx((3020 - 2990) * 1000 + 2_990_000 * 0.0005)
    assert summary["inventory_blocked_s"] == pytest.approx(0.5 + 1.0)  # the second is capped
    assert summary["simulated_days"] == 2 and summary["speedup"] == pytest.approx(1440.0)
    # Drawdown: the peak is after intent a; the XRP hedge and the day-2 loss take it down.
    peak = 5000 - 1_000_000 * 0.0005 - 1_005_000 * 0.0004
    assert summary["max_drawdown_krw"] == pytest.approx(peak - (gross - fees))
    assert summary["max_drawdown_pct"] == pytest.approx(
        100 * (peak - (gross - fees)) / (res.start_equity_krw + peak), rel=1e-3)
    assert json.loads((tmp_path / "summary.json").read_text()) == summary
    # The tables add up to the summary.
    assert sum(r["pnl_krw"] for r in per_day(res)) == pytest.approx(gross - fees)
    assert sum(r["fees_krw"] for r in per_market_direction(res)) == pytest.approx(fees)
    assert [r["intents"] for r in per_day(res)] == [2, 1]


def test_the_report_links_every_plot_and_each_plot_is_a_png(
        report: tuple[BacktestResults, Path, dict[str, Any]]) -> None:
    _, tmp_path, _ = report
    text = (tmp_path / "report.md").read_text()
    assert text.splitlines()[0] == "`python -m karb.backtest configs/backtest.yaml`"  # the command first
    assert "\n# scripted\n" in text
    for name in PLOTS:
        assert f"]({name})" in text
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| KRW-XRP | bithumb->upbit | 1 |" in text
