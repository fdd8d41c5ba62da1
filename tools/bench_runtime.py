"""Benchmarks of the runtime: supervision, bus, shared memory."""

from __future__ import annotations

import atexit
import multiprocessing
import os
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import psutil
import yaml
import zmq

from karb import bus, topics
from karb.config import load_config
from karb.messages import Heartbeat, ProbeReport
from karb.shm import VALID, TopOfBookTable, segment_path

REPO = Path(__file__).resolve().parent.parent

HOP_SAMPLES = 4000
HOP_INTERVAL_US = 1000
RESTARTS = 20
HANGS = 5


def scratch_dir() -> Path:
    """A short-pathed temp dir (ipc paths), removed when the benchmark exits."""
    path = Path(tempfile.mkdtemp(prefix="karb-bench-", dir="/tmp"))
    atexit.register(shutil.rmtree, path, True)
    return path


def stop(proc: subprocess.Popen[Any], sig: int, timeout_s: float) -> None:
    """Ask a benchmark's process to stop with ``sig``; kill it if it has not within the time."""
    if proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


class RunningSupervisor:
    """The real supervisor.py on a throwaway run dir."""

    def __init__(self, actors: list[dict[str, Any]], **supervisor: Any) -> None:
        self.dir = scratch_dir()
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
        stop(self.proc, signal.SIGTERM, 20)
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

            def replaced(h: Heartbeat, old: int = old) -> bool:
                return h.inc > old and h.state == "RUNNING"

            hb = sup.wait_heartbeat(sub, "idle-b", replaced)
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

            def restarted(h: Heartbeat, last: int = last_inc) -> bool:
                return h.inc > last and h.state == "RUNNING"

            hb = sup.wait_heartbeat(sub, "idle-a", restarted)
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
    path = scratch_dir() / "raw.pub"
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
    path = segment_path(scratch_dir())
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
