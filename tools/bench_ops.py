#!/usr/bin/env python3
"""What /metrics and the live page cost the supervisor, at 10 markets with the simulator trading.

    python tools/bench_ops.py [--seconds 20] [--json]

Three phases of ``--seconds`` each on one running pipeline (sim, feeds, book, execution,
strategy, monitor): nothing watching; ``/metrics`` scraped once a second; the page's event
stream (``/events``) open as well. For each: the supervisor's CPU (user + system time over
wall time, % of one core). Also the scrape's wall time and size. Prints figures, asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tools"))

from bench_runtime import scratch_dir

from tests.process.pipeline import pipeline_config
from tests.support import SupervisorProc

MARKETS = ["KRW-BTC", "KRW-ETH", "KRW-XRP", "KRW-SOL", "KRW-DOGE", "KRW-ADA", "KRW-TRX",
           "KRW-LINK", "KRW-AVAX", "KRW-DOT"]


def cpu_percent(proc: psutil.Process, seconds: float, during: Any = None) -> float:
    t0, c0 = time.monotonic(), sum(proc.cpu_times()[:2])
    end = t0 + seconds
    while time.monotonic() < end:
        if during is not None:
            during()
        time.sleep(max(0.0, min(1.0, end - time.monotonic())))
    return (sum(proc.cpu_times()[:2]) - c0) / (time.monotonic() - t0) * 100


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_ops.py", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    import yaml
    workdir = scratch_dir()
    path = pipeline_config(workdir, MARKETS, sim={"dislocation": {
        "rate_per_min": 20.0, "size_bps": 60.0, "duration_ms": 1500}})
    cfg = yaml.safe_load(path.read_text())
    cfg["actors"].append({"name": "monitor", "kind": "monitor"})
    path.write_text(yaml.safe_dump(cfg))
    out: dict[str, float] = {}
    with SupervisorProc(path) as sup:
        sup.wait_running(40)
        info = json.loads((sup.run_dir / "supervisor.json").read_text())
        base = info["status_url"].removesuffix("/api/status")
        proc = psutil.Process(sup.pid)
        time.sleep(2)  # let the start settle
        out["supervisor_cpu_percent_idle"] = round(cpu_percent(proc, args.seconds), 2)
        scrape_ms: list[float] = []
        sizes: list[int] = []

        def scrape() -> None:
            t = time.perf_counter()
            with urllib.request.urlopen(base + "/metrics", timeout=5) as resp:
                sizes.append(len(resp.read()))
            scrape_ms.append((time.perf_counter() - t) * 1000)

        out["supervisor_cpu_percent_scraped_1s"] = round(cpu_percent(proc, args.seconds, scrape), 2)
        stop = threading.Event()
        events = [0]

        def page() -> None:
            with urllib.request.urlopen(base + "/events", timeout=10) as resp:
                while not stop.is_set():
                    if resp.readline().startswith(b"event:"):
                        events[0] += 1

        reader = threading.Thread(target=page, daemon=True)
        reader.start()
        out["supervisor_cpu_percent_scraped_and_page"] = round(
            cpu_percent(proc, args.seconds, scrape), 2)
        stop.set()
        out["scrape_cost_cpu_percent"] = round(
            out["supervisor_cpu_percent_scraped_1s"] - out["supervisor_cpu_percent_idle"], 2)
        out["page_cost_cpu_percent"] = round(
            out["supervisor_cpu_percent_scraped_and_page"] - out["supervisor_cpu_percent_scraped_1s"], 2)
        out["scrape_ms_p50"] = round(statistics.median(scrape_ms), 2)
        out["scrape_ms_max"] = round(max(scrape_ms), 2)
        out["scrape_bytes"] = float(sizes[-1])
        out["page_events_per_s"] = round(events[0] / args.seconds, 1)
    if args.json:
        print(json.dumps(out))
    else:
        width = max(len(k) for k in out)
        for key, value in out.items():
            print(f"{key:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
