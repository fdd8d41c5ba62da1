"""The actor base class: one OS process, one uvloop event loop, one TaskGroup.

A subclass implements ``on_start`` / ``on_message`` / ``on_stop`` (and may declare a ``Params``
struct for its ``params:`` block and the publishers it listens to in ``subscriptions``). The base
owns everything else: the publisher and subscriber sockets, the control REP socket (``status``,
``stop``), the ``hb.<actor>`` heartbeat, signals, and the watch on the supervisor.

Lifecycle: STARTING (sockets bound, ``on_start`` running) → RUNNING (first heartbeat says so:
that is readiness) → STOPPING (the ``stop`` command, which is how the supervisor stops actors,
or the supervisor's death) → subscriber detached → ``on_stop`` → exit 0. An exception anywhere,
``on_message`` included, ends the process non-zero with its traceback logged once; the
supervisor decides what happens next.

Signals: while the supervisor lives, an actor stops only on the ``stop`` command (which the
supervisor sends, in reverse start order) and leaves SIGTERM/SIGINT to the supervisor: sent to
the whole process group (a terminal's Ctrl-C, ``timeout``, systemd's ``KillMode=control-group``)
they reach the supervisor too, which then stops everything in order. They are blocked in every
thread of an actor (the forkserver it is forked from ignores them, so they cannot end it
before that) and taken by one thread with ``sigwaitinfo``. Once the supervisor is gone they are
obeyed (and the actor stops by itself anyway). The mechanics: ``karb.actors.signals``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
import time
from collections.abc import Coroutine, Iterable
from typing import Any, ClassVar

import msgspec
import psutil
import uvloop
import zmq
import zmq.asyncio
from zmq.auth.thread import ThreadAuthenticator

from karb import bus, curve, topics
from karb.actors import signals
from karb.config import Config
from karb.exitcodes import ExitCode
from karb.messages import (ActorState, ActorStatus, BusMessage, ControlReply, ControlRequest,
                           Heartbeat, Msg, decode, encode)


class NoParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    pass


class ChildSpec(msgspec.Struct, frozen=True):
    """Everything a child process needs; pickled to it by the supervisor."""

    name: str
    incarnation: int
    supervisor_pid: int
    config: Config
    params: Any = None


class Actor:
    """Base of every actor. See the module docstring for the lifecycle."""

    Params: ClassVar[type[msgspec.Struct]] = NoParams

    def __init__(self, spec: ChildSpec) -> None:
        self.spec = spec
        self.name = spec.name
        self.inc = spec.incarnation
        self.config: Config = spec.config
        self.params: Any = spec.params if spec.params is not None else self.Params()
        self.log = logging.getLogger(f"karb.{self.name}")
        self.state: ActorState = "STARTING"
        self.stop_reason = ""
        self.loop_lag_us = 0
        self._stop_event: asyncio.Event | None = None
        self._tasks: set[asyncio.Task[Any]] = set()  # live ones only: cancelled at stop
        self._tg: asyncio.TaskGroup | None = None
        self._pub: bus.Publisher | None = None
        self._sub: bus.Subscriber | None = None
        self._process = psutil.Process()
        self.ctx: zmq.Context | None = None
        self.actx: zmq.asyncio.Context | None = None
        self._orphaned = threading.Event()
        self._failure: BaseException | None = None

    # -- for subclasses ----------------------------------------------------------------------

    def subscriptions(self) -> Iterable[tuple[str, bytes]]:
        """(publisher actor name, topic prefix) pairs this actor listens to."""
        return ()

    async def on_start(self) -> None:
        """Bind, connect, load state. The actor is RUNNING when this returns."""

    def on_message(self, topic: bytes, msg: BusMessage) -> None:
        """One bus message, in order. Must not block: queue slow work to a task."""

    def on_batch(self) -> None:
        """Every queued message has been handed to on_message (a burst is over)."""

    async def on_stop(self) -> None:
        """Finish in order: flush, cancel, close. Tasks are cancelled after this returns."""

    def heartbeat_extra(self) -> dict[str, float]:
        """Actor-specific figures carried in each heartbeat."""
        return {}

    def subscriber_poll_interval_s(self) -> float | None:
        """None: handle each message as it arrives. A number: read the bus in batches that
        often instead (an actor that needs no promptness saves a wake-up per message)."""
        return None

    def on_subscribe(self, prefix: bytes) -> None:
        """Someone subscribed to ``prefix`` on our publisher: send them a snapshot of the state
        they would otherwise wait for (ZeroMQ's slow joiner never saw what came before)."""

    def on_command(self, cmd: str) -> str:
        """An actor's own control command; returns a line for the caller, ValueError if unknown."""
        raise ValueError(f"unknown command {cmd!r}")

    @classmethod
    def preflight(cls, config: Config, params: Any) -> None:
        """Checks run by the supervisor before anything starts; raise ConfigError to refuse."""

    # -- services for subclasses --------------------------------------------------------------

    def publish(self, topic: bytes, msg: Msg) -> None:
        assert self._pub is not None, "publish() before the actor started"
        self._pub.publish(topic, msg)

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str | None = None) -> asyncio.Task[Any]:
        """Run ``coro`` in the actor's TaskGroup: its failure ends the actor, never silently."""
        assert self._tg is not None, "spawn() outside the actor's TaskGroup"
        task = self._tg.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def request_stop(self, reason: str) -> None:
        if self._stop_event is not None and not self._stop_event.is_set():
            self.stop_reason = reason
            self.log.info("stopping: %s", reason)
            self._stop_event.set()

    # -- process entry --------------------------------------------------------------------------

    def main(self) -> int:
        """Run the actor to completion; returns the process exit code."""
        signals.block_stop_signals()  # before any thread exists, so that every thread inherits it
        signals.die_with_parent()
        signals.watch_supervisor(self.spec.supervisor_pid, self._orphaned)
        try:
            return uvloop.run(self._run())
        except Exception as exc:
            self.log.error("actor failed", exc_info=_sole_cause(exc))
            return ExitCode.ERROR

    def _on_signal(self, signo: int, sender: int) -> None:
        name = signal.Signals(signo).name
        if self._orphaned.is_set():
            self.request_stop(f"{name} (pid {sender}) while orphaned")
        elif self.state != "STOPPING":
            self.log.info("%s from pid %d left to the supervisor (pid %d), which stops actors "
                          "in order", name, sender, self.spec.supervisor_pid)

    def _crash(self, exc: BaseException) -> None:
        """A handler called from the event loop failed: end the actor with that exception.
        Raised inside the TaskGroup, it takes the same path as a failed task (one traceback,
        exit 1); never left to the loop's exception handler, which would log it and go on."""
        if self._failure is not None:
            return
        self._failure = exc
        if self._sub is not None:
            self._sub.detach()

        async def reraise() -> None:
            raise exc

        try:
            self.spawn(reraise(), name="failed-handler")
        except (AssertionError, RuntimeError):  # no TaskGroup to fail: _run raises it at its end
            if self._stop_event is not None:
                self._stop_event.set()

    async def _run(self) -> int:
        loop = asyncio.get_running_loop()
        self._stop_event = asyncio.Event()
        signals.take_stop_signals(loop, self._on_signal)
        cfg = self.config
        self.ctx = zmq.Context()
        keys = bus.curve_keys(cfg.bus)
        # The ZAP handler before any bind (without one, CURVE admits any key), and before the
        # context's server defaults (its own inproc socket needs none).
        auth = curve.start_authenticator(self.ctx, keys) if keys is not None else None
        bus.secure_context(self.ctx, cfg.bus)
        self.actx = zmq.asyncio.Context.shadow(self.ctx)
        bus.secure_context(self.actx, cfg.bus)  # a shadow has its own socket defaults
        try:
            self._pub = bus.Publisher(self.ctx, bus.pub_endpoint(cfg, self.name), self.name,
                                      self.inc, cfg.bus, self._on_subscribe)
            loop.add_reader(self._pub.fd, self._pub.poll_subscriptions)
            self._sub = self._open_subscriber()
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                self.spawn(self._control_loop(), name="control")
                await self.on_start()
                if self._sub is not None:
                    self._sub.attach(loop, self.subscriber_poll_interval_s())
                self.state = "RUNNING"
                self._send_heartbeat()
                self.spawn(self._heartbeat_loop(), name="heartbeat")
                await self._stop_event.wait()
                if self._failure is not None:
                    raise self._failure
                self.state = "STOPPING"
                self._send_heartbeat()
                if self._sub is not None:
                    # Before on_stop releases what handlers use (a shm table, a strategy's
                    # state): no message is handed over once stopping has begun.
                    self._sub.detach()
                await self.on_stop()
                for task in list(self._tasks):
                    task.cancel()
        finally:
            self._close_sockets(loop, auth)
        return ExitCode.OK

    def _open_subscriber(self) -> bus.Subscriber | None:
        wanted = list(self.subscriptions())
        if not wanted:
            return None
        assert self.ctx is not None
        sub = bus.Subscriber(self.ctx, self.config.bus, self._deliver, self.on_batch,
                             on_error=self._crash)
        sub.connect(sorted({bus.pub_endpoint(self.config, src) for src, _ in wanted}))
        sub.subscribe({prefix for _, prefix in wanted})
        return sub

    def _deliver(self, topic: bytes, msg: BusMessage) -> None:
        self.on_message(topic, msg)

    def _on_subscribe(self, prefix: bytes) -> None:
        # Readiness handshake: whoever subscribes to heartbeats learns our state at once.
        if self.state != "STARTING" and topics.heartbeat(self.name).startswith(prefix):
            self._send_heartbeat()
        if self.state == "RUNNING":
            try:
                self.on_subscribe(prefix)
            except Exception as exc:  # called from a reader callback: must not be swallowed
                self._crash(exc)

    # -- heartbeat ------------------------------------------------------------------------------

    def _send_heartbeat(self) -> None:
        if self._pub is None:
            return
        sub = self._sub
        now = time.time_ns()
        self._pub.publish(topics.heartbeat(self.name), Heartbeat(
            state=self.state, pid=os.getpid(), loop_lag_us=self.loop_lag_us,
            msgs_in=sub.received if sub else 0, msgs_out=self._pub.sent,
            gaps=sub.tracker.gaps if sub else 0,
            publisher_restarts=sub.tracker.restarts if sub else 0,
            malformed=sub.malformed if sub else 0,
            rss_bytes=self._process.memory_info().rss, extra=self.heartbeat_extra(),
            ts_event=now, ts_init=now))

    async def _heartbeat_loop(self) -> None:
        interval = self.config.supervisor.heartbeat_interval_ms / 1000
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + interval
            await asyncio.sleep(interval)
            self.loop_lag_us = max(0, int((loop.time() - due) * 1e6))
            assert self._pub is not None
            self._pub.poll_subscriptions()
            self._send_heartbeat()

    # -- control -------------------------------------------------------------------------------

    def status(self) -> ActorStatus:
        sub = self._sub
        return ActorStatus(
            name=self.name, pid=os.getpid(), inc=self.inc, state=self.state,
            msgs_in=sub.received if sub else 0, msgs_out=self._pub.sent if self._pub else 0,
            gaps=sub.tracker.gaps if sub else 0,
            publisher_restarts=sub.tracker.restarts if sub else 0,
            malformed=sub.malformed if sub else 0)

    async def _control_loop(self) -> None:
        assert self.actx is not None
        sock = self.actx.socket(zmq.REP)
        sock.setsockopt(zmq.LINGER, 0)
        bus.bind(sock, bus.control_endpoint(self.config, self.name))
        replies = bus.ReplyCache(256)
        try:
            while True:
                payload = await sock.recv()
                await sock.send(self._control_reply(payload, replies))
        finally:
            sock.close(linger=0)

    def _control_reply(self, payload: bytes, replies: bus.ReplyCache) -> bytes:
        try:
            req = decode(payload)
        except msgspec.DecodeError as exc:
            return encode(ControlReply(req_id="", ok=False, error=f"malformed request: {exc}"))
        if not isinstance(req, ControlRequest):
            return encode(ControlReply(req_id="", ok=False, error="expected a control request"))
        cached = replies.get(req.req_id)
        if cached is not None:
            return cached
        detail = ""
        if req.cmd == "stop":
            self.request_stop("stop command")
        elif req.cmd != "status":
            try:
                detail = self.on_command(req.cmd)
            except ValueError as exc:
                return encode(ControlReply(req_id=req.req_id, ok=False, error=str(exc)))
        reply = encode(ControlReply(req_id=req.req_id, ok=True, status=self.status(), detail=detail))
        replies.put(req.req_id, reply)
        return reply

    def _close_sockets(self, loop: asyncio.AbstractEventLoop,
                       auth: ThreadAuthenticator | None) -> None:
        if self._sub is not None:
            self._sub.close()
        if self._pub is not None:
            loop.remove_reader(self._pub.fd)
            self._pub.close()
        if auth is not None:
            auth.stop()
        if self.ctx is not None:
            self.ctx.destroy(linger=0)


def _sole_cause(exc: BaseException) -> BaseException:
    """The one exception inside (nested) single-member groups: the TaskGroup's wrapping adds
    nothing to a traceback a trader has to read."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc
