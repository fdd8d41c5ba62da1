"""Rebalancing in a backtest's report: the transfers and the execution algorithms' table.

Implementation shortfall of one KRW-rebalancing trade (an :class:`AlgoRecord`): what it cost
against the premium at its arrival, ``(avg buy - avg sell + fees per coin - (buy mid - sell mid
at arrival)) / arrival mid``, in bps; positive = cost. A trade that filled nothing has no price:
it counts in ``runs`` and the fill rate, not in the shortfall statistics.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from typing import Any

from karb.backtest.results import AlgoRecord, BacktestResults, paid_transfers

SHORTFALL = ("Implementation shortfall: a trade's cost against the premium at its arrival, "
             "(avg buy - avg sell + fees per coin - (buy mid - sell mid at arrival)) / arrival "
             "mid, in bps; positive = cost. Mean and median over the runs that filled anything; "
             "fill rate = filled / asked, over every run.")
REBALANCE_KEYS = ("inventory_blocked_s", "inventory_blocked_pct", "arb_volume_krw", "transfers",
                  "transfers_credited", "transfer_fees_krw", "rebalance_trades",
                  "rebalance_trade_cost_krw", "rebalancing_cost_krw", "rebalancing_cost_bps",
                  "coin_in_transit_krw")


def algo_table(res: BacktestResults) -> list[dict[str, Any]]:
    """One row per (market state at arrival, algorithm): runs, mean and median shortfall (bps),
    mean fill rate, total cost (KRW)."""
    groups: dict[tuple[str, str], list[AlgoRecord]] = defaultdict(list)
    for a in res.algos:
        groups[(a.state, a.algo)].append(a)
    rows = []
    for (state, algo), runs in sorted(groups.items()):
        priced = [a.shortfall_bps for a in runs if a.filled > 0]
        rows.append({
            "state": state, "algo": algo, "runs": len(runs),
            "mean_shortfall_bps": statistics.mean(priced) if priced else None,
            "median_shortfall_bps": statistics.median(priced) if priced else None,
            "mean_fill_rate": statistics.mean(a.filled / a.volume if a.volume > 0 else 0.0
                                              for a in runs),
            "cost_krw": sum(a.cost_krw for a in runs),
        })
    return rows


def transfer_stats(res: BacktestResults) -> dict[str, Any]:
    """Count, credited, fees and time to credit (median / max, s) of the run's transfers."""
    credit_s = sorted((t.credited_ns - t.requested_ns) / 1e9 for t in res.transfers
                      if t.credited_ns > 0)
    by_coin: dict[str, int] = defaultdict(int)
    for t in res.transfers:
        by_coin[t.coin] += 1
    return {
        "count": len(res.transfers),
        "credited": len(credit_s),
        "fees_krw": sum(t.fee_krw for t in paid_transfers(res)),  # as in the summary
        "median_credit_s": statistics.median(credit_s) if credit_s else None,
        "max_credit_s": credit_s[-1] if credit_s else None,
        "by_coin": dict(sorted(by_coin.items())),
        "by_purpose": {p: sum(1 for t in res.transfers if t.purpose == p)
                       for p in sorted({t.purpose for t in res.transfers})},
    }


def _num(v: Any, fmt: str = ",.1f") -> str:
    return "n/a" if v is None else format(v, fmt)


def fmt_value(value: Any) -> str:
    """A summary figure as the reports print it: 4 significant digits below 1,000, whole KRW
    above, lists joined, None as n/a."""
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return "n/a" if value is None else str(value)


def algo_markdown(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return ["No KRW-rebalancing trade ran.", ""]
    lines = ["| market state | algorithm | runs | mean shortfall bps | median shortfall bps | "
             "mean fill rate | cost KRW |", "|---|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['state']} | {r['algo']} | {r['runs']} | {_num(r['mean_shortfall_bps'])} | "
              f"{_num(r['median_shortfall_bps'])} | {_num(r['mean_fill_rate'], '.3f')} | "
              f"{_num(r['cost_krw'], ',.0f')} |" for r in rows]
    return [*lines, "", SHORTFALL, ""]


def rebalancing_markdown(res: BacktestResults, summary: dict[str, Any]) -> list[str]:
    """The report's "Rebalancing" section: transfers, the rebalancing keys, the algo table."""
    t = transfer_stats(res)
    state = "in force" if res.rebalancing else "off (the bare strategy)"
    lines = ["## Rebalancing", "", f"Rebalancing (skew-aware thresholds, transfers, KRW "
             f"rebalancing trades): {state}.", "",
             "| transfers | credited | fees KRW | median time to credit s | max time to credit s "
             "| per coin | per purpose |", "|---:|---:|---:|---:|---:|---|---|",
             f"| {t['count']} | {t['credited']} | {t['fees_krw']:,.0f} | "
             f"{_num(t['median_credit_s'])} | {_num(t['max_credit_s'])} | "
             f"{_kv(t['by_coin'])} | {_kv(t['by_purpose'])} |", "",
             "| key | value |", "|---|---|"]
    lines += [f"| `{k}` | {fmt_value(summary[k])} |" for k in REBALANCE_KEYS if k in summary]
    lines += ["", "Rebalancing cost = transfer fees + what the rebalancing trades lost (buys - "
              "sells + fees); `rebalancing_cost_bps` is it in bps of the arbitrage volume "
              "(`arb_volume_krw`).", "", "### Execution algorithms per market state", ""]
    return lines + algo_markdown(algo_table(res))


def _kv(d: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in d.items()) or "-"
