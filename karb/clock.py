"""One clock interface for code that reads the time or waits: live, or virtual for backtests.

NautilusTrader's split is the model: a ``LiveClock`` reads the system clocks, a test clock
holds a time that only moves when told to. Here the virtual clock moves by itself, the way a
backtest needs it: :class:`VirtualClock` runs asyncio code on its own event loop whose time
*is* the virtual clock, and whenever the loop would block waiting for its next timer, time
jumps to that timer instead. Nothing waits in real time, and asyncio's own machinery
(``asyncio.sleep``, ``asyncio.timeout``, ``asyncio.wait_for``, ``loop.call_later``) runs on
virtual time unchanged, so code written for the live loop needs no second version.

What code must do to run on either clock:

- read time only through :meth:`Clock.time_ns` (wall, for records) and
  :meth:`Clock.monotonic_ns` (for durations and latency), never ``time.time*`` directly;
- wait only on the event loop (``clock.sleep``, ``clock.timeout``, ``clock.call_later`` or the
  asyncio functions that use the loop's time), never ``time.sleep``;
- not depend on real threads finishing "soon": a virtual loop with a timer pending jumps to it
  at once, even while a thread (``asyncio.to_thread``) is still working.

``VirtualClock`` keeps integer nanoseconds; its loop's ``time()`` is ``monotonic_ns / 1e9``.
When nothing at all is scheduled and nothing is ready, the loop waits for real I/O (a thread's
``call_soon_threadsafe``) for at most ``idle_real_wait_s`` and then raises
:class:`VirtualDeadlock`: in a simulation nothing else could ever wake it.
"""

from __future__ import annotations

import asyncio
import math
import selectors
import time
from collections.abc import Callable, Coroutine
from typing import Any, Protocol, TypeVar

T = TypeVar("T")

# 2026-01-01T00:00:00Z: where a virtual clock's wall time starts unless told otherwise.
DEFAULT_START_WALL_NS = 1_767_225_600_000_000_000
# Monotonic time starts at 1 s, not 0: 0 often means "never" in our messages (recv_mono).
DEFAULT_START_MONO_NS = 1_000_000_000


class Clock(Protocol):
    """Time and waiting for asyncio code; ``LiveClock`` and ``VirtualClock`` implement it."""

    def time_ns(self) -> int:
        """Wall-clock time, integer ns since the epoch (record timestamps)."""
        ...

    def monotonic_ns(self) -> int:
        """Monotonic time, integer ns (durations, latencies, deadlines)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` on the running loop."""
        ...

    def call_later(self, delay_s: float, callback: Callable[..., object],
                   *args: object) -> asyncio.TimerHandle:
        """Run ``callback(*args)`` after ``delay_s`` on the running loop; cancellable."""
        ...

    def timeout(self, delay_s: float | None) -> asyncio.Timeout:
        """``async with clock.timeout(s):`` raises TimeoutError when ``s`` passes first."""
        ...


class LiveClock:
    """The system clocks and the running event loop (uvloop in the actors)."""

    def time_ns(self) -> int:
        return time.time_ns()

    def monotonic_ns(self) -> int:
        return time.monotonic_ns()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    def call_later(self, delay_s: float, callback: Callable[..., object],
                   *args: object) -> asyncio.TimerHandle:
        return asyncio.get_running_loop().call_later(delay_s, callback, *args)

    def timeout(self, delay_s: float | None) -> asyncio.Timeout:
        return asyncio.timeout(delay_s)


class VirtualDeadlock(RuntimeError):
    """The virtual loop has nothing ready, no timer and no I/O: it could never wake again."""


