"""Restart decisions, OTP style: per-child restart type, exponential back-off with jitter, and
an intensity limit counted per child (more than ``max_restarts`` restarts of one child within
``period_s`` → give up), with a backstop over all children sized so that one crash of every
child fits."""

from __future__ import annotations

import random
from collections import deque

from karb.retry import backoff_delay
from karb.config import RestartType, SupervisorConfig


def should_restart(restart: RestartType, exitcode: int | None) -> bool:
    """permanent: always; transient: only after an abnormal exit; temporary: never."""
    if restart == "permanent":
        return True
    if restart == "transient":
        return exitcode != 0
    return False


class RestartPolicy:
    def __init__(self, cfg: SupervisorConfig, backstop: int,
                 rng: random.Random | None = None) -> None:
        self._cfg = cfg
        self.backstop = backstop
        self._rng = rng or random.Random()
        self._restarts: deque[float] = deque()  # times of restarts, all children
        self._per_child: dict[str, deque[float]] = {}

    def _trim(self, times: deque[float], now: float) -> None:
        while times and now - times[0] > self._cfg.period_s:
            times.popleft()

    def record(self, child: str, now: float) -> str | None:
        """Count one restart of ``child``; if that exceeds a limit, say which (one line)."""
        self._restarts.append(now)
        self._trim(self._restarts, now)
        mine = self._per_child.setdefault(child, deque())
        mine.append(now)
        self._trim(mine, now)
        period = f"{self._cfg.period_s:g} s"
        if len(mine) > self._cfg.max_restarts:
            return (f"restart intensity exceeded: actor {child} needed more than "
                    f"{self._cfg.max_restarts} restarts within {period} (supervisor.max_restarts)")
        if len(self._restarts) > self.backstop:
            return (f"restart intensity exceeded: more than {self.backstop} restarts of all actors "
                    f"within {period}, the last of actor {child} (supervisor.max_restarts_total)")
        return None

    def recent(self, now: float) -> int:
        self._trim(self._restarts, now)
        return len(self._restarts)

    def backoff_s(self, child: str) -> float:
        """Delay before the next start of ``child``: doubles with each recent restart of it,
        capped, with ±20 % jitter so that crashed siblings do not restart in lockstep."""
        n = len(self._per_child.get(child, ()))
        return backoff_delay(self._cfg.backoff_initial_ms / 1000, self._cfg.backoff_max_ms / 1000,
                             max(n - 1, 0), 0.2, self._rng)
