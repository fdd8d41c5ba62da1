#!/usr/bin/env python3
"""Sniff the bus of a running K-Arb without disturbing it.

    python tools/tap.py configs/sim.yaml                      every message, one line each
    python tools/tap.py configs/sim.yaml --topic hb. --json   heartbeats as JSON lines
    python tools/tap.py configs/sim.yaml --stats --duration 10
    python tools/tap.py configs/sim.yaml --trades             the venues' public trades
    python tools/tap.py configs/sim.yaml --shm                the shared-memory top of book
    python tools/tap.py configs/sim.yaml --rebal              the rebalancer: targets, skew,
                                                              transfers in flight

The tap connects one SUB socket to every publisher the config names. ZeroMQ gives each
subscriber its own queue, so a slow tap only ever loses its own messages (counted as gaps).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import msgspec
import zmq

from karb import bus
from karb.config import Config, ConfigError, load_config
from karb import topics
from karb.messages import BusMessage, TradeTick
from karb.supervision.rundir import supervisor_running
from karb.shm import CROSSED, STALE, VALID, ShmError, TopOfBookTable, segment_path


@dataclass
class TopicStats:
    messages: int = 0
    gaps: int = 0
    restarts: int = 0
    first_ns: int = 0
    last_ns: int = 0


def message_fields(msg: BusMessage) -> dict[str, Any]:
    fields = {name: getattr(msg, name) for name in msg.__struct_fields__}
    return {"type": type(msg).__struct_config__.tag, **msgspec.to_builtins(fields)}


def format_trade(topic: str, t: TradeTick) -> str:
    """One public trade: taker side, size at price, the venue's trade id, its age on arrival."""
    lag_ms = (t.ts_init - t.ts_event) / 1e6 if t.ts_event else 0.0
    return (f"{time.strftime('%H:%M:%S')} {topic:<24} trade {t.side:<4} {t.volume:.8g} @ "
            f"{t.price:,.12g} #{t.sequential_id} venue+{lag_ms:.0f}ms"
            f"{' SNAPSHOT' if t.snapshot else ''} src={t.src} seq={t.seq}")


def format_line(topic: str, msg: BusMessage) -> str:
    if isinstance(msg, TradeTick):
        return format_trade(topic, msg)
    fields = message_fields(msg)
    head = f"{time.strftime('%H:%M:%S')} {topic:<24} {fields.pop('type')}"
    envelope = f"src={fields.pop('src')} inc={fields.pop('inc')} seq={fields.pop('seq')}"
    for key in ("ts_event", "ts_init"):
        fields.pop(key)
    body = " ".join(f"{k}={v}" for k, v in fields.items())
    return f"{head} {envelope} {body}"


def sniff(config: Config, args: argparse.Namespace) -> int:
    ctx = zmq.Context()
    sub = bus.Subscriber(ctx, config.bus, lambda topic, msg: None)
    sub.connect(bus.pub_endpoint(config, a.name) for a in config.actors)
    prefixes = [t.encode() for t in args.topic] + ([topics.TRADE] if args.trades else [])
    sub.subscribe(prefixes or [b""])
    stats: dict[str, TopicStats] = defaultdict(TopicStats)
    deadline = time.monotonic() + args.duration if args.duration else None
    seen = 0
    stopped = False

    def stop(*_: object) -> None:
        nonlocal stopped
        stopped = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        while not stopped and (args.count is None or seen < args.count):
            if deadline is not None and time.monotonic() >= deadline:
                break
            gaps, restarts = sub.tracker.gaps, sub.tracker.restarts
            got = sub.recv_blocking(100)
            if got is None:
                continue
            topic_b, msg = got
            topic = topic_b.decode(errors="replace")
            seen += 1
            entry = stats[topic]
            now = time.monotonic_ns()
            entry.first_ns = entry.first_ns or now
            entry.last_ns = now
            entry.messages += 1
            entry.gaps += sub.tracker.gaps - gaps
            entry.restarts += sub.tracker.restarts - restarts
            if args.stats:
                continue
            if args.json:
                print(json.dumps({"topic": topic, **message_fields(msg)}), flush=True)
            else:
                print(format_line(topic, msg), flush=True)
    finally:
        sub.close()
        ctx.destroy(linger=0)
    if args.stats:
        print_stats(stats, args.json)
    return 0


def print_stats(stats: dict[str, TopicStats], as_json: bool) -> None:
    rows = []
    for topic in sorted(stats):
        s = stats[topic]
        span_s = (s.last_ns - s.first_ns) / 1e9
        rate = (s.messages - 1) / span_s if span_s > 0 else 0.0
        rows.append({"topic": topic, "messages": s.messages, "rate_per_s": round(rate, 1),
                     "gaps": s.gaps, "publisher_restarts": s.restarts})
    if as_json:
        print(json.dumps({"topics": rows}))
        return
    print(f"{'topic':<32} {'msgs':>8} {'rate/s':>9} {'gaps':>6} {'restarts':>8}")
    for r in rows:
        print(f"{r['topic']:<32} {r['messages']:>8} {r['rate_per_s']:>9} {r['gaps']:>6} "
              f"{r['publisher_restarts']:>8}")


