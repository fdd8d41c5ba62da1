"""What a freshly forked actor process runs (the multiprocessing target)."""

from __future__ import annotations

import sys

from setproctitle import setproctitle

from karb import logs
from karb.actors.base import ChildSpec
from karb.actors.signals import block_stop_signals
from karb.actors.registry import resolve


def run_actor(spec: ChildSpec) -> None:
    # SIGTERM/SIGINT to the whole process group (Ctrl-C, timeout, systemd) reach the actors
    # too; only the supervisor acts on them, stopping the actors in reverse order (see base.py).
    block_stop_signals()
    # One line per actor in ps/top, not forkserver's command line six times.
    setproctitle(f"karb: {spec.name} [{spec.config.path}]")
    logs.configure()
    actor_cls = resolve(spec.config.actor(spec.name).kind)
    sys.exit(int(actor_cls(spec).main()))
