"""PUB/SUB and Lazy Pirate REQ/REP over ZeroMQ: the one place the ZeroMQ traps are handled.

- Every actor binds one publisher (an XPUB, so it sees subscriptions arrive: a new subscriber to
  ``hb.`` gets a heartbeat at once, which is the readiness handshake that beats the slow-joiner
  problem). Frames are ``[topic, msgpack payload]``.
- Subscribers count, per publisher, seq gaps and restarts (a new ``inc`` or a seq going back).
- LINGER is 0 on every socket, so a dead peer never blocks a close or an exit.
- REQ never waits forever: :class:`LazyPirateClient` polls with a timeout, closes, reopens and
  resends; servers answer a repeated request id from :class:`ReplyCache` instead of acting twice.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import msgspec
import zmq
import zmq.asyncio

from karb import curve
from karb.config import BusConfig, Config
from karb.messages import BusMessage, Msg, decode, encode

log = logging.getLogger(__name__)

# sockaddr_un.sun_path is 108 bytes including the NUL.
_IPC_PATH_MAX = 107


class PeerUnavailable(Exception):
    """A REQ/REP peer did not answer within the allowed attempts."""


def _endpoint(cfg: Config, actor: str, kind: str, offset: int, suffix: str) -> str:
    bus = cfg.bus
    if bus.transport == "tcp":
        index = [a.name for a in cfg.actors].index(actor)
        return f"tcp://{bus.tcp_host}:{bus.tcp_base_port + 3 * index + offset}"
    path = cfg.run_dir / kind / f"{actor}.{suffix}"
    if len(str(path)) > _IPC_PATH_MAX:
        raise ValueError(
            f"ipc path {path} is longer than {_IPC_PATH_MAX} bytes: use a shorter "
            "supervisor.run_dir or bus.transport: tcp")
    return f"ipc://{path}"


def pub_endpoint(cfg: Config, actor: str) -> str:
    """Where ``actor`` binds its publisher."""
    return _endpoint(cfg, actor, "bus", 0, "pub")


def control_endpoint(cfg: Config, actor: str) -> str:
    """Where ``actor`` binds its control REP socket."""
    return _endpoint(cfg, actor, "ctl", 1, "rep")


def service_endpoint(cfg: Config, actor: str) -> str:
    """Where ``actor`` binds its one service REP socket (execution: intents)."""
    return _endpoint(cfg, actor, "ctl", 2, "svc")


def curve_keys(bus: BusConfig) -> curve.CurveKeys | None:
    """The bus's CurveZMQ keys, or None when it runs without (ipc only). Checked at start by
    the supervisor, so a problem here is one line there, not a traceback in an actor."""
    return curve.load(bus.curve_keys_dir) if bus.curve_keys_dir is not None else None


def secure_context(ctx: zmq.Context, bus: BusConfig) -> None:
    """With keys: every socket ``ctx`` makes from now on is a CURVE server (see karb.curve)."""
    keys = curve_keys(bus)
    if keys is not None:
        curve.secure_context(ctx, keys)


def secure_client(sock: zmq.Socket, bus: BusConfig | None) -> None:
    """With keys: ``sock`` (not yet connected) is a CURVE client holding our client key."""
    keys = curve_keys(bus) if bus is not None else None
    if keys is not None:
        curve.secure_client(sock, keys)


def bind(sock: zmq.Socket, endpoint: str) -> None:
    """Bind ``sock``; an ipc socket file is made 0600 (the run dir is 0700 as well): whoever
    can connect to it can read our bus, submit intents or stop actors."""
    sock.bind(endpoint)
    if endpoint.startswith("ipc://"):
        os.chmod(endpoint.removeprefix("ipc://"), 0o600)


def _common(sock: zmq.Socket, bus: BusConfig) -> None:
    sock.setsockopt(zmq.LINGER, 0)
    # No exponential back-off (RECONNECT_IVL_MAX stays 0): a restarted publisher is found
    # within one interval, which bounds how fast a restart is seen as RUNNING.
    sock.setsockopt(zmq.RECONNECT_IVL, bus.reconnect_ivl_ms)


class Publisher:
    """One actor's publisher: stamps the envelope and sends ``[topic, payload]`` without blocking.

    At the high-water mark ZeroMQ drops silently; subscribers see the drop as a seq gap.
    """

    def __init__(self, ctx: zmq.Context, endpoint: str, src: str, inc: int, bus: BusConfig,
                 on_subscribe: Callable[[bytes], None] | None = None) -> None:
        self.src = src
        self.inc = inc
        # seq counts per topic: a subscriber sees only the topics it asked for, so a counter
        # shared across topics would make every filtered-out message look like a gap.
        self._seqs: dict[bytes, int] = {}
        self.sent = 0
        self._on_subscribe = on_subscribe
        self._sock = ctx.socket(zmq.XPUB)
        _common(self._sock, bus)
        self._sock.setsockopt(zmq.SNDHWM, bus.sndhwm)
        self._sock.setsockopt(zmq.XPUB_VERBOSE, 1)  # every subscriber's subscribe, not just the first
        bind(self._sock, endpoint)
        self.endpoint = endpoint

    @property
    def fd(self) -> int:
        return self._sock.getsockopt(zmq.FD)

    def publish(self, topic: bytes, msg: Msg) -> None:
        seq = self._seqs.get(topic, 0) + 1
        self._seqs[topic] = seq
        msg.src = self.src
        msg.inc = self.inc
        msg.seq = seq
        self._sock.send_multipart((topic, encode(msg)), zmq.NOBLOCK)
        self.sent += 1

    def poll_subscriptions(self) -> None:
        """Drain subscription frames. Call when the fd is readable *and* periodically: sends
        consume the fd's edge, so a subscription can sit unread until someone asks."""
        while True:
            try:
                frame = self._sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            if frame[:1] == b"\x01" and self._on_subscribe is not None:
                self._on_subscribe(frame[1:])

    def close(self) -> None:
        self._sock.close(linger=0)


