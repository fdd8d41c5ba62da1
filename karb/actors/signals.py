"""How an actor process learns it must stop, apart from the ``stop`` command.

- SIGTERM and SIGINT are blocked in every thread (:func:`block_stop_signals`, first thing in the
  process) and taken by one thread with ``sigwaitinfo`` (:func:`take_stop_signals`), which hands
  them to the actor's loop with the sender's pid. While the supervisor lives the actor leaves
  them to it (a SIGTERM to the whole process group reaches the supervisor too, which stops every
  actor in order); once the supervisor is gone they are obeyed.
- :func:`watch_supervisor` notices the supervisor's death (a pidfd, even if the loop is stuck):
  SIGTERM to ourselves for an orderly stop, then a hard exit after ``ORPHAN_GRACE_S``.
- :func:`die_with_parent`: the kernel sends SIGTERM when the forkserver (our parent) dies.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import select
import signal
import threading
import time
from collections.abc import Callable

import psutil

from karb.exitcodes import ExitCode

# How long an orphaned actor may take to stop in order before it exits hard.
ORPHAN_GRACE_S = 0.8
_PR_SET_PDEATHSIG = 1
STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT})


def block_stop_signals() -> None:
    """Block SIGTERM and SIGINT in the calling thread and every thread it starts afterwards
    (the main thread, before any other exists); they are taken by ``take_stop_signals``."""
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    if threading.current_thread() is threading.main_thread():
        for sig in STOP_SIGNALS:  # the forkserver ignores them; we take them
            signal.signal(sig, signal.SIG_DFL)


def die_with_parent() -> None:
    """SIGTERM us when our parent (the forkserver, which exits with the supervisor) dies."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the supervisor watch below still applies
        pass


def take_stop_signals(loop: asyncio.AbstractEventLoop,
                       handler: Callable[[int, int], None]) -> None:
    """A thread that takes the blocked SIGTERM/SIGINT with their sender's pid and hands them to
    ``handler(signo, sender_pid)`` on the loop. Signals that came earlier are pending: taken now."""

    def take() -> None:
        while True:
            info = signal.sigwaitinfo(STOP_SIGNALS)
            try:
                loop.call_soon_threadsafe(handler, info.si_signo, info.si_pid)
            except RuntimeError:  # the loop is closed: the process is exiting anyway
                return

    threading.Thread(target=take, name="stop-signals", daemon=True).start()


def watch_supervisor(supervisor_pid: int, orphaned: threading.Event) -> None:
    """A thread that ends the process once the supervisor is gone, even if the loop is stuck:
    SIGTERM first (orderly stop), then a hard exit after ORPHAN_GRACE_S."""

    def watch() -> None:
        try:
            fd = os.pidfd_open(supervisor_pid)
        except ProcessLookupError:
            os._exit(ExitCode.ORPHANED)
        except (OSError, AttributeError):
            fd = None
        if fd is not None:
            select.select([fd], [], [])
        else:
            while psutil.pid_exists(supervisor_pid):
                time.sleep(0.1)
        orphaned.set()
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(ORPHAN_GRACE_S)
        os._exit(ExitCode.ORPHANED)

    threading.Thread(target=watch, name="supervisor-watch", daemon=True).start()
