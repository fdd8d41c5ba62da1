"""The multiprocessing forkserver (and the resource tracker it brings) as the supervisor needs it.

- The forkserver ignores SIGTERM and SIGINT. It shares the supervisor's process group, so a
  SIGTERM to the group (``timeout``, systemd) would otherwise kill it, and with it the exit
  status of every actor (multiprocessing then reports 255 for each: crashes to restart, in the
  middle of an orderly stop). The resource tracker ignores them by itself.
- :func:`stop` ends both and reaps them, bounded, so that when the supervisor returns its exit
  code nothing of it is left in its process group. CPython 3.11 has no public API for either,
  hence the private attributes, all read in this one module.
"""

from __future__ import annotations

import logging
import multiprocessing.forkserver
import multiprocessing.resource_tracker
import multiprocessing.util
import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psutil

log = logging.getLogger(__name__)

_STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


@contextmanager
def stop_signals_ignored_by_spawned() -> Iterator[None]:
    """Anything spawned inside ignores SIGTERM/SIGINT: SIG_IGN survives exec, a blocked mask
    does not (multiprocessing's spawn resets it). For a forkserver restarted while running:
    a signal that reaches the supervisor in these few milliseconds may be lost, so the first
    start is :func:`start`, made before any handler exists."""
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    old = {sig: signal.signal(sig, signal.SIG_IGN) for sig in _STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)


def is_running() -> bool:
    """False if the forkserver has died (the next spawn starts a new one)."""
    server: Any = multiprocessing.forkserver._forkserver
    pid = server._forkserver_pid
    if pid is None:
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def start(preload: list[str]) -> None:
    """Start the resource tracker and the forkserver (preloading ``preload``), the forkserver
    ignoring SIGTERM and SIGINT.

    Call in the only thread, with both signals blocked (``supervisor.py`` blocks them first
    thing, so that Ctrl-C during start is an orderly stop). Signals that came meanwhile are
    collected and sent again at the end, pending until the supervisor's handlers unblock them."""
    multiprocessing.set_forkserver_preload(preload)
    early: set[int] = set()

    def remember(signo: int, frame: object) -> None:
        early.add(signo)

    old = {sig: signal.signal(sig, remember) for sig in _STOP_SIGNALS}
    try:
        # Its start unblocks the stop signals in this thread (it ignores them by itself): a
        # pending one is delivered to remember(), then they are blocked again.
        multiprocessing.resource_tracker.ensure_running()
        signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
        early |= {int(sig) for sig in signal.sigpending() & _STOP_SIGNALS}
        for sig in _STOP_SIGNALS:  # discards pending ones: collected just above
            signal.signal(sig, signal.SIG_IGN)
        if not early:  # else the supervisor stops before it would spawn anything
            multiprocessing.forkserver.ensure_running()
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
    for signo in early:
        os.kill(os.getpid(), signo)


def stop(timeout_s: float = 2.0) -> None:
    """End the forkserver and the resource tracker and reap them, so that nothing of ours is
    left when the supervisor returns its exit code. Called once every actor has exited."""
    # Private singletons (no public API in 3.11): typed Any, read only in this module.
    server: Any = multiprocessing.forkserver._forkserver
    tracker: Any = multiprocessing.resource_tracker._resource_tracker
    # The forkserver first (it holds a copy of the tracker's pipe). It has no child left and
    # nothing to finish: closing its pipe asks it to exit, but while it still imports its
    # preload (a stop during start) it would not notice for a while, so it gets SIGKILL soon.
    if server._forkserver_pid is not None:
        os.close(server._forkserver_alive_fd)
        pid = server._forkserver_pid
        server._forkserver_alive_fd = None
        server._forkserver_pid = None
        address = server._forkserver_address
        server._forkserver_address = None
        if address and not multiprocessing.util.is_abstract_socket_namespace(address):
            try:
                os.unlink(address)
            except FileNotFoundError:
                pass
        _reap(pid, time.monotonic() + 0.2, quiet=True)
    if tracker._fd is not None:
        os.close(tracker._fd)
        tracker._fd = None
        if tracker._pid is not None:
            # It exits once every copy of its pipe is closed: at once, unless a straggler holds one.
            _reap(tracker._pid, time.monotonic() + timeout_s, quiet=False)
            tracker._pid = None


def _reap(pid: int, deadline: float, quiet: bool) -> None:
    while True:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return
        if done:
            return
        if time.monotonic() >= deadline:
            if not quiet:
                log.warning("helper process %d did not exit: SIGKILL", pid)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.waitpid(pid, 0)
            return
        time.sleep(0.005)
