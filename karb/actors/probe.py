"""Latency probes: a source publishing timestamped probes and a sink measuring each hop.

Used by ``tools/bench.py`` (bus hop latency between two actor processes) and by the process
tests; also handy to check a deployment's bus by hand.
"""

from __future__ import annotations

import asyncio
import time

import msgspec

from karb import topics
from karb.actors.base import Actor
from karb.messages import BusMessage, Probe, ProbeReport


class ProbeSourceParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    interval_us: int = 1000
    count: int = 0  # 0: forever

    def __post_init__(self) -> None:
        # uvloop's timers have 1 ms resolution: a shorter sleep rounds to zero and the source
        # would spin, flooding the bus instead of pacing it.
        if self.interval_us < 1000:
            raise ValueError("interval_us must be at least 1000 (event-loop timer resolution)")


class ProbeSource(Actor):
    Params = ProbeSourceParams

    async def on_start(self) -> None:
        self.spawn(self._emit(), name="emit")

    async def _emit(self) -> None:
        topic = topics.probe(self.name)
        interval = self.params.interval_us / 1e6
        n = 0
        while self.params.count == 0 or n < self.params.count:
            await asyncio.sleep(interval)
            n += 1
            self.publish(topic, Probe(n=n, ts_event=time.monotonic_ns(), ts_init=time.time_ns()))


class ProbeSinkParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    source: str
    report_every: int = 1000


class ProbeSink(Actor):
    """Measures monotonic send → handler latency and publishes the samples in batches."""

    Params = ProbeSinkParams

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._hops: list[int] = []

    def subscriptions(self) -> list[tuple[str, bytes]]:
        return [(self.params.source, topics.probe(self.params.source))]

    def on_message(self, topic: bytes, msg: BusMessage) -> None:
        if isinstance(msg, Probe):
            self._hops.append(time.monotonic_ns() - msg.ts_event)
            if len(self._hops) >= self.params.report_every:
                self.publish(topics.probe_report(self.name), ProbeReport(hops_ns=self._hops))
                self._hops = []
