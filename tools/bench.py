#!/usr/bin/env python3
"""K-Arb benchmarks: print figures, never assert them.

    python tools/bench.py           a readable table
    python tools/bench.py --json    one JSON object (keys documented in README.md)

Machines are shared and noisy: figures are medians and percentiles, and each comparison has its
baseline measured in the same run (``bus_hop_raw_pyzmq_us_p50`` next to ``bus_hop_us_p50``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench_orders import bench_orders
from bench_pipeline import bench_pipeline
from bench_runtime import (bench_bus_hop, bench_hang, bench_raw_pyzmq, bench_restart,
                           bench_shm)
from bench_stream import bench_private_stream
from bench_venues import bench_parse, bench_sim_ws

BENCHES: list[Callable[[], dict[str, float]]] = [
    bench_shm, bench_parse, bench_raw_pyzmq, bench_bus_hop, bench_restart, bench_hang, bench_sim_ws,
    bench_orders, bench_private_stream, bench_pipeline]


def bench_pipeline_watched() -> dict[str, float]:
    return bench_pipeline(watched=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.py", description="Print K-Arb performance figures.")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--only", action="append", default=[],
                        help="run only benches whose name contains this (repeatable)")
    parser.add_argument("--with-page", action="store_true",
                        help="pipeline bench with the live page open and /metrics scraped each second")
    args = parser.parse_args(argv)
    if args.with_page:
        BENCHES[BENCHES.index(bench_pipeline)] = bench_pipeline_watched
    figures: dict[str, float] = {}
    for bench in BENCHES:
        if args.only and not any(o in bench.__name__ for o in args.only):
            continue
        figures.update(bench())
    if "bus_hop_us_p50" in figures and "bus_hop_raw_pyzmq_us_p50" in figures:
        figures["bus_hop_vs_raw_ratio"] = round(
            figures["bus_hop_us_p50"] / figures["bus_hop_raw_pyzmq_us_p50"], 2)
    if args.json:
        print(json.dumps(figures))
    else:
        width = max(len(k) for k in figures)
        for key, value in figures.items():
            print(f"{key:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
