"""Topic builders: the only place bus topics are spelled.

Topics are ASCII, dotted, and matched by prefix (ZeroMQ SUB). Building them here means a typo
fails loudly at the call site instead of silently subscribing to nothing.
"""

from __future__ import annotations

import re

_PART = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")

HEARTBEAT = b"hb."
PROBE = b"probe."


def _topic(*parts: str) -> bytes:
    for part in parts:
        if not _PART.match(part):
            raise ValueError(f"bad topic part {part!r}")
    return ".".join(parts).encode("ascii")


def heartbeat(actor: str) -> bytes:
    """``hb.<actor>``; actor names may themselves be dotted (``hb.feed.upbit``)."""
    return _topic("hb", actor)


def probe(actor: str) -> bytes:
    return _topic("probe", actor)


def probe_report(actor: str) -> bytes:
    return _topic("probe_report", actor)
