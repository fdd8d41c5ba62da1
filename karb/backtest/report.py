"""A backtest's report: ``DIR/summary.json``, ``DIR/report.md`` and PNG plots beside it.

Plots (matplotlib, Agg backend: no display needed): cumulative PnL net of fees, drawdown,
inventory per venue and coin (transfers dashed), the edge at signal time per market against
the two taker fees, and the fill ratio of our arbitrage legs against their latency. Tables: per
market and direction, per day, rebalancing (transfers, execution algorithms per market state:
:mod:`karb.backtest.rebalstats`). Figures and their definitions: :mod:`karb.backtest.results`.

matplotlib is imported only here, and is an optional dependency (``pip install -e
'.[backtest]'``): the trading pipeline never needs it.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

from karb.backtest.results import (
    DAY_NS,
    BacktestResults,
    drawdowns,
    is_arb,
    paid_transfers,
    pnl_curve,
    purposes,
    signed_notional,
    summarise,
)
from karb.backtest.rebalstats import fmt_value, rebalancing_markdown

PLOTS = ("pnl.png", "drawdown.png", "inventory.png", "edge.png", "fill_ratio.png")
LATENCY_BINS_MS = (0, 5, 10, 20, 50, 100, 200, 500, 1000, float("inf"))


def write_report(res: BacktestResults, out: Path, title: str = "K-Arb backtest",
                 command: str = "", max_notional_krw: float | None = None,
                 extra: dict[str, Any] | None = None,
                 report_path: Path | None = None) -> dict[str, Any]:
    """Write summary.json, report.md and the plots into ``out``; return the summary.
    ``max_notional_krw``: the per-trade cap, for the over-trading acceptance line; ``extra``:
    more keys for summary.json (after the standard ones); ``report_path``: where report.md goes
    instead of ``out/report.md`` (its plot links are relative to it)."""
    out.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = dict(summarise(res))
    checks = acceptance(res, summary, max_notional_krw)
    summary["acceptance"] = {name: ok for name, ok, _ in checks}
    summary.update(extra or {})
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    _plots(res, out)
    report_path = report_path or out / "report.md"
    report_path.parent.mkdir(parents=True, exist_ok=True)
    plots = Path(os.path.relpath(out, report_path.parent))
    report_path.write_text(_markdown(res, summary, title, command, checks, plots))
    return summary


def acceptance(res: BacktestResults, summary: dict[str, Any],
               max_notional_krw: float | None) -> list[tuple[str, bool, str]]:
    """The Phase 3 acceptance lines (issue 11): (line, passed, the figures behind it)."""
    rate = summary["order_success_rate"]
    over = 0
    if max_notional_krw is not None:
        over = sum(1 for i in res.intents
                   if i.accepted and i.volume * i.buy_limit > max_notional_krw * 1.0001)
    negative = summary["negative_balance_events"]
    return [
        ("no crash", summary["crashes"] == 0, f"{summary['crashes']} crashes"),
        ("order success rate above 95 %", rate is not None and rate > 0.95,
         "no orders" if rate is None else f"{100 * rate:.2f} %"),
        ("simulated PnL above 0", summary["pnl_krw"] > 0, f"{summary['pnl_krw']:,.0f} KRW"),
        ("no major risk event (over-trading, a negative balance)", negative == 0 and over == 0,
         f"{negative} negative balance points, {over} intents over the notional cap, "
         f"{summary['halts']} halts ({summary.get('halted_s', 0.0):,.0f} market-seconds halted)"),
    ]


def per_market_direction(res: BacktestResults) -> list[dict[str, Any]]:
    """One row per (market, buy venue -> sell venue): arb intents, their fills' PnL and fees."""
    intents = {i.intent_id: i for i in res.intents if i.accepted and i.purpose != "rebalance"}
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for i in intents.values():
        key = (i.market, f"{i.buy_venue}->{i.sell_venue}")
        rows.setdefault(key, {"market": key[0], "direction": key[1], "intents": 0,
                              "gross_krw": 0.0, "fees_krw": 0.0})["intents"] += 1
    for f in res.fills:
        of = intents.get(f.intent_id)
        if of is None:
            continue
        row = rows[(of.market, f"{of.buy_venue}->{of.sell_venue}")]
        row["gross_krw"] += signed_notional(f)
        row["fees_krw"] += f.fee_krw
    for row in rows.values():
        row["pnl_krw"] = row["gross_krw"] - row["fees_krw"]
    return sorted(rows.values(), key=lambda r: (r["market"], r["direction"]))


