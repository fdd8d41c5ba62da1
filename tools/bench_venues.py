"""Benchmarks of the venue side: parsing venue frames, the simulator's stream."""

from __future__ import annotations

import asyncio
import json
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import psutil
import yaml

from karb.config import SimConfig
from karb.exchanges.v1api.ws import parse_orderbook
from karb.sim.frames import orderbook_frame
from karb.sim.market import MarketModel
from karb.sim.venue import VenueState
from karb.sim.wsfeed import Session

REPO = Path(__file__).resolve().parent.parent

from bench_runtime import scratch_dir, stop


def _upbit_frames(simple: bool) -> list[bytes]:
    """30-level order-book frames exactly as the simulator sends them, 10 markets."""

    markets = ["KRW-BTC", "KRW-ETH", "KRW-XRP", "KRW-SOL", "KRW-DOGE", "KRW-ADA", "KRW-TRX",
               "KRW-LINK", "KRW-AVAX", "KRW-DOT"]
    model = MarketModel(markets, SimConfig(), 0)
    state = VenueState("upbit", SimConfig().upbit, SimConfig(), model, None)  # type: ignore[arg-type]
    session = Session(None, state, "upbit")  # type: ignore[arg-type]
    session.fmt = "SIMPLE" if simple else "DEFAULT"
    return [session.encode(orderbook_frame(state, m, 30, "REALTIME", 0)) for m in markets]


def _per_call_us(fn: Callable[[bytes], object], frames: list[bytes], rounds: int = 9,
                 n: int = 20_000) -> float:
    results = []
    for _ in range(rounds):
        t0 = time.perf_counter_ns()
        for i in range(n):
            fn(frames[i % len(frames)])
        results.append((time.perf_counter_ns() - t0) / n / 1000)
    return statistics.median(results)


def bench_parse() -> dict[str, float]:
    """One 30-level Upbit order-book frame → our normalised book, against stdlib json + dict
    access doing the same (split into bids/asks, padding dropped), same frames, same run."""


    default, simple = _upbit_frames(False), _upbit_frames(True)

    def baseline(data: bytes) -> object:
        frame = json.loads(data)
        units = frame["orderbook_units"]
        bids = [(u["bid_price"], u["bid_size"]) for u in units if u["bid_size"] > 0]
        asks = [(u["ask_price"], u["ask_size"]) for u in units if u["ask_size"] > 0]
        return frame["code"], frame["timestamp"], bids, asks

    ours = _per_call_us(lambda d: parse_orderbook(d, "upbit", 0), default)
    ours_simple = _per_call_us(lambda d: parse_orderbook(d, "upbit", 0), simple)
    base = _per_call_us(baseline, default)
    return {"parse_upbit_orderbook_us": round(ours, 2),
            "parse_upbit_orderbook_simple_us": round(ours_simple, 2),
            "parse_json_baseline_us": round(base, 2),
            "parse_speedup_vs_baseline": round(base / ours, 1)}


def bench_sim_ws() -> dict[str, float]:
    """Order-book frames/s from the simulator (its own process, one core at most) to one
    WebSocket subscriber of 10 markets, with the model stepping as fast as it can."""


    markets = ["KRW-BTC", "KRW-ETH", "KRW-XRP", "KRW-SOL", "KRW-DOGE", "KRW-ADA", "KRW-TRX",
               "KRW-LINK", "KRW-AVAX", "KRW-DOT"]
    workdir = scratch_dir()
    config = workdir / "sim.yaml"
    config.write_text(yaml.safe_dump({
        "markets": markets, "actors": [{"name": "sim", "kind": "sim"}],
        "sim": {"step_ms": 1, "upbit": {"port": 0}, "bithumb": {"port": 0},
                "dislocation": {"rate_per_min": 0.0}}}))
    proc = subprocess.Popen([sys.executable, "-m", "karb.sim", str(config)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        ws_url = dict(p.split("=", 1) for p in line.split()[2:])["ws"]
        ps = psutil.Process(proc.pid)

        async def count(seconds: float) -> tuple[int, float]:
            async with aiohttp.ClientSession() as s, s.ws_connect(ws_url, max_msg_size=0) as ws:
                await ws.send_str(json.dumps([{"ticket": "bench"},
                                                 {"type": "orderbook", "codes": markets}]))
                for _ in range(200):  # warm up
                    await ws.receive()
                ps.cpu_percent(None)
                n, end = 0, time.monotonic() + seconds
                while time.monotonic() < end:
                    await ws.receive()
                    n += 1
                return n, ps.cpu_percent(None)

        frames, cpu = asyncio.run(count(3.0))
    finally:
        stop(proc, signal.SIGINT, 10)
    return {"sim_ws_msgs_per_s": round(frames / 3.0), "sim_ws_cpu_percent": round(cpu, 1)}
