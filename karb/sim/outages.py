"""Venue outages on a schedule: the fault set (``/_sim/faults``) switched on by the clock.

Assumptions (``sim.outages``): each venue independently suffers

- **WebSocket drops**: every socket of the venue closed at once (clients must reconnect and
  resubscribe), a Poisson process at ``ws_drops_per_hour``;
- **WebSocket stalls**: sockets stay open but send nothing (the failure a receive timeout
  exists for) for an exponential time of mean ``ws_stall_s``, at ``ws_stalls_per_hour``;
- **REST outages**: every REST request answers ``rest_status`` for an exponential time of
  mean ``rest_outage_s``, at ``rest_outages_per_hour`` (orders are not carried out).

:class:`OutageSchedule` is pure: it says what starts and ends by a given time, so the live
simulator (:func:`apply`, on a venue's :class:`~karb.sim.venue.Faults`) and a backtest's
in-process venue can both follow it. While a scheduled outage is on it owns the fault fields
it uses (a manual ``/_sim/faults/clear`` also ends it early). Draws use their own random
stream seeded from ``sim.seed``.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from karb.config import OutageConfig

if TYPE_CHECKING:
    from karb.sim.venue import VenueState

OutageKind = Literal["ws_drop", "ws_stall", "rest_down"]
# REST outages answer this many requests with the error at most (the fault set counts them).
_REST_DOWN_COUNT = 1 << 30


@dataclass(order=True)
class OutageEvent:
    at_ms: int
    venue: str = field(compare=False)
    kind: OutageKind = field(compare=False)
    starts: bool = field(compare=False)  # False: the end of a ws_stall or rest_down
    until_ms: int = field(default=0, compare=False)


class OutageSchedule:
    def __init__(self, cfg: OutageConfig, venues: tuple[str, ...], seed: int, now_ms: int) -> None:
        self.cfg = cfg
        self.rng = random.Random(f"{seed}/outages")
        self._queue: list[OutageEvent] = []
        for venue in venues:
            for kind, per_hour in (("ws_drop", cfg.ws_drops_per_hour),
                                   ("ws_stall", cfg.ws_stalls_per_hour),
                                   ("rest_down", cfg.rest_outages_per_hour)):
                if per_hour > 0:
                    self._schedule_start(venue, kind, now_ms)  # type: ignore[arg-type]

    @property
    def scheduled(self) -> bool:
        """Whether any outage will ever happen (every rate 0: none)."""
        return bool(self._queue)

    def due(self, now_ms: int) -> list[OutageEvent]:
        """Every start and end at or before ``now_ms``, in time order (each returned once)."""
        out = []
        while self._queue and self._queue[0].at_ms <= now_ms:
            event = heapq.heappop(self._queue)
            out.append(event)
            if event.starts:
                if event.kind != "ws_drop":
                    heapq.heappush(self._queue, OutageEvent(event.until_ms, event.venue,
                                                            event.kind, False))
                self._schedule_start(event.venue, event.kind, event.at_ms)
        return out

    def _schedule_start(self, venue: str, kind: OutageKind, after_ms: int) -> None:
        cfg = self.cfg
        per_hour = {"ws_drop": cfg.ws_drops_per_hour, "ws_stall": cfg.ws_stalls_per_hour,
                    "rest_down": cfg.rest_outages_per_hour}[kind]
        start = after_ms + max(1, round(self.rng.expovariate(per_hour / 3_600_000)))
        mean_s = {"ws_drop": 0.0, "ws_stall": cfg.ws_stall_s, "rest_down": cfg.rest_outage_s}[kind]
        length = max(1, round(self.rng.expovariate(1 / (mean_s * 1000)))) if mean_s else 0
        heapq.heappush(self._queue, OutageEvent(start, venue, kind, True, start + length))


async def apply(state: VenueState, event: OutageEvent, status: int) -> None:
    """Carry out one scheduled outage event on a live simulated venue's fault set."""
    faults = state.faults
    if event.kind == "ws_drop":
        for session in list(state.sockets):
            await session.drop()
    elif event.kind == "ws_stall":
        faults.ws_stalled = event.starts
    elif event.starts:
        faults.fail_next, faults.fail_status = _REST_DOWN_COUNT, status
    else:
        faults.fail_next = 0

