"""Benchmarks of the whole pipeline against the simulator."""

from __future__ import annotations

import json
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml
import zmq

from karb import bus, topics
from karb.config import load_config
from karb.messages import OrderEvent, TopOfBookUpdate

REPO = Path(__file__).resolve().parent.parent

from bench_runtime import percentile, stop, scratch_dir


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _watch(base: str, stop: threading.Event) -> None:
    """What an operator's screen does: the live page's event stream open, /metrics scraped
    once a second (karb/ops)."""
    def page() -> None:
        with urllib.request.urlopen(base + "/events", timeout=10) as resp:
            while not stop.is_set():
                resp.readline()
    threading.Thread(target=page, daemon=True).start()
    while not stop.wait(1.0):
        urllib.request.urlopen(base + "/metrics", timeout=5).read()


def bench_pipeline(seconds: float = 30.0, watched: bool = False) -> dict[str, float]:
    """The whole pipeline on 10 markets with the simulator streaming and a window opening
    every ~1.5 s: book update and tick-to-trade latencies from the bus, RSS and CPU of the
    actors from the status API (the simulator is reported apart: it stands in for the venues),
    the bus rate, RSS growth over the second half and round trips per minute (what the soak
    test used to assert as thresholds)."""

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
    workdir = scratch_dir()
    config_path = workdir / "pipeline.yaml"
    config_path.write_text(yaml.safe_dump({
        "supervisor": {"run_dir": str(workdir / "run"), "status_port": status_port,
                       "max_restarts": 1000},
        "venues": venues, "markets": markets, "sim": sim, "actors": actors}))
    config = load_config(config_path)
    proc = subprocess.Popen([sys.executable, str(REPO / "supervisor.py"), str(config_path)],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ctx = zmq.Context()
    watching = threading.Event()
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
        if watched:
            threading.Thread(target=_watch, args=(f"http://127.0.0.1:{status_port}", watching),
                             daemon=True).start()
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
                actors = status()["actors"]  # also primes the cpu_percent windows
                stats_sample = {"t": now, "rss": sum(a["rss_bytes"] for a in actors),
                                "out": sum(a["msgs_out"] for a in actors)}
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
        half_s = time.monotonic() - stats_sample["t"]
        sub.close()
        journal = sqlite3.connect(f"file:{workdir / 'run' / 'journal.sqlite'}?mode=ro", uri=True)
        try:
            done = journal.execute("SELECT COUNT(*) FROM intents WHERE state='DONE'").fetchone()[0]
        finally:
            journal.close()
    finally:
        watching.set()
        stop(proc, signal.SIGTERM, 30)
        ctx.destroy(linger=0)
    pipeline = [a for a in final if a["name"] != "sim"]
    sim_actor = [a for a in final if a["name"] == "sim"]
    out = {"book_update_us_p50": round(statistics.median(book_us), 1),
           "book_update_us_p99": round(percentile(book_us, 99), 1),
           "book_update_samples": len(book_us),
           "pipeline_rss_mb": round(sum(a["rss_bytes"] for a in pipeline) / 2**20, 1),
           "pipeline_cpu_percent": round(sum(a["cpu_percent"] for a in pipeline), 1),
           "sim_rss_mb": round(sum(a["rss_bytes"] for a in sim_actor) / 2**20, 1),
           "sim_cpu_percent": round(sum(a["cpu_percent"] for a in sim_actor), 1),
           "bus_msgs_per_s": round((sum(a["msgs_out"] for a in final) - stats_sample["out"])
                                   / half_s, 1),
           "rss_growth_mb_second_half": round(
               (sum(a["rss_bytes"] for a in final) - stats_sample["rss"]) / 2**20, 1),
           "round_trips_per_min": round(done / seconds * 60, 1)}
    if t2t_us:
        out.update(tick_to_trade_us_p50=round(statistics.median(t2t_us), 1),
                   tick_to_trade_us_p99=round(percentile(t2t_us, 99), 1),
                   tick_to_trade_samples=len(t2t_us))
    return out
