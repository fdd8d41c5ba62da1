"""Ten markets on two venues for 7 s of dislocations: nothing lost on the bus, nothing
restarted, no error, and the money agrees three ways at the end. Rates, memory growth and
round trips per minute are figures, not pass marks: ``tools/bench.py --only pipeline``."""

from __future__ import annotations

import time
from pathlib import Path

import zmq

from karb import bus
from karb.config import load_config
from karb.messages import Heartbeat
from tests.process.pipeline import Venues, assert_money_agrees, pipeline_config, quiesce, rows
from tests.support import SupervisorProc, eventually

MARKETS = ["KRW-BTC", "KRW-ETH", "KRW-XRP", "KRW-SOL", "KRW-DOGE", "KRW-ADA", "KRW-TRX",
           "KRW-LINK", "KRW-AVAX", "KRW-DOT"]
SOAK_S = 7.0


def test_ten_markets_under_dislocations(workdir: Path) -> None:
    config = pipeline_config(workdir, MARKETS, sim={"dislocation": {
        "rate_per_min": 24.0, "size_bps": 70.0, "duration_ms": 1500}})
    cfg = load_config(config)
    with SupervisorProc(config) as sup:
        sup.wait_running(30)
        venues = Venues(sup)
        start_balances = venues.balances()
        ctx = zmq.Context()
        sub = bus.Subscriber(ctx, cfg.bus, lambda t, m: None)
        sub.connect(bus.pub_endpoint(cfg, a.name) for a in cfg.actors)
        sub.subscribe([b""])  # everything every actor publishes
        heartbeats: dict[str, Heartbeat] = {}
        venues.dislocate("bithumb", "KRW-ETH", 80, 1500)  # at least one window for certain
        start = time.monotonic()
        try:
            while time.monotonic() - start < SOAK_S:
                got = sub.recv_blocking(100)
                if got is not None and isinstance(got[1], Heartbeat):
                    heartbeats[got[1].src] = got[1]
        finally:
            sub.close()
            ctx.destroy(linger=0)
        eventually(lambda: rows(sup, "SELECT 1 FROM intents WHERE state='DONE'"), 15,
                   what="a round trip")
        quiesce(sup)
        assert_money_agrees(sup, venues, start_balances)
        late = sup.actors()
        log = sup.log()
        assert sub.received > 0
        assert sub.tracker.gaps == 0, f"{sub.tracker.gaps} messages lost on the bus"
        assert sub.tracker.restarts == 0 and all(a["restarts"] == 0 for a in late.values())
        assert set(heartbeats) == {a.name for a in cfg.actors}
        for name, hb in heartbeats.items():
            assert hb.gaps == 0 and hb.malformed == 0, (name, hb)
        for bad in ("ERROR", "Traceback", "CRITICAL", "bus gap"):
            assert bad not in log, f"{bad!r} in the log"
