from __future__ import annotations

import asyncio
import threading
import time

import pytest
from typing import Any

from karb.clock import Clock, LiveClock, VirtualClock, VirtualDeadlock

DAY_NS = 86_400 * 10**9


def run_with_deadline(clock: VirtualClock, main: object, real_deadline_s: float = 20.0) -> Any:
    """Run ``main`` on the virtual clock in a thread the test waits on with its own deadline:
    if the clock slept in real time the thread would still be running when the join gives up."""
    out: dict[str, object] = {}

    def target() -> None:
        try:
            out["result"] = clock.run(main)  # type: ignore[arg-type]
        except BaseException as exc:
            out["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(real_deadline_s)
    assert not thread.is_alive(), "the virtual loop waited in real time"
    error = out.get("error")
    if isinstance(error, BaseException):
        raise error
    return out.get("result")


def test_a_timeout_fires_in_virtual_time_without_a_real_wait() -> None:
    clock = VirtualClock()
    start_mono, start_wall = clock.monotonic_ns(), clock.time_ns()

    async def leg() -> str:
        never = asyncio.Event()
        try:
            async with clock.timeout(86_400):  # a day
                await never.wait()
        except TimeoutError:
            return "timed out"
        return "answered"

    assert run_with_deadline(clock, leg()) == "timed out"
    assert clock.monotonic_ns() - start_mono >= DAY_NS
    assert clock.monotonic_ns() - start_mono < DAY_NS + 10**6
    assert clock.time_ns() - start_wall == clock.monotonic_ns() - start_mono


def test_wait_for_returns_the_answer_that_lands_before_the_timeout_and_not_after() -> None:
    clock = VirtualClock()

    async def venue_answers_after(delay_s: float, timeout_s: float) -> tuple[str, float]:
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[str] = loop.create_future()
        clock.call_later(delay_s, answer.set_result, "done")
        t0 = clock.monotonic_ns()
        try:
            result = await asyncio.wait_for(answer, timeout_s)
        except TimeoutError:
            result = "timeout"
        return result, (clock.monotonic_ns() - t0) / 1e9

    result, took = run_with_deadline(clock, venue_answers_after(2.0, 3.0))
    assert result == "done" and took == pytest.approx(2.0, abs=1e-6)
    result, took = run_with_deadline(clock, venue_answers_after(5.0, 3.0))
    assert result == "timeout" and took == pytest.approx(3.0, abs=1e-6)


def test_sleepers_wake_in_deadline_order_each_at_its_own_virtual_time() -> None:
    clock = VirtualClock()
    woke: list[tuple[str, int]] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append((name, clock.monotonic_ns()))

    async def main() -> None:
        t0 = clock.monotonic_ns()
        async with asyncio.TaskGroup() as tg:
            for name, seconds in (("c", 3600.0), ("a", 0.001), ("b", 60.0)):
                tg.create_task(sleeper(name, seconds))
        assert [(n, round((t - t0) / 1e9, 6)) for n, t in woke] == [
            ("a", 0.001), ("b", 60.0), ("c", 3600.0)]

    run_with_deadline(clock, main())
    assert clock.jumps >= 3


def test_a_cancelled_timer_never_fires_and_advance_moves_time_forward_only() -> None:
    clock = VirtualClock()
    fired: list[int] = []

    async def main() -> None:
        handle = clock.call_later(10.0, fired.append, 1)
        clock.call_later(20.0, fired.append, 2)
        handle.cancel()
        await clock.sleep(30.0)

    run_with_deadline(clock, main())
    assert fired == [2]
    before = clock.monotonic_ns()
    clock.advance(5)
    assert clock.monotonic_ns() == before + 5
    with pytest.raises(ValueError):
        clock.advance(-1)


def test_waiting_on_nothing_at_all_is_reported_not_hung() -> None:
    clock = VirtualClock(idle_real_wait_s=0.05)

    async def main() -> None:
        await asyncio.Event().wait()

    with pytest.raises(VirtualDeadlock):
        run_with_deadline(clock, main())


def test_a_virtual_clock_refuses_a_loop_that_is_not_its_own() -> None:
    clock = VirtualClock()

    async def main() -> None:
        await clock.sleep(1.0)

    with pytest.raises(RuntimeError, match="outside its own loop"):
        asyncio.run(main())


async def test_live_clock_reads_the_system_clocks_and_waits_on_the_running_loop() -> None:
    clock: Clock = LiveClock()
    assert abs(clock.time_ns() - time.time_ns()) < 10**9
    assert abs(clock.monotonic_ns() - time.monotonic_ns()) < 10**9
    fired = asyncio.Event()
    clock.call_later(0.0, fired.set)
    async with clock.timeout(5.0):
        await fired.wait()
    with pytest.raises(TimeoutError):
        async with clock.timeout(0.0):
            await clock.sleep(1.0)