@dataclass
class _PublisherTrack:
    inc: int
    seq: int


@dataclass
class GapTracker:
    """Per (publisher, topic): the last (inc, seq) seen; seq gaps and restarts counted."""

    gaps: int = 0
    restarts: int = 0
    _seen: dict[tuple[str, bytes], _PublisherTrack] = field(default_factory=dict)

    def observe(self, src: str, topic: bytes, inc: int, seq: int) -> int:
        """Record one message; return how many messages went missing just before it."""
        track = self._seen.get((src, topic))
        if track is None:
            # Slow joiner: whatever came before our first message was never ours to see.
            self._seen[(src, topic)] = _PublisherTrack(inc, seq)
            return 0
        if inc != track.inc or seq <= track.seq:
            self.restarts += 1
            track.inc, track.seq = inc, seq
            return 0
        missed = seq - track.seq - 1
        track.seq = seq
        if missed:
            self.gaps += missed
        return missed


MessageHandler = Callable[[bytes, BusMessage], None]


class Subscriber:
    """One SUB socket connected to several publishers, drained from the event loop.

    The handler runs synchronously for each message, in order; ``after_batch`` runs once the
    queue is empty, so a consumer can act on a burst as a whole. Malformed payloads are counted
    and skipped; gaps and publisher restarts are counted and logged, never absorbed silently.

    If the handler or ``after_batch`` raises, the subscriber detaches (no further message is
    delivered) and hands the exception to ``on_error`` — without it, re-raises it. It is never
    left to the event loop's exception handler, which would log it and carry on with a socket
    whose wake-up edge is spent: a subscriber that never delivers again.
    """

    # Messages handled per wake-up before yielding to other tasks.
    BATCH = 256

    def __init__(self, ctx: zmq.Context, bus: BusConfig, handler: MessageHandler,
                 after_batch: Callable[[], None] | None = None,
                 on_error: Callable[[BaseException], None] | None = None) -> None:
        self._after_batch = after_batch
        self._on_error = on_error
        self._sock = ctx.socket(zmq.SUB)
        _common(self._sock, bus)
        secure_client(self._sock, bus)
        self._sock.setsockopt(zmq.RCVHWM, bus.rcvhwm)
        self._handler = handler
        self.tracker = GapTracker()
        self.received = 0
        self.malformed = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._poll_interval_s = 0.0

    def connect(self, endpoints: Iterable[str]) -> None:
        for endpoint in endpoints:
            self._sock.connect(endpoint)

    def subscribe(self, prefixes: Iterable[bytes]) -> None:
        for prefix in prefixes:
            self._sock.setsockopt(zmq.SUBSCRIBE, prefix)

    def attach(self, loop: asyncio.AbstractEventLoop, poll_interval_s: float | None = None) -> None:
        """Start delivering messages to the handler from ``loop``: as they arrive, or, with
        ``poll_interval_s``, in batches that often (fewer wake-ups for a consumer that needs
        no promptness: ZeroMQ queues meanwhile, up to the receive high-water mark)."""
        self._loop = loop
        if poll_interval_s is None:
            loop.add_reader(self._sock.getsockopt(zmq.FD), self.drain)
        else:
            self._poll_interval_s = poll_interval_s
            loop.call_later(poll_interval_s, self._poll)
        loop.call_soon(self.drain)  # anything queued before the reader existed

    def _poll(self) -> None:
        if self._closed or self._loop is None:
            return
        self._loop.call_later(self._poll_interval_s, self._poll)
        self.drain()

    def drain(self) -> None:
        if self._closed:
            return
        try:
            self._drain()
        except Exception as exc:
            self.detach()
            if self._on_error is None:
                raise
            self._on_error(exc)

    def _drain(self) -> None:
        sock = self._sock
        for _ in range(self.BATCH):
            try:
                topic, payload = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                if self._after_batch is not None:
                    self._after_batch()  # everything queued has been handled
                return
            except ValueError:  # not two frames: a foreign or broken publisher
                self.malformed += 1
                continue
            self.received += 1
            try:
                msg = decode(payload)
            except msgspec.DecodeError:
                self.malformed += 1
                log.warning("malformed bus message on %r skipped (%d so far)", topic, self.malformed)
                continue
            if self.tracker.observe(msg.src, topic, msg.inc, msg.seq):
                log.warning("bus gap on %s from %s: seq jumped to %d (%d missed in all)",
                            topic.decode(errors="replace"), msg.src, msg.seq, self.tracker.gaps)
            self._handler(topic, msg)
        # More may be queued and the fd edge is spent: continue after other callbacks run.
        assert self._loop is not None
        self._loop.call_soon(self.drain)

    def recv_blocking(self, timeout_ms: int) -> tuple[bytes, BusMessage] | None:
        """For tools outside an event loop: one decoded message, or None on timeout."""
        if not self._sock.poll(timeout_ms):
            return None
        topic, payload = self._sock.recv_multipart()
        self.received += 1
        msg = decode(payload)
        self.tracker.observe(msg.src, topic, msg.inc, msg.seq)
        return topic, msg

    def detach(self) -> None:
        """Deliver nothing more (the socket stays open until ``close``)."""
        if self._closed:
            return
        self._closed = True
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(self._sock.getsockopt(zmq.FD))

    def close(self) -> None:
        self.detach()
        self._sock.close(linger=0)


