#!/usr/bin/env python3
"""Chaos against the whole pipeline, then a money audit: did anything get lost?

    python tools/chaos.py --duration 60                  SIGKILL random actors while trading
    python tools/chaos.py --duration 600 --faults        ... and inject network faults
    python tools/chaos.py --duration 45 --faults --json  one JSON object

Starts ``supervisor.py`` on a copy of the config (fresh run dir under /tmp, free ports), waits
for every actor to be RUNNING, then for ``--duration`` seconds: pulls the simulated venues apart
often (``/_sim/dislocate``) so intents happen; SIGKILLs random actors, execution most often and
half of those aimed 1-300 ms after an intent was sent or a leg reported in flight on the bus
(if it is over by then, the kill waits for the next one);
with ``--faults``, injects random ``/_sim/faults/*`` on either venue (a 404 means the simulator
does not have that fault: counted as unavailable). The simulator itself is never killed: it is
the venues, and its records are the truth the audit needs. Then it quiesces (faults cleared,
kill switch file, wait until the journal has nothing open), audits while the simulator still
runs (``tools/chaos_audit.py``), stops the supervisor with SIGTERM and prints one line per figure.

Exit 0 only when every money check is zero and the supervisor exited 0; 1 otherwise; 2 on a
usage or config error. The run dir is kept when the run fails (``--keep`` to change that).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import signal
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import msgspec
import zmq
from chaos_audit import (
    FINAL_LEG_STATES,
    OPEN_INTENT_STATES,
    Audit,
    audit,
    totals,
)
from chaos_faults import FaultInjector
from chaos_pipeline import Pipeline, chaos_config, remove, scratch_dir
from chaos_report import print_report, report

from karb import bus, topics
from karb.config import ConfigError
from karb.messages import Alert, OrderEvent, Signal

# Relative odds of each actor being the next one killed; the simulator stands in for the
# venues and is never killed.
KILL_WEIGHTS = {"execution": 5.0, "strategy": 2.0, "book": 2.0, "feed.upbit": 1.0,
                "feed.bithumb": 1.0}
AIMED_SHARE = 0.5  # of execution kills, wait for an intent in flight
# An aimed kill lands 1-300 ms after its trigger, log-uniformly: a healthy IOC round trip is
# over in a few ms, a faulty one takes seconds, and both should be hit.
AIM_MIN_S, AIM_MAX_S = 0.001, 0.3
ARM_TIMEOUT_S = 5.0  # no intent in flight this long: kill execution anyway
Keep = Literal["always", "failure", "never"]


class Stop(Exception):
    """SIGTERM or SIGINT: stop the run, clean up."""


@dataclass
class Chaos:
    pipeline: Pipeline
    rng: random.Random
    faults: FaultInjector | None
    kill_every_s: float
    kills: Counter[str] = field(default_factory=Counter)
    dislocations: int = 0
    intents_sent: set[str] = field(default_factory=set)
    legs: dict[str, dict[str, str]] = field(default_factory=dict)  # intent → client id → state
    armed_until: float | None = None
    fire_at: float | None = None
    aimed_at: str = ""  # the intent an aimed kill waits for
    aimed_missed: int = 0  # it was final before the kill was due: aimed again
    kill_times: list[float] = field(default_factory=list)
    alerts: list[tuple[str, str, str]] = field(default_factory=list)  # (level, market, text)
    _ctx: zmq.Context[Any] | None = None
    _sub: bus.Subscriber | None = None

    def stats(self) -> dict[str, Any]:
        faults = self.faults
        return {
            "kills": sum(n for k, n in self.kills.items() if "(" not in k),
            "kills_by_actor": dict(self.kills), "aimed_missed": self.aimed_missed,
            "faults": sum(faults.injected.values()) if faults else 0,
            "faults_by_kind": dict(faults.injected) if faults else {},
            "faults_unavailable": sorted(faults.unavailable) if faults else [],
            "faults_refused": dict(faults.failed) if faults else {},
            "dislocations": self.dislocations, "intents_sent": len(self.intents_sent),
            "alerts": list(self.alerts),
        }

    def open_bus(self) -> None:
        """Watch intents, legs and alerts (the executor's and strategy's publishers)."""
        cfg = self.pipeline.config
        self._ctx = zmq.Context()
        self._sub = bus.Subscriber(self._ctx, cfg.bus, lambda topic, msg: None)
        self._sub.connect([bus.pub_endpoint(cfg, "execution"), bus.pub_endpoint(cfg, "strategy")])
        self._sub.subscribe([topics.ORDER, topics.SIGNAL, topics.ALERT])

    def close_bus(self) -> None:
        if self._sub is not None:
            self._sub.close()
        if self._ctx is not None:
            self._ctx.destroy(linger=0)
        self._sub = self._ctx = None

    def pump(self, timeout_ms: int) -> None:
        """Take what the bus has (waiting at most ``timeout_ms`` for the first message)."""
        assert self._sub is not None
        wait = timeout_ms
        for _ in range(1000):  # bounded: the next kill or fault must not wait on a busy bus
            try:
                got = self._sub.recv_blocking(wait)
            except msgspec.DecodeError:
                continue
            if got is None:
                return
            self._watch(got[1], time.monotonic())
            wait = 0

    def run(self, duration_s: float) -> None:
        now = time.monotonic()
        end = now + duration_s
        next_kill = now + self._interval()
        next_dislocate = now + 0.5
        while (now := time.monotonic()) < end:
            if self.pipeline.proc.poll() is not None:
                raise RuntimeError(f"the supervisor exited with {self.pipeline.proc.returncode} "
                                   f"during the run; see {self.pipeline.log_path}")
            if now >= next_dislocate:
                self._dislocate()
                next_dislocate = now + self.rng.uniform(0.6, 1.6)
            if self.faults is not None:
                self.faults.tick(now)
            if self.fire_at is not None and now >= self.fire_at:
                self._fire(now)
            elif self.armed_until is not None and now >= self.armed_until:
                self.armed_until = None  # nothing to aim at came: an ordinary kill
                self._kill("execution", "")
            if now >= next_kill:  # the ordinary schedule goes on while a kill is aimed
                next_kill = self._next_kill(now)
            self.pump(10)

    def _interval(self) -> float:
        return self.rng.uniform(0.5, 1.5) * self.kill_every_s

    def _fire(self, now: float) -> None:
        """An aimed kill is due: kill execution if its intent is still in flight, else aim again."""
        self.fire_at = None
        if not self._in_flight(self.aimed_at):
            self.aimed_missed += 1
            self.armed_until = now + ARM_TIMEOUT_S
        elif not self._kill("execution", "aimed"):
            self.armed_until = now + ARM_TIMEOUT_S

    def _next_kill(self, now: float) -> float:
        """Kill a random actor now, or aim the next execution kill at an intent in flight;
        returns when the next one is due."""
        names = [n for n in KILL_WEIGHTS if n in {a.name for a in self.pipeline.config.actors}]
        target = self.rng.choices(names, [KILL_WEIGHTS[n] for n in names])[0]
        aiming = self.armed_until is not None or self.fire_at is not None
        if target == "execution" and not aiming and self.rng.random() < AIMED_SHARE:
            self.armed_until = now + ARM_TIMEOUT_S
            return now + self._interval()
        return now + (self._interval() if self._kill(target, "") else 0.2)

    def _watch(self, msg: Any, now: float) -> None:
        """Intents sent and legs in flight, from the bus; an armed kill is aimed at them."""
        intent = ""
        if isinstance(msg, Signal) and msg.decision == "sent" and msg.intent_id:
            self.intents_sent.add(msg.intent_id)
            self.legs.setdefault(msg.intent_id, {})
            intent = msg.intent_id
        elif isinstance(msg, OrderEvent):
            self.legs.setdefault(msg.intent_id, {})[msg.client_id] = msg.state
            intent = msg.intent_id if msg.state not in FINAL_LEG_STATES else ""
        elif isinstance(msg, Alert):
            self.alerts.append((msg.level, msg.market, msg.text))
        if intent and self.armed_until is not None and self.fire_at is None:
            self.armed_until = None
            self.aimed_at = intent
            self.fire_at = now + math.exp(self.rng.uniform(math.log(AIM_MIN_S), math.log(AIM_MAX_S)))

    def _in_flight(self, intent: str) -> bool:
        """Not known to be over: fewer than two legs final (the bus says), or a leg still open."""
        legs = self.legs.get(intent, {})
        final = sum(state in FINAL_LEG_STATES for state in legs.values())
        return final < 2 or final < len(legs)

    def _kill(self, name: str, how: str) -> bool:
        """SIGKILL ``name`` if it is RUNNING and the restart limits allow it; True if killed."""
        sup = self.pipeline.config.supervisor
        now = time.monotonic()
        recent = [t for t in self.kill_times if now - t < sup.period_s]
        if len(recent) >= max(1, sup.max_restarts // 2):
            return False
        try:
            actor = self.pipeline.actors().get(name)
        except (OSError, ValueError):
            return False
        if not actor or actor["state"] != "RUNNING" or not actor.get("pid"):
            return False
        try:
            os.kill(int(actor["pid"]), signal.SIGKILL)
        except ProcessLookupError:
            return False
        self.kill_times = recent + [now]
        self.kills[name] += 1
        if how:
            self.kills[f"{name}({how})"] += 1
        return True

    def _dislocate(self) -> None:
        cfg = self.pipeline.config
        venue = self.rng.choice([v.name for v in cfg.venues])
        body = {"market": self.rng.choice(cfg.markets),
                "bps": self.rng.choice((-1, 1)) * self.rng.uniform(50, 100),
                "duration_ms": self.rng.randint(1000, 3000)}
        try:
            status, _ = self.pipeline.post(venue, "/_sim/dislocate", body)
        except OSError:
            return
        self.dislocations += status == 200


def quiesce(chaos: Chaos, timeout_s: float) -> tuple[bool, float]:
    """Faults off, kill switch on; wait for every order a fault held to land and for two
    reconciliation sweeps to start after that (when execution has them: ``reconcile_sweeps``
    in its heartbeat), then until the journal has nothing open and every actor is RUNNING
    (twice in a row, 0.5 s apart). Returns (drained, seconds waited)."""
    pipeline, faults = chaos.pipeline, chaos.faults
    started = time.monotonic()
    deadline = started + timeout_s
    if faults is not None:
        faults.clear_all()
    (pipeline.run_dir / "KILL").touch()
    lands_by = faults.lands_by if faults is not None else 0.0
    while time.monotonic() < min(lands_by, deadline):
        chaos.pump(100)
    sweeps_from: tuple[int, float] | None = None  # (incarnation, sweeps) after the landings
    calm = 0
    while time.monotonic() < deadline:
        chaos.pump(500)
        try:
            actors = pipeline.actors()
        except (OSError, ValueError):
            calm = 0
            continue
        execution = actors.get("execution", {})
        swept = True
        if "reconcile_sweeps" in (execution.get("extra") or {}):
            now_at = (int(execution.get("incarnation") or 0), execution["extra"]["reconcile_sweeps"])
            if sweeps_from is None or sweeps_from[0] != now_at[0]:
                sweeps_from = now_at  # a restarted execution reconciles at start anyway
            swept = now_at[1] >= sweeps_from[1] + 2
        rows = pipeline.journal()
        open_legs = [r for r in rows["legs"] if r["state"] not in FINAL_LEG_STATES]
        open_intents = [r for r in rows["intents"] if r["state"] in OPEN_INTENT_STATES]
        running = all(a["state"] == "RUNNING" for a in actors.values())
        calm = calm + 1 if swept and running and not open_legs and not open_intents else 0
        if calm >= 2:
            return True, time.monotonic() - started
    return False, time.monotonic() - started


def collect(pipeline: Pipeline) -> Audit:
    orders = {v: pipeline.get(v, "/_sim/orders") for v in pipeline.rest}
    accounts = {v: totals(pipeline.get(v, "/_sim/accounts").get(pipeline.access_key, {}))
                for v in pipeline.rest}
    rows = pipeline.journal()
    return audit(orders, accounts, pipeline.initial_balances(), rows["legs"], rows["intents"],
                 rows["events"], rows["halts"], pipeline.prices(), time.time_ns())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="chaos.py", description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, required=True, help="seconds of chaos")
    parser.add_argument("--faults", action="store_true", help="inject network faults too")
    parser.add_argument("--seed", type=int, default=None, help="for the tool and the simulator")
    parser.add_argument("--config", type=Path, default=Path(__file__).resolve().parent.parent
                        / "configs" / "sim.yaml", help="a sim config (default configs/sim.yaml)")
    parser.add_argument("--json", action="store_true", help="one JSON object")
    parser.add_argument("--kill-every", type=float, default=1.8, help="mean seconds between kills")
    parser.add_argument("--fault-every", type=float, default=1.8,
                        help="mean seconds between faults")
    parser.add_argument("--quiesce-timeout", type=float, default=60.0)
    parser.add_argument("--keep", choices=["always", "failure", "never"], default="failure",
                        help="keep the run dir and logs (default: when the run fails)")
    args = parser.parse_args(argv)
    if args.duration <= 0 or args.kill_every <= 0 or args.fault_every <= 0:
        parser.error("--duration, --kill-every and --fault-every must be positive")
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 31)
    workdir = scratch_dir()
    try:
        config_path = chaos_config(args.config, workdir, seed)
    except (ConfigError, ValueError, OSError) as exc:
        remove(workdir)
        print(f"chaos: {exc}", file=sys.stderr)
        return 2
    return run(args, seed, workdir, config_path)


def run(args: argparse.Namespace, seed: int, workdir: Path, config_path: Path) -> int:
    def stop(*_: object) -> None:
        raise Stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    rng = random.Random(seed)
    pipeline = Pipeline(config_path)
    ok = False
    try:
        print(f"chaos: seed {seed}, run dir {pipeline.run_dir}", file=sys.stderr)
        pipeline.wait_running(60)
        faults = FaultInjector(pipeline, rng, args.fault_every) if args.faults else None
        chaos = Chaos(pipeline, rng, faults, args.kill_every)
        chaos.open_bus()
        try:
            chaos.run(args.duration)
            drained = quiesce(chaos, args.quiesce_timeout)
            restarts = {name: int(a.get("restarts") or 0) for name, a in pipeline.actors().items()}
            result = collect(pipeline)
        finally:
            chaos.close_bus()
        code = pipeline.stop()
        stats = chaos.stats()
        # Restarts the kills do not explain: actors that died on their own (or hung).
        stats["crashes_by_actor"] = {name: n - chaos.kills[name] for name, n in restarts.items()
                                     if n > chaos.kills[name]}
        out = report(stats, result, drained, code)
        out["seed"] = seed
        if args.json:
            print(json.dumps(out))
        else:
            print_report(out)
        ok = result.clean and code == 0
    except Stop:
        print("chaos: stopped", file=sys.stderr)
    except (RuntimeError, OSError) as exc:  # the pipeline died or never came up
        print(f"chaos: {exc}", file=sys.stderr)
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        pipeline.stop()
        if args.keep == "always" or (args.keep == "failure" and not ok):
            print(f"chaos: run dir and supervisor.log kept in {workdir}", file=sys.stderr)
        else:
            remove(workdir)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
