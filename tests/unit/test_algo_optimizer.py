"""The optimizer's choice: rules before min_samples, measured quality after."""

from __future__ import annotations

from karb.execution.algos.optimizer import AlgoOptimizer, OptimizerConfig
from karb.execution.algos.runner import AlgoResult


def result(algo: str, state: str, avg_price: float, filled: float = 1.0) -> AlgoResult:
    return AlgoResult("i" + "a" * 20, algo, state, 1.0, filled, avg_price, 100.0,
                      0.05 * filled, 3, 10.0, True, "buy")


def test_rules_before_any_measurement() -> None:
    opt = AlgoOptimizer()
    assert opt.choose("normal", 1, 100, urgency=0.9).algo == "market"
    assert opt.choose("volatile", 1, 100, urgency=0.5).algo == "adaptive"
    assert opt.choose("trending", 1, 100, urgency=0.5).algo == "adaptive"
    assert opt.choose("illiquid", 1, 100, urgency=0.5).algo == "iceberg"
    assert opt.choose("normal", 30, 100, urgency=0.5).algo == "vwap"
    assert opt.choose("normal", 30, 100, urgency=0.5, has_profile=False).algo == "twap"
    assert opt.choose("ranging", 1, 100, urgency=0.5).algo == "limit"
    assert opt.choose("normal", 10, 100, urgency=0.5).algo == "twap"
    assert opt.choose("normal", 10, 100, urgency=0.5).source == "rules"


def test_measured_quality_takes_over_after_min_samples() -> None:
    opt = AlgoOptimizer(OptimizerConfig(min_samples=3))
    for _ in range(2):
        opt.record(result("limit", "normal", 100.01))
    assert opt.choose("normal", 10, 100, urgency=0.5).source == "rules"  # 2 < 3
    opt.record(result("limit", "normal", 100.01))
    for _ in range(3):
        opt.record(result("twap", "normal", 100.2))
    choice = opt.choose("normal", 10, 100, urgency=0.5)
    assert (choice.algo, choice.source) == ("limit", "measured")
    q = opt.quality("limit", "normal")
    assert q is not None and q.samples == 3 and abs(q.shortfall_bps - 6.0) < 1e-6  # 1 bps + 5 bps fee
    # per state: what was measured in "normal" says nothing about "volatile"
    assert opt.choose("volatile", 10, 100, urgency=0.5).source == "rules"


def test_a_poor_fill_rate_costs_and_urgency_excludes_slow_algorithms() -> None:
    opt = AlgoOptimizer(OptimizerConfig(min_samples=1, unfilled_penalty_bps=50))
    opt.record(result("limit", "normal", 100.0, filled=0.5))  # cheap but half filled: 25 bps
    opt.record(result("twap", "normal", 100.1))  # 10 + 5 bps fee
    assert opt.choose("normal", 10, 100, urgency=0.5).algo == "twap"
    opt2 = AlgoOptimizer(OptimizerConfig(min_samples=1))
    opt2.record(result("iceberg", "normal", 100.0))
    opt2.record(result("market", "normal", 100.3))
    assert opt2.choose("normal", 10, 100, urgency=0.5).algo == "iceberg"
    assert opt2.choose("normal", 10, 100, urgency=0.95).algo == "market"
    assert "normal" in opt2.table() and set(opt2.table()["normal"]) == {"iceberg", "market"}
