"""Ten markets on two venues for 60 s: no bus gaps, no unbounded memory growth, no errors."""

from __future__ import annotations

import time
from pathlib import Path

import zmq

from karb import bus
from karb.config import load_config
from karb.messages import Heartbeat
from tests.process.pipeline import pipeline_config, rows
from tests.support import SupervisorProc

MARKETS = ["KRW-BTC", "KRW-ETH", "KRW-XRP", "KRW-SOL", "KRW-DOGE", "KRW-ADA", "KRW-TRX",
           "KRW-LINK", "KRW-AVAX", "KRW-DOT"]
SOAK_S = 60.0


def test_ten_markets_for_a_minute(workdir: Path) -> None:
    config = pipeline_config(workdir, MARKETS, sim={"dislocation": {
        "rate_per_min": 12.0, "size_bps": 70.0, "duration_ms": 1500}})
    cfg = load_config(config)
    with SupervisorProc(config) as sup:
        sup.wait_running(30)
        ctx = zmq.Context()
        sub = bus.Subscriber(ctx, cfg.bus, lambda t, m: None)
        sub.connect(bus.pub_endpoint(cfg, a.name) for a in cfg.actors)
        sub.subscribe([b""])  # everything every actor publishes
        rss_early: dict[str, int] = {}
        heartbeats: dict[str, Heartbeat] = {}
        messages = 0
        start = time.monotonic()
        try:
            while (elapsed := time.monotonic() - start) < SOAK_S:
                got = sub.recv_blocking(100)
                if got is None:
                    continue
                messages += 1
                if isinstance(got[1], Heartbeat):
                    heartbeats[got[1].src] = got[1]
                if not rss_early and elapsed > 15:
                    rss_early = {n: a["rss_bytes"] for n, a in sup.actors().items()}
        finally:
            sub.close()
            ctx.destroy(linger=0)
        late = sup.actors()
        log = sup.log()
        trades = rows(sup, "SELECT COUNT(*) AS n FROM intents WHERE state='DONE'")[0]["n"]
        assert messages > 10_000, messages  # books on 20 slots at 10/s, plus the rest
        assert sub.tracker.gaps == 0, f"{sub.tracker.gaps} messages lost on the bus"
        assert sub.tracker.restarts == 0 and all(a["restarts"] == 0 for a in late.values())
        for name, hb in heartbeats.items():
            assert hb.gaps == 0 and hb.malformed == 0, (name, hb)
        for name, actor in late.items():
            grew = actor["rss_bytes"] - rss_early[name]
            assert grew < 20 * 2**20, f"{name} grew {grew / 2**20:.1f} MB in 45 s"
        for bad in ("ERROR", "Traceback", "CRITICAL", "bus gap"):
            assert bad not in log, f"{bad!r} in the log"
        assert trades >= 3, f"only {trades} round trips in a minute of dislocations"