class ReplyCache:
    """Remembers the last answers by request id, so a resent request is answered, not redone."""

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._replies: OrderedDict[str, bytes] = OrderedDict()

    def get(self, req_id: str) -> bytes | None:
        return self._replies.get(req_id)

    def put(self, req_id: str, reply: bytes) -> None:
        self._replies[req_id] = reply
        self._replies.move_to_end(req_id)
        while len(self._replies) > self._size:
            self._replies.popitem(last=False)


class LazyPirateClient:
    """Reliable request-reply over REQ (ZeroMQ guide, ch. 4): poll with a timeout; on silence
    close the socket (linger 0), reopen, resend the same request; give up after ``attempts``."""

    def __init__(self, actx: zmq.asyncio.Context, endpoint: str, timeout_ms: int,
                 attempts: int = 3, bus: BusConfig | None = None) -> None:
        self._actx = actx
        self._bus = bus  # for its CurveZMQ keys, if any
        self.endpoint = endpoint
        self.timeout_ms = timeout_ms
        self.attempts = attempts
        self._sock: zmq.asyncio.Socket | None = None

    def _open(self) -> zmq.asyncio.Socket:
        sock = self._actx.socket(zmq.REQ)
        sock.setsockopt(zmq.LINGER, 0)
        secure_client(sock, self._bus)
        sock.connect(self.endpoint)
        return sock

    async def request(self, msg: Msg, req_id: str, id_field: str = "req_id") -> BusMessage:
        """Send ``msg`` (which carries ``req_id``) and return the reply whose ``id_field`` is
        the same id (``req_id`` for control replies, ``intent_id`` for intent acks)."""
        payload = encode(msg)
        for attempt in range(1, self.attempts + 1):
            if self._sock is None:
                self._sock = self._open()
            await self._sock.send(payload)
            deadline = time.monotonic() + self.timeout_ms / 1000
            while (left_ms := int((deadline - time.monotonic()) * 1000)) > 0:
                if not await self._sock.poll(left_ms):  # POLLIN
                    break
                reply = decode(await self._sock.recv())
                if getattr(reply, id_field, None) == req_id:
                    return reply
                break  # a stray answer: REQ is now out of step, start over on a fresh socket
            log.debug("no reply from %s (attempt %d/%d)", self.endpoint, attempt, self.attempts)
            self.close()
        raise PeerUnavailable(f"no reply from {self.endpoint} after {self.attempts} attempts "
                              f"of {self.timeout_ms} ms")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close(linger=0)
            self._sock = None
