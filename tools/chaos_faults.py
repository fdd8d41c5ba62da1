"""Random network faults through the simulator's ``/_sim/faults/*`` (see karb/sim/faults.py).

Each kind is one POST to one venue; those that last (latency, a stalled WebSocket, invisible
orders) are switched off again a little later. A 404 means this simulator does not have the
fault yet: it is counted as unavailable and not tried again.
"""

from __future__ import annotations

import random
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from chaos_pipeline import Pipeline

Body = dict[str, Any]


@dataclass(frozen=True)
class Fault:
    path: str
    body: Body
    undo_after_s: float | None = None  # switched off again this much later
    undo_body: Body | None = None
    lands_in_s: float = 0.0  # an order it holds is carried out up to this much after its POST


class FaultInjector:
    def __init__(self, pipeline: Pipeline, rng: random.Random, every_s: float) -> None:
        self.pipeline = pipeline
        self.rng = rng
        self.every_s = every_s
        self.injected: Counter[str] = Counter()
        self.unavailable: set[str] = set()
        self.failed: Counter[str] = Counter()  # answered neither 200 nor 404
        self.lands_by = 0.0  # monotonic time by which every held order has been carried out
        self._longest_hold_s = 0.0  # of the delay_execution faults injected
        self._undo: list[tuple[float, str, str, Body]] = []
        self._next = time.monotonic() + self._interval()
        venues = {v.name: v for v in pipeline.config.venues}
        # Latency and late execution aim at the order timeout (a separate one once it exists).
        self.timeout_ms: dict[str, int] = {
            name: int(getattr(v, "order_timeout_ms", None) or v.request_timeout_ms)
            for name, v in venues.items()}
        self.kinds: dict[str, tuple[float, Callable[[str], Fault]]] = {
            "fail_next_500": (1.0, lambda v: Fault("fail_next", {"count": self._n(3), "status": 500})),
            "fail_next_503": (1.0, lambda v: Fault("fail_next", {"count": self._n(3), "status": 503})),
            "fail_next_429": (1.0, lambda v: Fault("fail_next", {"count": self._n(3), "status": 429})),
            "lose_response": (1.5, lambda v: Fault("lose_response", {"count": self._n(2)})),
            "latency": (1.0, self._latency),
            "order_reject": (1.0, lambda v: Fault("order_next", {"action": "reject", "count": 1})),
            "order_partial": (1.0, lambda v: Fault("order_next", {
                "action": "partial", "fraction": round(self.rng.uniform(0.2, 0.8), 2), "count": 1})),
            "ws_drop": (0.7, lambda v: Fault("ws_drop", {})),
            "ws_stall": (0.7, lambda v: Fault("ws_stall", {"on": True}, self.rng.uniform(0.5, 2.5),
                                              {"on": False})),
            "malformed_frame": (0.7, lambda v: Fault("malformed_frame", {"count": self._n(3)})),
            "delay_execution": (2.0, self._delay_execution),
            "invisible": (1.0, lambda v: Fault("invisible", {"ms": self.rng.randint(200, 1500)},
                                               self.rng.uniform(2.0, 5.0), {"ms": 0})),
            "order_not_ready": (1.0, lambda v: Fault("order_not_ready", {"count": self._n(2)})),
            "cancel_race": (1.0, lambda v: Fault("cancel_race", {"count": 1})),
        }

    def _interval(self) -> float:
        return self.rng.uniform(0.5, 1.5) * self.every_s

    def _n(self, most: int) -> int:
        return self.rng.randint(1, most)

    def _latency(self, venue: str) -> Fault:
        ms = int(self.timeout_ms[venue] * self.rng.uniform(0.7, 1.3))
        return Fault("latency", {"ms": ms}, self.rng.uniform(1.0, 3.0), {"ms": 0})

    def _delay_execution(self, venue: str) -> Fault:
        ms = int(self.timeout_ms[venue] * self.rng.uniform(0.5, 2.0))
        return Fault("delay_execution", {"ms": ms, "count": 1,
                                         "answer": self.rng.choice(("504", "hold"))},
                     lands_in_s=ms / 1000 + 1.0)

    def tick(self, now: float) -> None:
        """Undo what is due; inject the next fault when it is time."""
        for due in [u for u in self._undo if u[0] <= now]:
            self._undo.remove(due)
            self._post(due[1], due[2], due[3])
        if now < self._next:
            return
        self._next = now + self._interval()
        names = [k for k in self.kinds if k not in self.unavailable]
        if not names:
            return
        kind = self.rng.choices(names, [self.kinds[k][0] for k in names])[0]
        venues = [v.name for v in self.pipeline.config.venues]
        if kind == "order_not_ready":  # Bithumb's 422; Upbit has no such answer
            venues = [v for v in venues if v == "bithumb"] or venues
        venue = self.rng.choice(venues)
        fault = self.kinds[kind][1](venue)
        status = self._post(venue, fault.path, fault.body)
        if status == 404:
            self.unavailable.add(kind)
            print(f"chaos: fault {kind} not available (404 from /_sim/faults/{fault.path})",
                  file=sys.stderr)
        elif status == 200:
            self.injected[kind] += 1
            if fault.undo_after_s is not None:
                self._undo.append((now + fault.undo_after_s, venue, fault.path,
                                   fault.undo_body or {}))
            # A held order lands that long after the order POST that meets the fault, which
            # may come any time before the faults are cleared: see clear_all().
            self._longest_hold_s = max(self._longest_hold_s, fault.lands_in_s)
        else:
            self.failed[kind] += 1

    def _post(self, venue: str, path: str, body: Body) -> int:
        try:
            status, _ = self.pipeline.post(venue, f"/_sim/faults/{path}", body)
        except OSError:
            return 0
        return status

    def clear_all(self) -> None:
        """Every fault off on every venue (``clear``), and nothing left to undo. An order POST
        that met a delay_execution just before is carried out by ``lands_by``."""
        self._undo.clear()
        for venue in self.pipeline.rest:
            self._post(venue, "clear", {})
        if self._longest_hold_s:
            self.lands_by = time.monotonic() + self._longest_hold_s
