#!/usr/bin/env python3
"""What recording costs and how fast a recording replays.

    python tools/bench_recording.py replay              a synthetic recording of simulator books
    python tools/bench_recording.py replay --data DIR   an existing recording (a run dir's recording/)
    python tools/bench_recording.py cpu --seconds 20    the recorder in the sim pipeline, 10 markets

``replay`` prints records per second read by :func:`karb.recording.read_records` (framing and
inflating) and :func:`karb.recording.read_messages` (plus decoding every bus message: what a
backtest needs). ``cpu`` runs the whole pipeline (simulator, feeds, book, execution, strategy
and the recorder) on 10 markets x 2 venues and prints the recorder's CPU as a percentage of
one core over the window, from its process's CPU times.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import psutil
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tools"))

from bench_runtime import scratch_dir, stop

from karb.config import SimConfig
from karb.messages import BookUpdate, encode
from karb.recording import RecordWriter, read_messages, read_records
from karb.sim.market import MarketModel
from karb.sim.server import DEFAULT_MARKETS

DEPTH = 15  # what the feeds publish by default
RECORD = os.environ.get("RECORD", "md,sig,ord,fill,pos").split(",")


def synthetic_recording(directory: Path, books: int) -> None:
    """``books`` BookUpdates of 10 markets x 2 venues as the feeds publish them, one member
    per 200 (a second of books at 10 markets, 2 venues, 10 steps a second)."""
    model = MarketModel(DEFAULT_MARKETS, SimConfig(seed=1), 0)
    writer = RecordWriter(directory)
    t_ns = 1_795_000_000 * 10**9
    n = 0
    while n < books:
        now_ms = model.now_ms + 100
        for venue, market in model.step(now_ms):
            b = model.book(venue, market)
            msg = BookUpdate(venue=venue, market=market, bids=[(p, s) for p, s in b.bids[:DEPTH]],
                             asks=[(p, s) for p, s in b.asks[:DEPTH]], ts_event=now_ms * 10**6,
                             ts_init=now_ms * 10**6, seq=n)
            writer.add(t_ns + now_ms * 10**6, f"md.{venue}.{market}".encode(), encode(msg))
            n += 1
        if n % 200 == 0:
            writer.flush()
    writer.close()


def bench_replay(data: Path | None, books: int) -> dict[str, float]:
    if data is None:
        data = scratch_dir() / "recording"
        synthetic_recording(data, books)
    size = sum(f.stat().st_size for f in data.rglob("*.karb.gz")) if data.is_dir() else data.stat().st_size
    figures: dict[str, float] = {"replay_file_mb": round(size / 1e6, 2)}
    for name, reader in (("replay_records_per_s", read_records), ("replay_messages_per_s", read_messages)):
        best = 0.0
        for _ in range(3):
            start = time.perf_counter()
            count = sum(1 for _ in reader(data))
            best = max(best, count / (time.perf_counter() - start))
        figures[name] = round(best)
        figures["replay_records"] = count
    return figures


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def bench_cpu(seconds: float) -> dict[str, float]:
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
                  "max_move_bps": 200}},
              {"name": "recorder", "kind": "recorder", "params": {"record": RECORD}}]
    sim = {"step_ms": 100, "dislocation": {"rate_per_min": 20.0, "size_bps": 60.0},
           "upbit": {"port": up, "fee_rate": 0.0005}, "bithumb": {"port": bt, "fee_rate": 0.0004}}
    workdir = scratch_dir()
    config_path = workdir / "recording.yaml"
    config_path.write_text(yaml.safe_dump({
        "supervisor": {"run_dir": str(workdir / "run"), "status_port": status_port},
        "venues": venues, "markets": DEFAULT_MARKETS, "sim": sim, "actors": actors}))
    proc = subprocess.Popen([sys.executable, str(REPO / "supervisor.py"), str(config_path)],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def status() -> dict[str, Any]:
            url = f"http://127.0.0.1:{status_port}/api/status"
            with urllib.request.urlopen(url, timeout=2) as resp:
                return dict(json.load(resp))

        deadline = time.monotonic() + 60
        actors_up: dict[str, Any] = {}
        while time.monotonic() < deadline:
            try:
                actors_up = {a["name"]: a for a in status()["actors"]}
                if all(a["state"] == "RUNNING" for a in actors_up.values()):
                    break
            except OSError:
                pass
            time.sleep(0.2)
        else:
            raise SystemExit("the pipeline did not start within 60 s")
        time.sleep(2.0)  # books flowing, connections settled
        recorder = psutil.Process(actors_up["recorder"]["pid"])
        directory = workdir / "run" / "recording"
        cpu0, wall0 = sum(recorder.cpu_times()[:2]), time.monotonic()
        records0 = sum(1 for _ in read_records(directory))
        time.sleep(seconds)
        cpu1, wall1 = sum(recorder.cpu_times()[:2]), time.monotonic()
        records1 = sum(1 for _ in read_records(directory))
        size = sum(f.stat().st_size for f in directory.glob("*.karb.gz"))
        return {"recorder_cpu_percent": round(100 * (cpu1 - cpu0) / (wall1 - wall0), 2),
                "recorder_records_per_s": round((records1 - records0) / (wall1 - wall0), 1),
                "recorder_file_kb_per_s": round(size / 1e3 / (wall1 - wall0 + 2.0), 1)}
    finally:
        stop(proc, signal.SIGTERM, 15)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_recording.py", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    replay = sub.add_parser("replay", help="records per second reading a recording")
    replay.add_argument("--data", type=Path, help="an existing recording (file or directory)")
    replay.add_argument("--books", type=int, default=300_000, help="size of the synthetic one")
    cpu = sub.add_parser("cpu", help="the recorder's CPU in the sim pipeline, 10 markets")
    cpu.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    figures = bench_replay(args.data, args.books) if args.what == "replay" else bench_cpu(args.seconds)
    if args.json:
        print(json.dumps(figures))
    else:
        for key, value in figures.items():
            print(f"{key:<26} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
