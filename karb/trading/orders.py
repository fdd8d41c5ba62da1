"""What execution knows about each order it sends: the leg record and the one set of leg states.

A leg is one order of an intent (``buy``, ``sell``, or a ``hedge``), named at the venue by a
client id derived from the intent id. States, as NautilusTrader separates NotSent / Ambiguous /
VenueRejected::

    PENDING   journaled, not sent yet (or its send was cut by a crash: treated like UNKNOWN)
    UNKNOWN   asked, no usable answer yet: the order may or may not exist at the venue
    SENT      the venue has it (order id known), not final yet
    DONE      final: filled, or an IOC/partial that the venue closed (Bithumb says ``done``)
    CANCELLED final: cancelled, possibly after partial fills
    REJECTED  final: the venue (or our own pre-send check) refused it; nothing executed
    NOT_SENT  final: the venue never had it — decided only after the settle window
    DRY_RUN   final: dry-run mode, nothing sent
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class LegState(StrEnum):
    PENDING = "PENDING"
    UNKNOWN = "UNKNOWN"
    SENT = "SENT"
    DONE = "DONE"
    CANCELLED = "CANCELLED"
    REJECTED = "REJECTED"
    NOT_SENT = "NOT_SENT"
    DRY_RUN = "DRY_RUN"

    @property
    def final(self) -> bool:
        return self in FINAL_LEG_STATES


FINAL_LEG_STATES = frozenset({LegState.DONE, LegState.CANCELLED, LegState.REJECTED,
                              LegState.NOT_SENT, LegState.DRY_RUN})
# States in which nothing can have executed.
EMPTY_LEG_STATES = frozenset({LegState.REJECTED, LegState.NOT_SENT, LegState.DRY_RUN})


@dataclass
class LegRecord:
    client_id: str
    intent_id: str
    role: str  # buy | sell | hedge | algo (a child of an execution algorithm)
    venue: str
    market: str
    side: str  # buy | sell
    price: float
    volume: float
    state: LegState
    order_id: str = ""
    executed_volume: float = 0.0
    executed_funds: float = 0.0
    fee: float = 0.0
    updated_ns: int = 0  # wall ns of the last journal write
    # Wall ns when the last request for this client id gave up (timeout, 5xx, crash): the
    # settle window, after which "not found" means "never sent", runs from here. 0: never tried.
    gave_up_ns: int = 0

    def __post_init__(self) -> None:
        self.state = LegState(self.state)

    @property
    def final(self) -> bool:
        return self.state in FINAL_LEG_STATES

    @property
    def signed_volume(self) -> float:
        return self.executed_volume if self.side == "buy" else -self.executed_volume


def leg_client_id(intent_id: str, role: str, attempt: int = 1) -> str:
    """Derived from the intent, so a resend after a crash is refused as a duplicate. Each hedge
    attempt gets its own id (``-h1``, ``-h2``, …): a crash between journaling a hedge and
    sending it never blocks the next attempt. An execution algorithm's children (role
    ``algo``, karb.execution.algos) are ``-a1``, ``-a2``, … of the algo's own intent id."""
    if role == "hedge":
        return f"{intent_id}-h{attempt}"
    if role == "algo":
        return f"{intent_id}-a{attempt}"
    return f"{intent_id}-{role[0]}"


_ROLES = {"b": "buy", "s": "sell"}


def parse_client_id(client_id: str | None) -> tuple[str, str] | None:
    """(intent id, role) of one of our client ids (``i`` + 20 hex, then ``-b``/``-s``/``-hN``/
    ``-aN``);
    None for anything else (orders placed by hand or by another program on the account)."""
    if not client_id or len(client_id) < 23 or client_id[0] != "i" or client_id[21] != "-":
        return None
    intent_id, suffix = client_id[:21], client_id[22:]
    if any(c not in "0123456789abcdef" for c in intent_id[1:]):
        return None
    if suffix in _ROLES:
        return intent_id, _ROLES[suffix]
    if suffix[:1] == "h" and (suffix[1:].isdigit() or suffix == "h"):
        return intent_id, "hedge"
    if suffix[:1] == "a" and suffix[1:].isdigit():
        return intent_id, "algo"
    return None
