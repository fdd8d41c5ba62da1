"""The one retry helper: delays double with jitter up to a cap, and no retry passes its overall
deadline (a fake clock: nothing waits in real time)."""

from __future__ import annotations

import random

import pytest

from karb.retry import Backoff, retry


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_delays_double_with_jitter_and_are_capped() -> None:
    backoff = Backoff(0.1, 0.4, None, jitter=0.2, rng=random.Random(1))
    delays = [backoff.next_delay() for _ in range(6)]
    for delay, nominal in zip(delays, [0.1, 0.2, 0.4, 0.4, 0.4, 0.4]):
        assert nominal * 0.8 <= delay <= nominal * 1.2
    backoff.reset()
    assert backoff.next_delay() <= 0.12


def test_no_delay_passes_the_deadline() -> None:
    clock = FakeClock()
    backoff = Backoff(1.0, 8.0, 2.5, jitter=0.0, clock=clock)
    assert backoff.next_delay() == 1.0
    clock.now = 2.0
    assert backoff.next_delay() == pytest.approx(0.5)  # 2.0 would pass the deadline
    clock.now = 2.5
    assert backoff.expired and backoff.next_delay() == 0.0


async def test_retry_raises_the_last_error_at_the_deadline() -> None:
    calls = 0

    async def failing() -> int:
        nonlocal calls
        calls += 1
        raise ConnectionError(f"try {calls}")

    with pytest.raises(ConnectionError):
        await retry(failing, (ConnectionError,), Backoff(0.001, 0.002, 0.05))
    assert 2 <= calls < 100

    async def flaky() -> int:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ConnectionError("again")
        return 7

    calls = 0
    assert await retry(flaky, (ConnectionError,), Backoff(0.001, 0.002, 5.0)) == 7
