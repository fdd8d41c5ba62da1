"""What a freshly forked actor process runs (the multiprocessing target)."""

from __future__ import annotations

import signal
import sys

from karb import logs
from karb.actors.base import ChildSpec
from karb.actors.registry import resolve


def run_actor(spec: ChildSpec) -> None:
    # Ctrl-C reaches the whole process group; only the supervisor acts on it, stopping the
    # actors in reverse order with SIGTERM.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logs.configure()
    actor_cls = resolve(spec.config.actor(spec.name).kind)
    sys.exit(int(actor_cls(spec).main()))
