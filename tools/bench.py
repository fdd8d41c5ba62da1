#!/usr/bin/env python3
"""K-Arb benchmarks: print figures, never assert them.

    python tools/bench.py           a readable table
    python tools/bench.py --json    one JSON object (keys documented in README.md)

Machines are shared and noisy: figures are medians and percentiles, and each comparison has its
baseline measured in the same run (``bus_hop_raw_pyzmq_us_p50`` next to ``bus_hop_us_p50``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import aiohttp  # noqa: E402
import psutil  # noqa: E402
import yaml  # noqa: E402
import zmq  # noqa: E402

from karb import bus, topics  # noqa: E402
from karb.config import SimConfig, load_config  # noqa: E402
from karb.exchanges.upbit.ws import parse_orderbook  # noqa: E402
from karb.messages import Heartbeat, OrderEvent, ProbeReport, TopOfBookUpdate  # noqa: E402
from karb.shm import VALID, TopOfBookTable, segment_path  # noqa: E402
from karb.sim.market import MarketModel  # noqa: E402
from karb.sim.venue import VenueState  # noqa: E402
from karb.sim.wsfeed import Session, orderbook_frame  # noqa: E402

HOP_SAMPLES = 4000
HOP_INTERVAL_US = 1000
RESTARTS = 20
HANGS = 5


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


class RunningSupervisor:
    """The real supervisor.py on a throwaway run dir."""

    def __init__(self, actors: list[dict[str, Any]], **supervisor: Any) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="karb-bench-", dir="/tmp"))
        settings = {"run_dir": str(self.dir / "run"), "status_port": None,
                    "heartbeat_interval_ms": 100, "heartbeat_timeout_ms": 500,
                    "max_restarts": 1000, **supervisor}
        self.config_path = self.dir / "config.yaml"
        self.config_path.write_text(yaml.safe_dump({"supervisor": settings, "actors": actors}))
        self.config = load_config(self.config_path)
        self.proc = subprocess.Popen([sys.executable, str(REPO / "supervisor.py"),
                                      str(self.config_path)], cwd=REPO,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.ctx = zmq.Context()

    def subscriber(self, prefixes: list[bytes]) -> bus.Subscriber:
        sub = bus.Subscriber(self.ctx, self.config.bus, lambda t, m: None)
        sub.connect(bus.pub_endpoint(self.config, a.name) for a in self.config.actors)
        sub.subscribe(prefixes)
        return sub

    def wait_heartbeat(self, sub: bus.Subscriber, actor: str, accept: Callable[[Heartbeat], bool],
                       timeout_s: float = 30) -> Heartbeat:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            got = sub.recv_blocking(100)
            if got and isinstance(got[1], Heartbeat) and got[1].src == actor and accept(got[1]):
                return got[1]
        raise RuntimeError(f"no matching heartbeat from {actor} within {timeout_s} s")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.ctx.destroy(linger=0)
        segment_path(self.config.run_dir).unlink(missing_ok=True)

    def __enter__(self) -> RunningSupervisor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


IDLE = [{"name": "idle-a", "kind": "probe_source", "params": {"interval_us": 1_000_000}},
        {"name": "idle-b", "kind": "probe_source", "params": {"interval_us": 1_000_000}}]


def bench_restart() -> dict[str, float]:
    """SIGKILL an actor → first RUNNING heartbeat of its replacement. period_s is short and
    kills are spaced past it, so each restart gets the first (smallest) back-off, as a lone
    crash in production would."""
    results: list[float] = []
    with RunningSupervisor(IDLE, period_s=0.5, backoff_initial_ms=10) as sup:
        sub = sup.subscriber([topics.HEARTBEAT])
        hb = sup.wait_heartbeat(sub, "idle-b", lambda h: h.state == "RUNNING")
        for _ in range(RESTARTS):
            time.sleep(0.6)
            start = time.monotonic()
            os.kill(hb.pid, signal.SIGKILL)
            old = hb.inc
            hb = sup.wait_heartbeat(sub, "idle-b",
                                    lambda h, old=old: h.inc > old and h.state == "RUNNING")
            results.append((time.monotonic() - start) * 1000)
        sub.close()
    return {"restart_to_running_ms_p50": round(statistics.median(results), 1),
            "restart_to_running_ms_p95": round(percentile(results, 95), 1),
            "restart_backoff_ms": 10}


def bench_hang() -> dict[str, float]:
    """SIGSTOP an actor → the supervisor has killed it (pid gone). Reported as the time past
    heartbeat_timeout_ms: the last heartbeat before the stop can only make it earlier."""
    timeout_ms = 500
    over: list[float] = []
    with RunningSupervisor(IDLE, period_s=0.5, heartbeat_timeout_ms=timeout_ms) as sup:
        sub = sup.subscriber([topics.HEARTBEAT])
        last_inc = 0
        for _ in range(HANGS):
            time.sleep(0.6)
            hb = sup.wait_heartbeat(sub, "idle-a",
                                    lambda h, last=last_inc: h.inc > last and h.state == "RUNNING")
            last_inc = hb.inc
            # Stop right after a heartbeat so the measured delay is the whole timeout.
            start = time.monotonic()
            os.kill(hb.pid, signal.SIGSTOP)
            while psutil.pid_exists(hb.pid) and psutil.Process(hb.pid).status() != "zombie":
                time.sleep(0.002)
            over.append((time.monotonic() - start) * 1000 - timeout_ms)
        sub.close()
    return {"hang_detect_over_timeout_ms_p50": round(statistics.median(over), 1),
            "hang_detect_over_timeout_ms_max": round(max(over), 1)}


def bench_bus_hop() -> dict[str, float]:
    """PUB → SUB between two actor processes under the supervisor (probe source → sink)."""
    actors = [{"name": "src", "kind": "probe_source",
               "params": {"interval_us": HOP_INTERVAL_US}},
              {"name": "sink", "kind": "probe_sink",
               "params": {"source": "src", "report_every": 500}}]
    hops: list[int] = []
    with RunningSupervisor(actors) as sup:
        sub = sup.subscriber([topics.probe_report("sink")])
        deadline = time.monotonic() + 60
        skip = 1  # the first batch includes start-up
        while len(hops) < HOP_SAMPLES and time.monotonic() < deadline:
            got = sub.recv_blocking(200)
            if got and isinstance(got[1], ProbeReport):
                if skip:
                    skip -= 1
                    continue
                hops.extend(got[1].hops_ns)
        sub.close()
    return {"bus_hop_us_p50": round(statistics.median(hops) / 1000, 1),
            "bus_hop_us_p99": round(percentile(hops, 99) / 1000, 1)}


def _raw_pub(endpoint: str, count: int, interval_s: float) -> None:
    ctx = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.LINGER, 0)
    pub.bind(endpoint)
    time.sleep(0.5)  # bare pyzmq has no readiness handshake: give the SUB time to join
    for _ in range(count + 100):
        pub.send_multipart((b"probe", struct.pack("<q", time.monotonic_ns())))
        time.sleep(interval_s)
    ctx.destroy(linger=0)


def bench_raw_pyzmq() -> dict[str, float]:
    """The same hop with bare pyzmq: blocking recv, no envelope, no event loop (the baseline);
    at 1 kHz like bus_hop, and at the pipeline's 10 Hz book cadence, where each message finds
    the receiver asleep: that wake-up is the floor under every hop of the pipeline."""
    fast = _raw_hop(HOP_SAMPLES, HOP_INTERVAL_US / 1e6)
    idle = _raw_hop(60, 0.1)
    return {"bus_hop_raw_pyzmq_us_p50": round(statistics.median(fast) / 1000, 1),
            "bus_hop_raw_pyzmq_us_p99": round(percentile(fast, 99) / 1000, 1),
            "bus_hop_raw_pyzmq_10hz_us_p50": round(statistics.median(idle) / 1000, 1)}


def _raw_hop(samples: int, interval_s: float) -> list[int]:
    warmup = min(500, samples // 5)
    path = Path(tempfile.mkdtemp(prefix="karb-bench-", dir="/tmp")) / "raw.pub"
    endpoint = f"ipc://{path}"
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"probe")
    sub.connect(endpoint)
    proc = multiprocessing.get_context("spawn").Process(
        target=_raw_pub, args=(endpoint, samples + warmup, interval_s))
    proc.start()
    hops: list[int] = []
    try:
        while len(hops) < samples + warmup and sub.poll(5000):
            _, payload = sub.recv_multipart()
            hops.append(time.monotonic_ns() - struct.unpack("<q", payload)[0])
    finally:
        proc.kill()
        proc.join()
        ctx.destroy(linger=0)
    return hops[warmup:]


def bench_shm() -> dict[str, float]:
    path = segment_path(Path(tempfile.mkdtemp(prefix="karb-bench-", dir="/tmp")))
    table = TopOfBookTable.create(path, 2, 10)
    reader = TopOfBookTable.attach(path, 2, 10)
    batch = 20_000
    writes, reads = [], []
    try:
        for _ in range(15):
            t0 = time.perf_counter_ns()
            for i in range(batch):
                table.write(i % 20, 100.0, 1.0, 101.0, 2.0, i, i, VALID)
            t1 = time.perf_counter_ns()
            for i in range(batch):
                reader.read(i % 20)
            t2 = time.perf_counter_ns()
            writes.append((t1 - t0) / batch)
            reads.append((t2 - t1) / batch)
    finally:
        reader.close()
        table.close()
        table.unlink()
    return {"shm_write_ns": round(statistics.median(writes)),
            "shm_read_ns": round(statistics.median(reads))}


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
    workdir = Path(tempfile.mkdtemp(prefix="karb-bench-", dir="/tmp"))
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
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
    return {"sim_ws_msgs_per_s": round(frames / 3.0), "sim_ws_cpu_percent": round(cpu, 1)}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def bench_pipeline(seconds: float = 30.0) -> dict[str, float]:
    """The whole pipeline on 10 markets with the simulator streaming and a window opening
    every ~1.5 s: book update and tick-to-trade latencies from the bus, RSS and CPU of the
    actors from the status API (the simulator is reported apart: it stands in for the venues)."""

    markets = ["KRW-BTC", "KRW-ETH", "KRW-XRP", "KRW-SOL", "KRW-DOGE", "KRW-ADA", "KRW-TRX",
               "KRW-LINK", "KRW-AVAX", "KRW-DOT"]
    up, bt, status_port = _free_port(), _free_port(), _free_port()
    venues = [{"name": n, "rest_url": f"http://127.0.0.1:{p}", "ws_url": f"ws://127.0.0.1:{p}/websocket/v1",
               "credentials": "sim", "taker_fee": fee}
              for n, p, fee in (("upbit", up, 0.0005), ("bithumb", bt, 0.0004))]
    actors = [{"name": "sim", "kind": "sim"},
              {"name": "feed.upbit", "kind": "feed", "params": {"venue": "upbit"}},
              {"name": "feed.bithumb", "kind": "feed", "params": {"venue": "bithumb"}},
              {"name": "book", "kind": "book"},
              {"name": "execution", "kind": "execution", "params": {"max_notional_krw": 1_000_000}},
              {"name": "strategy", "kind": "strategy", "params": {
                  "min_edge_bps": 15, "cooldown_ms": 300, "max_notional_krw": 1_000_000,
                  "max_move_bps": 200}}]
    sim = {"step_ms": 100, "dislocation": {"rate_per_min": 0.0},
           "upbit": {"port": up, "fee_rate": 0.0005}, "bithumb": {"port": bt, "fee_rate": 0.0004}}
    workdir = Path(tempfile.mkdtemp(prefix="karb-bench-", dir="/tmp"))
    config_path = workdir / "pipeline.yaml"
    config_path.write_text(yaml.safe_dump({
        "supervisor": {"run_dir": str(workdir / "run"), "status_port": status_port,
                       "max_restarts": 1000},
        "venues": venues, "markets": markets, "sim": sim, "actors": actors}))
    config = load_config(config_path)
    proc = subprocess.Popen([sys.executable, str(REPO / "supervisor.py"), str(config_path)],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ctx = zmq.Context()
    book_us: list[float] = []
    t2t_us: list[float] = []
    first_sent: dict[str, int] = {}
    try:
        def status() -> dict[str, Any]:
            url = f"http://127.0.0.1:{status_port}/api/status"
            with urllib.request.urlopen(url, timeout=2) as resp:
                return json.load(resp)

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if all(a["state"] == "RUNNING" for a in status()["actors"]):
                    break
            except OSError:
                pass
            time.sleep(0.1)
        sub = bus.Subscriber(ctx, config.bus, lambda t, m: None)
        sub.connect([bus.pub_endpoint(config, "book"), bus.pub_endpoint(config, "execution")])
        sub.subscribe([topics.TOP_OF_BOOK, topics.ORDER])
        end = time.monotonic() + seconds
        next_window, k = time.monotonic() + 1.0, 0
        stats_sample: dict[str, Any] = {}
        while time.monotonic() < end:
            now = time.monotonic()
            if now >= next_window:  # open a window on a rotating market and venue
                venue, port = (("bithumb", bt), ("upbit", up))[k % 2]
                body = json.dumps({"market": markets[k % len(markets)], "bps": 90,
                                      "duration_ms": 800}).encode()
                req = urllib.request.Request(f"http://127.0.0.1:{port}/_sim/dislocate", data=body,
                                             method="POST")
                urllib.request.urlopen(req, timeout=2).close()
                k += 1
                next_window = now + 1.5
            if not stats_sample and now > end - seconds / 2:
                status()  # prime cpu_percent windows
                stats_sample = {"t": now}
            got = sub.recv_blocking(50)
            if got is None:
                continue
            msg = got[1]
            if isinstance(msg, TopOfBookUpdate) and msg.recv_mono and msg.shm_mono:
                book_us.append((msg.shm_mono - msg.recv_mono) / 1000)
            elif (isinstance(msg, OrderEvent) and msg.role != "hedge" and msg.sent_mono
                  and msg.recv_mono and msg.intent_id not in first_sent):
                first_sent[msg.intent_id] = msg.sent_mono
                t2t_us.append((msg.sent_mono - msg.recv_mono) / 1000)
        final = status()["actors"]
        sub.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        ctx.destroy(linger=0)
    pipeline = [a for a in final if a["name"] != "sim"]
    sim_actor = [a for a in final if a["name"] == "sim"]
    out = {"book_update_us_p50": round(statistics.median(book_us), 1),
           "book_update_us_p99": round(percentile(book_us, 99), 1),
           "book_update_samples": len(book_us),
           "pipeline_rss_mb": round(sum(a["rss_bytes"] for a in pipeline) / 2**20, 1),
           "pipeline_cpu_percent": round(sum(a["cpu_percent"] for a in pipeline), 1),
           "sim_rss_mb": round(sum(a["rss_bytes"] for a in sim_actor) / 2**20, 1),
           "sim_cpu_percent": round(sum(a["cpu_percent"] for a in sim_actor), 1)}
    if t2t_us:
        out.update(tick_to_trade_us_p50=round(statistics.median(t2t_us), 1),
                   tick_to_trade_us_p99=round(percentile(t2t_us, 99), 1),
                   tick_to_trade_samples=len(t2t_us))
    return out


BENCHES: list[Callable[[], dict[str, float]]] = [
    bench_shm, bench_parse, bench_raw_pyzmq, bench_bus_hop, bench_restart, bench_hang, bench_sim_ws,
    bench_pipeline]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.py", description="Print K-Arb performance figures.")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--only", action="append", default=[],
                        help="run only benches whose name contains this (repeatable)")
    args = parser.parse_args(argv)
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
