"""The whole bus schema: every message any actor publishes or sends over REQ/REP.

Messages are msgspec Structs in one tagged union, encoded as msgpack arrays (the tag first,
then the fields; the envelope fields ``src, inc, seq, ts_event, ts_init`` last). One Encoder and
one typed Decoder are built here once and shared. The publisher stamps ``src`` (actor name),
``inc`` (incarnation, new on every restart) and ``seq`` (+1 per message, counted per publisher and topic);
``ts_event`` / ``ts_init`` are integer nanoseconds (``time.time_ns`` for records; latency probes
put ``time.monotonic_ns`` in ``ts_event`` and say so).
"""

from __future__ import annotations

from typing import Literal

import msgspec

ActorState = Literal["STARTING", "RUNNING", "STOPPING"]


class Msg(msgspec.Struct, tag=True, array_like=True, kw_only=True, gc=False):
    """Envelope shared by every bus message."""

    src: str = ""
    inc: int = 0
    seq: int = 0
    ts_event: int = 0
    ts_init: int = 0


class Heartbeat(Msg, tag="hb"):
    """``hb.<actor>``: liveness, readiness and load of one actor process."""

    state: ActorState
    pid: int
    loop_lag_us: int = 0
    msgs_in: int = 0
    msgs_out: int = 0
    gaps: int = 0
    publisher_restarts: int = 0
    malformed: int = 0
    rss_bytes: int = 0
    # Per-actor figures (e.g. a feed's data age per market, in ms); small and flat.
    extra: dict[str, float] = {}


class Probe(Msg, tag="probe"):
    """A latency probe; ``ts_event`` holds the sender's ``time.monotonic_ns()``."""

    n: int


class ProbeReport(Msg, tag="probe_report"):
    """What a probe sink measured: one-way hop latencies in ns, in arrival order."""

    hops_ns: list[int]


class ControlRequest(Msg, tag="ctl"):
    """Sent to an actor's control REP socket."""

    req_id: str
    cmd: Literal["status", "stop"]


class ActorStatus(msgspec.Struct, frozen=True, gc=False):
    name: str
    pid: int
    inc: int
    state: ActorState
    msgs_in: int
    msgs_out: int
    gaps: int
    publisher_restarts: int
    malformed: int


class ControlReply(Msg, tag="ctl_reply"):
    req_id: str
    ok: bool
    status: ActorStatus | None = None
    error: str = ""


BusMessage = Heartbeat | Probe | ProbeReport | ControlRequest | ControlReply

ENCODER = msgspec.msgpack.Encoder()
DECODER = msgspec.msgpack.Decoder(BusMessage)


def encode(msg: Msg) -> bytes:
    return ENCODER.encode(msg)


def decode(payload: bytes) -> BusMessage:
    """Decode one payload; raises ``msgspec.DecodeError`` (incl. ValidationError) if malformed."""
    return DECODER.decode(payload)
