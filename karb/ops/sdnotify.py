"""sd_notify(3) without libsystemd: one datagram to ``$NOTIFY_SOCKET`` per state.

Under ``Type=notify`` systemd waits for ``READY=1``; with ``WatchdogSec=`` it expects
``WATCHDOG=1`` more often than ``$WATCHDOG_USEC`` and restarts the service when the pings stop;
``STOPPING=1`` says a stop is under way. Outside systemd (no ``NOTIFY_SOCKET``) every call is a no-op.
"""

from __future__ import annotations

import os
import socket


def notify(state: str) -> bool:
    """Send ``state`` (e.g. ``"READY=1"``); False when not under systemd or the send failed."""
    path = os.environ.get("NOTIFY_SOCKET", "")
    if not path:
        return False
    if path.startswith("@"):  # an abstract socket
        path = "\0" + path[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(path)
            # Never block the supervisor's loop: a reader that does not drain (a full socket
            # queue) costs one lost ping, not a stalled supervisor.
            sock.send(state.encode(), socket.MSG_DONTWAIT)
        return True
    except OSError:  # incl. BlockingIOError
        return False


def watchdog_interval_s() -> float | None:
    """How often to send ``WATCHDOG=1`` (half of ``$WATCHDOG_USEC``), or None when systemd did
    not ask for it (or asked another process: ``$WATCHDOG_PID``)."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) <= 0 or (pid.isdigit() and int(pid) != os.getpid()):
        return None
    return int(usec) / 2e6
