"""The backtest report's rebalancing figures (issue 12) on hand-built results: arb-only trading
figures, transfer fees in PnL, rebalancing cost, the algorithm table and the side-by-side
report of a run with and without rebalancing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest

from karb.backtest.__main__ import main, parse_args
from karb.backtest.compare import (
    compare_markdown,
    compare_rebalance,
    comparison,
    rebalance_acceptance,
)
from karb.backtest.rebalstats import algo_table, rebalancing_markdown, transfer_stats
from karb.backtest.report import PLOTS, acceptance, per_day, per_market_direction, write_report
from karb.backtest.run import Options
from karb.backtest.results import (
    DAY_NS,
    AlgoRecord,
    BacktestResults,
    BalancePoint,
    FillRecord,
    IntentRecord,
    LegRecord,
    SignalRecord,
    TransferRecord,
    summarise,
)

T0 = 1_767_225_600 * 10**9
S = 10**9
FEE = 0.0005
CONFIG = Path(__file__).resolve().parents[2] / "configs" / "backtest.yaml"


def intent(iid: str, market: str, buy: str, sell: str, volume: float, purpose: str = "arb",
           ts: int = T0 + 60 * S) -> IntentRecord:
    return IntentRecord(intent_id=iid, ts_ns=ts, market=market, buy_venue=buy, sell_venue=sell,
                        volume=volume, buy_limit=1e12, sell_limit=0.0, net_bps=10.0,
                        accepted=True, purpose=purpose)


def leg(iid: str, role: str, venue: str, market: str, side: str, volume: float,
        executed: float) -> LegRecord:
    return LegRecord(intent_id=iid, role=role, venue=venue, market=market, side=side,  # type: ignore[arg-type]
                     volume=volume, executed_volume=executed, sent_ns=T0 + 60 * S, latency_ms=5.0)


def fill(iid: str, role: str, venue: str, market: str, side: str, price: float,
         volume: float) -> FillRecord:
    return FillRecord(intent_id=iid, role=role, ts_ns=T0 + 61 * S, venue=venue, market=market,  # type: ignore[arg-type]
                      side=side, price=price, volume=volume, fee_krw=price * volume * FEE)  # type: ignore[arg-type]


def transfer(tid: str, coin: str, amount: float, fee_krw: float, credited_s: float | None,
             state: str) -> TransferRecord:
    return TransferRecord(transfer_id=tid, coin=coin, from_venue="bithumb", to_venue="upbit",
                          amount=amount, fee=0.001, fee_krw=fee_krw, requested_ns=T0 + 100 * S,
                          credited_ns=0 if credited_s is None else T0 + int((100 + credited_s) * S),
                          state=state, purpose="coin")


def algo(aid: str, name: str, state: str, volume: float, filled: float, shortfall: float,
         cost: float) -> AlgoRecord:
    return AlgoRecord(algo_id=aid, algo=name, state=state, source="rules", market="KRW-XRP",
                      buy_venue="bithumb", sell_venue="upbit", started_ns=T0 + 200 * S,
                      duration_s=30.0, volume=volume, filled=filled, children=3,
                      arrival_mid=3000.0, arrival_premium=2.0, cost_krw=cost,
                      shortfall_bps=shortfall)


def with_rebalancing() -> BacktestResults:
    """One arb round trip (BTC); two rebalance intents (XRP): r1 both legs filled, r2 its sell
    leg failed and was hedged (a failure that must not count against the arb success rate);
    three transfers (credited, in flight, never sent); three algorithm runs."""
    intents = [intent("a", "KRW-BTC", "upbit", "bithumb", 0.01),
               intent("r1", "KRW-XRP", "bithumb", "upbit", 1000.0, "rebalance"),
               intent("r2", "KRW-XRP", "bithumb", "upbit", 500.0, "rebalance")]
    legs = [leg("a", "buy", "upbit", "KRW-BTC", "bid", 0.01, 0.01),
            leg("a", "sell", "bithumb", "KRW-BTC", "ask", 0.01, 0.01),
            leg("r1", "buy", "bithumb", "KRW-XRP", "bid", 1000.0, 1000.0),
            leg("r1", "sell", "upbit", "KRW-XRP", "ask", 1000.0, 1000.0),
            leg("r2", "buy", "bithumb", "KRW-XRP", "bid", 500.0, 500.0),
            leg("r2", "sell", "upbit", "KRW-XRP", "ask", 500.0, 0.0),
            leg("r2", "hedge", "upbit", "KRW-XRP", "ask", 500.0, 500.0)]
    fills = [fill("a", "buy", "upbit", "KRW-BTC", "bid", 100_000_000.0, 0.01),
             fill("a", "sell", "bithumb", "KRW-BTC", "ask", 100_500_000.0, 0.01),
             fill("r1", "buy", "bithumb", "KRW-XRP", "bid", 3000.0, 1000.0),
             fill("r1", "sell", "upbit", "KRW-XRP", "ask", 2995.0, 1000.0),
             fill("r2", "buy", "bithumb", "KRW-XRP", "bid", 3000.0, 500.0),
             fill("r2", "hedge", "upbit", "KRW-XRP", "ask", 2990.0, 500.0)]
    signals = [SignalRecord(ts_ns=T0 + 10 * S, market="KRW-BTC", buy_venue="upbit",
                            sell_venue="bithumb", gross_bps=50.0, net_bps=41.0, decision="no_coin",
                            inventory_blocked=True)]  # blocked 1 s (the cap) to the end
    return BacktestResults(
        started_ns=T0, ended_ns=T0 + DAY_NS, wall_s=10.0, markets=["KRW-BTC", "KRW-XRP"],
        fee_bps={"upbit": 5.0, "bithumb": 5.0}, start_equity_krw=300_000_000.0, intents=intents,
        legs=legs, fills=fills, signals=signals,
        balances=[BalancePoint(ts_ns=T0 + k * 3600 * S, balances={
            v: {"KRW": 1e8, "BTC": 1.0 + k / 100, "XRP": 1e4} for v in ("upbit", "bithumb")})
            for k in range(3)],
        final_marks={"KRW-BTC": 100_000_000.0, "KRW-XRP": 3000.0}, rebalancing=True,
        transfers=[transfer("t1", "BTC", 0.01, 50_000.0, 600.0, "CREDITED"),
                   transfer("t2", "XRP", 1000.0, 3000.0, None, "SENT"),
                   transfer("t3", "XRP", 1000.0, 3000.0, None, "NOT_SENT")],
        algos=[algo("g1", "twap", "normal", 1000.0, 1000.0, 10.0, 8000.0),
               algo("g2", "twap", "normal", 500.0, 250.0, 20.0, 4000.0),
               algo("g3", "market", "volatile", 100.0, 0.0, 0.0, 0.0)])


def without_rebalancing() -> BacktestResults:
    """The bare strategy: the same start, no arb trade (inventory ran dry), no rebalancing."""
    res = with_rebalancing()
    blocked = [msgspec.structs.replace(res.signals[0], ts_ns=T0 + k * 2 * S) for k in range(50)]
    return msgspec.structs.replace(res, intents=[], legs=[], fills=[], transfers=[], algos=[],
                                   rebalancing=False, signals=blocked)


ARB_FEES = (1_000_000 + 1_005_000) * FEE
REB_FILLS = [(3000.0, 1000.0, 1), (2995.0, 1000.0, -1), (3000.0, 500.0, 1), (2990.0, 500.0, -1)]
REB_COST = sum(sign * p * v + p * v * FEE for p, v, sign in REB_FILLS)  # buys - sells + fees


def test_summary_counts_only_arb_legs_and_charges_rebalancing_to_pnl() -> None:
    s = summarise(with_rebalancing())
    # Trading figures: the arb intent only (r2's failed sell leg and its hedge are not ours).
    assert s["intents"] == 1 and s["round_trips"] == 1
    assert s["order_success_rate"] == 1.0 and s["hedges"] == 0 and s["hedge_cost_krw"] == 0
    assert s["arb_volume_krw"] == pytest.approx(2_005_000)
    # Money: every fill, minus the fees of the two transfers that left (t3 never did).
    assert s["transfers"] == 3 and s["transfers_credited"] == 1
    assert s["transfer_fees_krw"] == pytest.approx(53_000)
    assert s["rebalance_trades"] == 3
    assert s["rebalance_trade_cost_krw"] == pytest.approx(REB_COST)
    assert s["rebalancing_cost_krw"] == pytest.approx(REB_COST + 53_000)
    assert s["rebalancing_cost_bps"] == pytest.approx(1e4 * (REB_COST + 53_000) / 2_005_000, abs=1e-4)
    assert s["pnl_krw"] == pytest.approx(5000 - ARB_FEES - REB_COST - 53_000)
    assert s["leftover_value_krw"] == pytest.approx(0.0)
    assert s["coin_in_transit_krw"] == pytest.approx(1000 * 3000.0)  # t2, at the final mark
    assert s["inventory_blocked_s"] == pytest.approx(1.0)
    assert s["inventory_blocked_pct"] == pytest.approx(100 / 86_400, rel=1e-3)
    assert s["rebalancing"] is True
    # The per-market table is arbitrage only; per day is all the money.
    assert [(r["market"], r["intents"]) for r in per_market_direction(with_rebalancing())] == [
        ("KRW-BTC", 1)]
    day = per_day(with_rebalancing())
    assert day[0]["intents"] == 1 and day[0]["transfer_fees_krw"] == pytest.approx(53_000)
    assert day[0]["pnl_krw"] == pytest.approx(s["pnl_krw"])


def test_algo_table_per_state_and_algorithm() -> None:
    rows = algo_table(with_rebalancing())
    assert [(r["state"], r["algo"], r["runs"]) for r in rows] == [
        ("normal", "twap", 2), ("volatile", "market", 1)]
    normal, volatile = rows
    assert normal["mean_shortfall_bps"] == pytest.approx(15.0)
    assert normal["median_shortfall_bps"] == pytest.approx(15.0)
    assert normal["mean_fill_rate"] == pytest.approx(0.75)
    assert normal["cost_krw"] == pytest.approx(12_000)
    # Nothing filled: no price, so no shortfall; it still counts in runs and the fill rate.
    assert volatile["mean_shortfall_bps"] is None and volatile["mean_fill_rate"] == 0.0
    t = transfer_stats(with_rebalancing())
    assert (t["count"], t["credited"], t["median_credit_s"], t["max_credit_s"]) == (3, 1, 600, 600)
    text = "\n".join(rebalancing_markdown(with_rebalancing(), summarise(with_rebalancing())))
    assert "| normal | twap | 2 | 15.0 | 15.0 | 0.750 | 12,000 |" in text
    assert "| volatile | market | 1 | n/a | n/a | 0.000 | 0 |" in text
    assert "Implementation shortfall" in text and "positive = cost" in text


def test_comparison_report_shows_both_runs_and_the_issue_12_lines() -> None:
    runs: dict[str, dict[str, Any]] = {}
    for name, res in (("with", with_rebalancing()), ("without", without_rebalancing())):
        summary = summarise(res)
        runs[name] = {"summary": summary, "checks": acceptance(res, summary, None),
                      "rebalancing_md": rebalancing_markdown(res, summary)}
    cmp = comparison(runs["with"]["summary"], runs["without"]["summary"])
    cost = REB_COST + 53_000
    assert cmp["pnl_enabled_krw"] == pytest.approx(5000 - ARB_FEES, abs=0.01)
    assert cmp["inventory_blocked_pct_without"] > cmp["inventory_blocked_pct_with"]
    text = compare_markdown(runs, cmp, "python -m karb.backtest X --compare-rebalance",
                            {"with": Path("with"), "without": Path("without")})
    lines = text.splitlines()
    assert lines[0] == "`python -m karb.backtest X --compare-rebalance`"
    assert "Generated by the command in the first line." in text
    assert "| key | without | with |" in text
    assert "| `transfers` | 0 | 3 |" in text and "| `rebalancing` | False | True |" in text
    assert "| inventory blocked under 1 % of the run (with rebalancing) | **PASS** |" in text
    # Here the trades cost more than the round trip they enabled: the line says so.
    assert cost > cmp["pnl_enabled_krw"]
    assert "| rebalancing cost below the PnL it enables | **FAIL** |" in text
    assert "| no crash | **PASS** |" in text  # issue 11's lines, of the run with rebalancing
    assert "| normal | twap | 2 |" in text
    for name in PLOTS:
        assert f"(without/{name})" in text and f"(with/{name})" in text
    assert "(with/report.md)" in text and "(without/report.md)" in text
    passing = dict(cmp, rebalancing_cost_krw=100.0, pnl_enabled_krw=1000.0)
    assert [ok for _, ok, _ in rebalance_acceptance(passing)] == [True, True]


def test_report_renders_with_and_without_transfers(tmp_path: Path) -> None:
    for name, res in (("with", with_rebalancing()), ("without", without_rebalancing())):
        summary = write_report(res, tmp_path / name, command="python -m karb.backtest X")
        text = (tmp_path / name / "report.md").read_text()
        assert "## Rebalancing" in text and "### Execution algorithms per market state" in text
        assert json.loads((tmp_path / name / "summary.json").read_text()) == summary
        for plot in PLOTS:
            assert (tmp_path / name / plot).read_bytes()[:4] == b"\x89PNG"
    assert "No KRW-rebalancing trade ran." in (tmp_path / "without" / "report.md").read_text()


def test_compare_flag_parses_and_refuses_sweeps(capsys: pytest.CaptureFixture[str]) -> None:
    args = parse_args([str(CONFIG), "--days", "7", "--out", "d", "--compare-rebalance",
                       "--progress"])
    assert args.compare_rebalance and args.progress and args.report is None
    assert not parse_args([str(CONFIG), "--out", "d"]).compare_rebalance
    assert main([str(CONFIG), "--out", "d", "--compare-rebalance", "--sweep", "a=1"]) != 0
    assert "--compare-rebalance runs alone" in capsys.readouterr().err


def test_compare_rebalance_runs_both_and_writes_three_reports(tmp_path: Path) -> None:
    """Four simulated seconds each, in two worker processes (~1.5 s): the files and links."""
    both = compare_rebalance(str(CONFIG), Options(days=0.00005, reconcile=False), tmp_path,
                             tmp_path / "docs" / "report.md", "python -m karb.backtest X", 2, {})
    assert both["without"]["rebalancing"] is False
    assert json.loads((tmp_path / "summary.json").read_text()) == both
    assert set(both["comparison"]) >= {"pnl_enabled_krw", "rebalancing_cost_krw"}
    for run in ("with", "without"):
        assert (tmp_path / run / "report.md").exists() and (tmp_path / run / "pnl.png").exists()
    text = (tmp_path / "docs" / "report.md").read_text()
    assert "(../with/pnl.png)" in text and "(../without/report.md)" in text
