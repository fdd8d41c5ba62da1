"""One retry/back-off helper for every loop that waits and tries again (venue calls, order
lookups, reconnects, restarts). Every retry has an overall deadline: an unbounded loop around a
venue call is a bug even when it "always" ends (STYLE.md, habit 12).

``Backoff`` is the schedule (doubling with jitter, capped, until a deadline); ``retry`` runs an
awaitable factory under it for the errors named as retryable and re-raises the last one once the
deadline has passed.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from karb import clock as _clock

T = TypeVar("T")


def backoff_delay(first_s: float, max_s: float, attempt: int, jitter: float,
                  rng: random.Random) -> float:
    """The ``attempt``-th delay (0-based) of the schedule: ``first_s · 2^attempt`` capped at
    ``max_s``, times a uniform factor in ``[1 − jitter, 1 + jitter]``."""
    base = min(max_s, first_s * 2 ** min(attempt, 62))
    return base * (1 + jitter * (2 * rng.random() - 1))


class Backoff:
    """Delays ``first_s, 2·first_s, …`` capped at ``max_s``, each with ±``jitter`` (a fraction),
    never past ``deadline_s`` from creation (``None``: no deadline, only for loops that live as
    long as their process, such as a reconnecting stream)."""

    def __init__(self, first_s: float, max_s: float, deadline_s: float | None,
                 jitter: float = 0.2, rng: random.Random | None = None,
                 clock: Callable[[], float] = _clock.monotonic) -> None:
        self.first_s = first_s
        self.max_s = max_s
        self.jitter = jitter
        self.clock = clock
        self._rng = rng or random.Random()
        self.attempts = 0
        self.deadline = None if deadline_s is None else clock() + deadline_s

    @property
    def left_s(self) -> float:
        return float("inf") if self.deadline is None else self.deadline - self.clock()

    @property
    def expired(self) -> bool:
        return self.left_s <= 0

    def next_delay(self) -> float:
        """The next pause (0 once the deadline is reached: the caller should stop)."""
        delay = backoff_delay(self.first_s, self.max_s, self.attempts, self.jitter, self._rng)
        self.attempts += 1
        return max(0.0, min(delay, self.left_s))

    def reset(self) -> None:
        self.attempts = 0

    async def sleep(self, at_least_s: float = 0.0) -> bool:
        """Pause before the next try; False (without sleeping) once the deadline has passed."""
        if self.expired:
            return False
        await asyncio.sleep(min(max(self.next_delay(), at_least_s), max(self.left_s, 0.0)))
        return True


async def retry(attempt: Callable[[], Awaitable[T]], retry_on: tuple[type[BaseException], ...],
                backoff: Backoff, pause_of: Callable[[BaseException], float] | None = None) -> T:
    """Await ``attempt()`` until it succeeds; errors in ``retry_on`` are retried after the
    back-off (or at least ``pause_of(error)`` seconds, e.g. a venue's Retry-After) until the
    deadline, then the last one is raised."""
    while True:
        try:
            return await attempt()
        except retry_on as exc:
            at_least = pause_of(exc) if pause_of is not None else 0.0
            if backoff.left_s <= at_least or not await backoff.sleep(at_least):
                raise