def per_day(res: BacktestResults) -> list[dict[str, Any]]:
    """Per day: arb intents; every fill's gross and fees (rebalancing trades included) and the
    transfer fees paid: PnL = gross - fees - transfer fees."""
    days: dict[int, dict[str, Any]] = defaultdict(
        lambda: {"intents": 0, "gross_krw": 0.0, "fees_krw": 0.0, "transfer_fees_krw": 0.0})
    of = purposes(res)
    for i in res.intents:
        if i.accepted and is_arb(i.intent_id, of):
            days[(i.ts_ns - res.started_ns) // DAY_NS]["intents"] += 1
    for f in res.fills:
        day = days[(f.ts_ns - res.started_ns) // DAY_NS]
        day["gross_krw"] += signed_notional(f)
        day["fees_krw"] += f.fee_krw
    for t in paid_transfers(res):
        days[(t.requested_ns - res.started_ns) // DAY_NS]["transfer_fees_krw"] += t.fee_krw
    return [{"day": d + 1, **v, "pnl_krw": v["gross_krw"] - v["fees_krw"] - v["transfer_fees_krw"]}
            for d, v in sorted(days.items())]


def _markdown(res: BacktestResults, summary: dict[str, Any], title: str, command: str,
              checks: list[tuple[str, bool, str]] | None = None, plots: Path = Path(".")) -> str:
    lines = [f"`{command}`", "", f"# {title}", ""] if command else [f"# {title}", ""]
    if command:
        lines += ["Generated by the command in the first line.", ""]
    if checks:
        lines += ["## Acceptance", "", "| line | result | figures |", "|---|---|---|"]
        lines += [f"| {name} | **{'PASS' if ok else 'FAIL'}** | {why} |" for name, ok, why in checks]
        lines += [""]
    lines += ["## Summary", "", "| key | value |", "|---|---|"]
    lines += [f"| `{k}` | {fmt_value(v)} |" for k, v in summary.items() if not isinstance(v, dict)]
    lines += ["", "## Plots", ""]
    lines += [f"![{name[:-4]}]({(plots / name).as_posix()})" for name in PLOTS]
    lines += ["", "## Per market and direction", "",
              "| market | direction | intents | gross KRW | fees KRW | PnL KRW (fills - fees) |",
              "|---|---|---:|---:|---:|---:|"]
    lines += [f"| {r['market']} | {r['direction']} | {r['intents']} | {r['gross_krw']:,.0f} | "
              f"{r['fees_krw']:,.0f} | {r['pnl_krw']:,.0f} |" for r in per_market_direction(res)]
    lines += ["", "## Per day", "",
              "| day | arb intents | gross KRW | fees KRW | transfer fees KRW | PnL KRW |",
              "|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['day']} | {r['intents']} | {r['gross_krw']:,.0f} | {r['fees_krw']:,.0f} | "
              f"{r['transfer_fees_krw']:,.0f} | {r['pnl_krw']:,.0f} |" for r in per_day(res)]
    note = ("Per-market PnL is the arbitrage intents' fills minus fees; per-day PnL is every "
            "fill (rebalancing trades included) minus fees and transfer fees; the summary's "
            "`pnl_krw` also values coin left over by unhedged legs (`leftover_value_krw`).")
    lines += ["", note, ""]
    lines += rebalancing_markdown(res, summary)
    return "\n".join(lines)



def _plots(res: BacktestResults, out: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")  # files only: no display on servers and in CI
    import matplotlib.pyplot as plt

    hours = [(ts - res.started_ns) / 3.6e12 for ts, _ in pnl_curve(res)]
    curve = [pnl for _, pnl in pnl_curve(res)]
    dd, _, _ = drawdowns(pnl_curve(res), res.start_equity_krw)

    fig, ax = plt.subplots(figsize=(9, 4))
    ax.step(hours, curve, where="post")
    ax.set(title="Cumulative PnL net of fees", xlabel="hours", ylabel="KRW")
    _save(fig, out / "pnl.png")

    fig, ax = plt.subplots(figsize=(9, 3))
    ax.fill_between(hours, [-d for d in dd], step="post", color="tab:red", alpha=0.5)
    ax.set(title="Drawdown from the running peak", xlabel="hours", ylabel="KRW")
    _save(fig, out / "drawdown.png")

    coins = sorted({c for p in res.balances for b in p.balances.values() for c in b if c != "KRW"})
    fig, axes = plt.subplots(len(coins) + 1, 1, figsize=(9, 2 * (len(coins) + 1)), sharex=True,
                             squeeze=False)
    t = [(p.ts_ns - res.started_ns) / 3.6e12 for p in res.balances]
    for ax, cur in zip(axes[:, 0], ["KRW", *coins]):
        for venue in sorted({v for p in res.balances for v in p.balances}):
            ax.step(t, [p.balances.get(venue, {}).get(cur, 0.0) for p in res.balances],
                    where="post", label=venue)
        for tr in res.transfers:  # a transfer's request, dashed: where the rebalancer moved coin
            if tr.coin == cur:
                ax.axvline((tr.requested_ns - res.started_ns) / 3.6e12, color="grey",
                           linestyle="--", linewidth=0.6)
        ax.set_ylabel(cur)
        if res.balances:  # no line, no legend (matplotlib warns)
            ax.legend(loc="upper right", fontsize="small")
    axes[0, 0].set_title("Inventory per venue and coin")
    axes[-1, 0].set_xlabel("hours")
    _save(fig, out / "inventory.png")

    markets = sorted({s.market for s in res.signals}) or list(res.markets)
    cols = 2
    rows = max(1, (len(markets) + cols - 1) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(10, 2.5 * rows), squeeze=False)
    for ax, market in zip(axes.flat, markets):
        edges = [s.gross_bps for s in res.signals if s.market == market]
        ax.hist(edges, bins=40, color="tab:blue")
        fees = [res.fee_bps[s.buy_venue] + res.fee_bps[s.sell_venue]
                for s in res.signals if s.market == market][:1]
        for fee in fees:
            ax.axvline(fee, color="tab:red", label=f"two taker fees {fee:.1f} bps")
            ax.legend(fontsize="small")
        ax.set_title(f"{market}: gross edge at signal, bps", fontsize="small")
    for ax in list(axes.flat)[len(markets):]:
        ax.set_visible(False)
    _save(fig, out / "edge.png")

    binned: dict[int, list[float]] = defaultdict(list)
    of = purposes(res)
    for leg in res.legs:  # the arbitrage legs: the ones that race competitors
        if leg.role != "hedge" and leg.volume > 0 and is_arb(leg.intent_id, of):
            b = next(i for i, hi in enumerate(LATENCY_BINS_MS[1:]) if leg.latency_ms < hi)
            binned[b].append(leg.executed_volume / leg.volume)
    fig, ax = plt.subplots(figsize=(9, 3.5))
    keys = sorted(binned)
    labels = [f"{LATENCY_BINS_MS[k]:g}-{LATENCY_BINS_MS[k + 1]:g}" for k in keys]
    ax.bar(labels, [sum(binned[k]) / len(binned[k]) for k in keys], color="tab:green")
    ax.set(title="Fill ratio of our legs vs latency", xlabel="latency, ms", ylabel="filled / asked",
           ylim=(0, 1.05))
    _save(fig, out / "fill_ratio.png")


def _save(fig: Any, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    import matplotlib.pyplot as plt
    plt.close(fig)
