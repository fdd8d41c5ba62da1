#!/usr/bin/env python3
"""How long one step of the simulator's market model takes: 10 markets x 2 venues.

    python tools/bench_market.py                    the demo model of configs/sim.yaml
    python tools/bench_market.py configs/backtest.yaml   the realistic model
    python tools/bench_market.py --steps 20000 --json

Prints the median over repeats of the mean µs per ``MarketModel.step`` (books rebuilt for every
market on both venues, as the live simulator and the backtester do every ``step_ms``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from karb.config import load_config
from karb.sim.market import MarketModel
from karb.sim.server import DEFAULT_MARKETS


def bench_market_step(config: str, steps: int, repeats: int) -> dict[str, float]:
    cfg = load_config(config)
    assert cfg.sim is not None, f"{config} has no sim: section"
    markets = list(cfg.markets) or DEFAULT_MARKETS
    per_step_us: list[float] = []
    for _ in range(repeats):
        model = MarketModel(markets, cfg.sim, 0)
        t = 0
        start = time.perf_counter()
        for _ in range(steps):
            t += cfg.sim.step_ms
            model.step(t)
        per_step_us.append((time.perf_counter() - start) / steps * 1e6)
    return {"market_step_us_p50": round(statistics.median(per_step_us), 1),
            "market_step_us_min": round(min(per_step_us), 1),
            "markets": float(len(markets))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_market.py", description=__doc__.splitlines()[0])
    parser.add_argument("config", nargs="?", default=str(REPO / "configs" / "sim.yaml"))
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    figures = bench_market_step(args.config, args.steps, args.repeats)
    if args.json:
        print(json.dumps(figures))
    else:
        for key, value in figures.items():
            print(f"{key:<22} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
