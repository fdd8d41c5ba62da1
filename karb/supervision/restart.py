"""Restart decisions, OTP style: per-child restart type, exponential back-off with jitter, and
an intensity limit (more than ``max_restarts`` within ``period_s`` → give up)."""

from __future__ import annotations

import random
from collections import deque

from karb.config import RestartType, SupervisorConfig


def should_restart(restart: RestartType, exitcode: int | None) -> bool:
    """permanent: always; transient: only after an abnormal exit; temporary: never."""
    if restart == "permanent":
        return True
    if restart == "transient":
        return exitcode != 0
    return False


class RestartPolicy:
    def __init__(self, cfg: SupervisorConfig, rng: random.Random | None = None) -> None:
        self._cfg = cfg
        self._rng = rng or random.Random()
        self._restarts: deque[float] = deque()  # times of restarts, all children
        self._per_child: dict[str, deque[float]] = {}

    def _trim(self, times: deque[float], now: float) -> None:
        while times and now - times[0] > self._cfg.period_s:
            times.popleft()

    def record(self, child: str, now: float) -> bool:
        """Count one restart; False if that exceeds the intensity limit."""
        self._restarts.append(now)
        self._trim(self._restarts, now)
        mine = self._per_child.setdefault(child, deque())
        mine.append(now)
        self._trim(mine, now)
        return len(self._restarts) <= self._cfg.max_restarts

    def recent(self, now: float) -> int:
        self._trim(self._restarts, now)
        return len(self._restarts)

    def backoff_s(self, child: str) -> float:
        """Delay before the next start of ``child``: doubles with each recent restart of it,
        capped, with ±20 % jitter so that crashed siblings do not restart in lockstep."""
        n = len(self._per_child.get(child, ()))
        base_ms = min(self._cfg.backoff_max_ms, self._cfg.backoff_initial_ms * 2 ** max(n - 1, 0))
        return base_ms / 1000 * self._rng.uniform(0.8, 1.2)
