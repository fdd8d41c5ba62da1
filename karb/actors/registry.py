"""Actor kinds: built-in short names, or any ``package.module:Class`` path.

``preload()`` is what the forkserver imports once, so that starting or restarting an actor
costs a fork, not an interpreter start plus imports.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable

from karb.actors.base import Actor

BUILTIN: dict[str, str] = {
    "probe_source": "karb.actors.probe:ProbeSource",
    "probe_sink": "karb.actors.probe:ProbeSink",
    "sim": "karb.actors.sim:SimActor",
    "feed": "karb.actors.feed:Feed",
    "book": "karb.actors.book:Book",
    "strategy": "karb.actors.strategy:Strategy",
    "execution": "karb.actors.execution:Execution",
    "recorder": "karb.actors.recorder:Recorder",
    "monitor": "karb.ops.monitor:Monitor",  # market state + execution quality (karb/ops)
    "rebalancer": "karb.actors.rebalancer:Rebalancer",  # inventory bands, transfers (issue 12)
}

# What every actor needs; imported in the forkserver before any fork.
PRELOAD = ["uvloop", "zmq", "zmq.asyncio", "zmq.auth.thread", "msgspec", "psutil",
           "setproctitle", "karb.actors.base", "karb.actors.runner"]


def preload_modules(kinds: Iterable[str]) -> list[str]:
    """PRELOAD plus the module of each actor kind in use (and so what it imports: aiohttp for
    the feeds, execution and the simulator), so that a restart costs a fork, not imports —
    and a small config does not import the whole system in its forkserver."""
    paths = (BUILTIN.get(kind, kind) for kind in kinds)
    return PRELOAD + sorted({path.split(":")[0] for path in paths if ":" in path})


class UnknownActorKind(Exception):
    pass


def resolve(kind: str) -> type[Actor]:
    """The Actor subclass for ``kind``; UnknownActorKind names what was wrong."""
    path = BUILTIN.get(kind, kind)
    module_name, sep, class_name = path.partition(":")
    if not sep:
        raise UnknownActorKind(
            f"unknown actor kind {kind!r} (built-in: {', '.join(sorted(BUILTIN))}; "
            "or give package.module:Class)")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UnknownActorKind(f"actor kind {kind!r}: cannot import {module_name} ({exc})") from None
    cls = getattr(module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, Actor)):
        raise UnknownActorKind(f"actor kind {kind!r}: {class_name} is not an Actor in {module_name}")
    return cls