def show_shm(config: Config, args: argparse.Namespace) -> int:
    try:
        table = TopOfBookTable.attach(segment_path(config.run_dir), len(config.venues),
                                      len(config.markets))
    except ShmError as exc:
        print(f"tap: {exc}", file=sys.stderr)
        return 1
    deadline = time.monotonic() + (args.duration or 0)
    try:
        while True:
            rows = []
            for vi, venue in enumerate(config.venues):
                for mi, market in enumerate(config.markets):
                    rows.append(shm_row(venue.name, market, table.read(table.slot(vi, mi))))
            if args.json:
                print(json.dumps({"top_of_book": rows}), flush=True)
            else:
                print(f"{'venue':<8} {'market':<10} {'bid':>14} {'size':>12} {'ask':>14} "
                      f"{'size':>12} {'age_ms':>8} flags")
                for r in rows:
                    print(f"{r['venue']:<8} {r['market']:<10} {r['bid_px']:>14} {r['bid_size']:>12} "
                          f"{r['ask_px']:>14} {r['ask_size']:>12} {r['age_ms']:>8} {r['flags']}")
            if time.monotonic() >= deadline:
                return 0
            time.sleep(1)
    finally:
        table.close()


def show_rebal(config: Config, args: argparse.Namespace) -> int:
    """The rebalancer's ``rebal`` command: one line per currency, one per open transfer."""
    import asyncio
    import uuid

    import zmq.asyncio

    from karb.messages import ControlReply, ControlRequest
    names = [a.name for a in config.actors if a.kind == "rebalancer"]
    if not names:
        print("tap: the config has no rebalancer actor", file=sys.stderr)
        return 1

    async def ask() -> ControlReply | None:
        actx = zmq.asyncio.Context()
        client = bus.LazyPirateClient(actx, bus.control_endpoint(config, names[0]), 2000,
                                      attempts=2, bus=config.bus)
        try:
            req_id = uuid.uuid4().hex
            reply = await client.request(ControlRequest(req_id=req_id, cmd="rebal"), req_id)
            return reply if isinstance(reply, ControlReply) else None
        except bus.PeerUnavailable:
            return None
        finally:
            client.close()
            actx.destroy(linger=0)

    reply = asyncio.run(ask())
    if reply is None or not reply.ok:
        print(f"tap: {names[0]} did not answer", file=sys.stderr)
        return 1
    report = json.loads(reply.detail)
    if args.json:
        print(json.dumps(report), flush=True)
        return 0
    for cur, s in report["skew"].items():
        shares = " ".join(f"{v} {s['shares'][v]:.1%}/{s['targets'][v]:.0%}" for v in s["shares"])
        flag = f"OUT {s['out_for_s']:.0f}s" if s["out_of_band"] else "in band"
        print(f"rebal {cur:<6} {shares}  band ±{s['band']:.0%}  {flag}  "
              f"{s.get('algo', '') or ''}".rstrip())
    for t in report["transfers"]:
        print(f"rebal transfer {t['id']} {t['amount']:g} {t['coin']} {t['from']}→{t['to']} "
              f"{t['state']} {t['age_s']:.0f}s{' STUCK' if t['stuck'] else ''}")
    for a in report.get("algos", []):
        print(f"rebal algo {a['id']} {a['algo']} {a['market']} buy {a['buy']} sell {a['sell']} "
              f"{a['filled']:g}/{a['volume']:g} hedged, {a['children']} children")
    for state, row in report.get("quality", {}).items():
        print(f"rebal quality {state:<9} " + "  ".join(
            f"{algo} n={q['n']} {q['shortfall_bps']:+.1f}bps fill {q['fill_rate']:.0%}"
            for algo, q in row.items()))
    print("rebal counts " + " ".join(f"{k}={v}" for k, v in report["counts"].items()))
    return 0


def shm_row(venue: str, market: str, top: Any) -> dict[str, Any]:
    if top is None:
        return {"venue": venue, "market": market, "bid_px": None, "bid_size": None, "ask_px": None,
                "ask_size": None, "age_ms": None, "flags": "UNREADABLE"}
    flags = [name for bit, name in ((VALID, "VALID"), (CROSSED, "CROSSED"), (STALE, "STALE"))
             if top.flags & bit] or ["EMPTY"]
    age = round((time.time_ns() - top.ts_init) / 1e6, 1) if top.ts_init else None
    return {"venue": venue, "market": market, "bid_px": top.bid_px, "bid_size": top.bid_size,
            "ask_px": top.ask_px, "ask_size": top.ask_size, "age_ms": age, "flags": "|".join(flags)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tap.py", description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("--topic", action="append", default=[],
                        help="topic prefix to show (repeatable; default: everything)")
    parser.add_argument("--trades", action="store_true",
                        help="the venues' public trades (same as --topic trade.)")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument("--count", type=int, help="stop after N messages")
    parser.add_argument("--duration", type=float, help="stop after S seconds")
    parser.add_argument("--stats", action="store_true",
                        help="per-topic rate, gaps and publisher restarts at the end")
    parser.add_argument("--shm", action="store_true", help="show the shared-memory top of book")
    parser.add_argument("--rebal", action="store_true",
                        help="the rebalancer: targets, skew, transfers in flight")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"tap: {exc}", file=sys.stderr)
        return 2
    if not supervisor_running(config.run_dir):
        print(f"tap: nothing is running on run dir {config.run_dir} "
              f"(start it with: python supervisor.py {args.config})", file=sys.stderr)
        return 1
    if args.rebal:
        return show_rebal(config, args)
    return show_shm(config, args) if args.shm else sniff(config, args)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:  # piped into head & co: the reader left, nothing to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