class VirtualClock:
    """Virtual time that jumps to the next scheduled wake-up. Run code with :meth:`run`."""

    def __init__(self, start_wall_ns: int = DEFAULT_START_WALL_NS,
                 start_mono_ns: int = DEFAULT_START_MONO_NS, idle_real_wait_s: float = 5.0) -> None:
        self._mono_ns = start_mono_ns
        self._wall_offset_ns = start_wall_ns - start_mono_ns
        self.idle_real_wait_s = idle_real_wait_s
        self.jumps = 0  # how many times the loop jumped ahead instead of waiting

    # -- reading ---------------------------------------------------------------------------------

    def time_ns(self) -> int:
        return self._mono_ns + self._wall_offset_ns

    def monotonic_ns(self) -> int:
        return self._mono_ns

    # -- moving by hand (outside the loop, or from a driver between steps) ------------------------

    def advance(self, ns: int) -> None:
        """Move time forward by ``ns``; timers now due run when the loop next turns."""
        if ns < 0:
            raise ValueError("a virtual clock never goes back")
        self._mono_ns += ns

    def advance_to(self, monotonic_ns: int) -> None:
        self.advance(monotonic_ns - self._mono_ns)

    # -- running ---------------------------------------------------------------------------------

    def new_event_loop(self) -> asyncio.AbstractEventLoop:
        """An event loop whose time is this clock (one clock may drive one loop at a time)."""
        return _VirtualLoop(self)

    def run(self, main: Coroutine[Any, Any, T]) -> T:
        """``asyncio.run`` on virtual time."""
        with asyncio.Runner(loop_factory=self.new_event_loop) as runner:
            return runner.run(main)

    # -- waiting (on the clock's own loop) -------------------------------------------------------

    def _loop(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.get_running_loop()
        if not (isinstance(loop, _VirtualLoop) and loop.clock is self):
            raise RuntimeError("this VirtualClock is used outside its own loop: run the code "
                               "with clock.run() or on clock.new_event_loop()")
        return loop

    async def sleep(self, seconds: float) -> None:
        self._loop()
        await asyncio.sleep(seconds)

    def call_later(self, delay_s: float, callback: Callable[..., object],
                   *args: object) -> asyncio.TimerHandle:
        return self._loop().call_later(delay_s, callback, *args)

    def timeout(self, delay_s: float | None) -> asyncio.Timeout:
        self._loop()
        return asyncio.timeout(delay_s)

    def _jump(self, seconds: float) -> None:
        # Round up: the loop runs a timer only once its time has reached the timer's deadline.
        self._mono_ns += max(1, math.ceil(seconds * 1e9))
        self.jumps += 1


class _VirtualSelector(selectors.DefaultSelector):
    """Polls real I/O without waiting; a wait for the next timer becomes a jump of the clock."""

    def __init__(self, clock: VirtualClock) -> None:
        super().__init__()
        self.clock = clock

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = super().select(0)
        if ready or timeout == 0:
            return ready
        if timeout is None:  # no timer at all: only real I/O (a thread) can wake us
            ready = super().select(self.clock.idle_real_wait_s)
            if not ready:
                raise VirtualDeadlock("virtual loop idle: nothing ready, no timer, no I/O for "
                                      f"{self.clock.idle_real_wait_s} s of real time")
            return ready
        self.clock._jump(timeout)
        return []


class _VirtualLoop(asyncio.SelectorEventLoop):
    def __init__(self, clock: VirtualClock) -> None:
        super().__init__(_VirtualSelector(clock))
        self.clock = clock

    def time(self) -> float:
        return self.clock.monotonic_ns() / 1e9


# -- the process-wide current clock ------------------------------------------------------------
# Live code reads the time through these functions; a backtest installs its VirtualClock with
# set_clock() before it builds anything. Default: the system clocks, so live behaviour is the
# same as calling time.* directly (one extra attribute lookup).

_current: Clock = LiveClock()


def current() -> Clock:
    return _current


def set_clock(clock: Clock) -> Clock:
    """Make ``clock`` the process-wide clock; returns the previous one (to restore it)."""
    global _current
    previous, _current = _current, clock
    return previous


def time_ns() -> int:
    """Wall time of the current clock, ns since the epoch."""
    return _current.time_ns()


def monotonic_ns() -> int:
    """Monotonic time of the current clock, ns."""
    return _current.monotonic_ns()


def monotonic() -> float:
    """Monotonic time of the current clock, seconds (a drop-in for ``time.monotonic``)."""
    return _current.monotonic_ns() / 1e9
