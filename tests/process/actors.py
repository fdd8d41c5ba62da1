"""Small actors that exist only to be crashed, hung and killed by the process tests."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import zmq
import zmq.asyncio

from karb import bus, topics
from karb.actors.base import Actor
from karb.messages import BusMessage, ControlReply, ControlRequest, Probe, decode, encode


class Idle(Actor):
    """Does nothing but heartbeat and answer control requests."""


class CrashOnStartParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    message: str = "injected start failure"


class CrashOnStart(Actor):
    Params = CrashOnStartParams

    async def on_start(self) -> None:
        raise RuntimeError(self.params.message)


class IgnoresTerm(Actor):
    """Stops only when killed: proves the SIGTERM → timeout → SIGKILL path."""

    async def on_stop(self) -> None:
        await asyncio.sleep(3600)


class RaisesOnMessageParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    source: str
    at: int = 5  # the first probe numbered at least this makes the first incarnation raise


class RaisesOnMessage(Actor):
    """Listens to a probe source; its first incarnation raises in on_message (a deaf-actor
    check: the supervisor must see it die and restart it)."""

    Params = RaisesOnMessageParams

    def subscriptions(self) -> list[tuple[str, bytes]]:
        return [(self.params.source, topics.probe(self.params.source))]

    def on_message(self, topic: bytes, msg: BusMessage) -> None:
        if self.inc == 1 and isinstance(msg, Probe) and msg.n >= self.params.at:
            raise RuntimeError("injected on_message failure")


class Service(Actor):
    """Binds the service REP socket exactly as the execution actor binds its intents socket
    (a REP from the actor's asyncio context on ``service_endpoint``) and answers every
    request: the CurveZMQ tests need a service without venues behind it."""

    async def on_start(self) -> None:
        assert self.actx is not None
        sock = self.actx.socket(zmq.REP)
        sock.setsockopt(zmq.LINGER, 0)
        sock.bind(bus.service_endpoint(self.config, self.name))
        self.spawn(self._serve(sock), name="serve")

    async def _serve(self, sock: zmq.asyncio.Socket) -> None:
        try:
            while True:
                req = decode(await sock.recv())
                req_id = req.req_id if isinstance(req, ControlRequest) else ""
                await sock.send(encode(ControlReply(req_id=req_id, ok=True, detail="served")))
        finally:
            sock.close(linger=0)


class ClosesOnStopParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    source: str


class ClosesOnStop(Actor):
    """Releases what its handler uses in on_stop and takes a while doing it (as book closes its
    shared-memory table): a message handed over after that is an error."""

    Params = ClosesOnStopParams

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.closed = False

    def subscriptions(self) -> list[tuple[str, bytes]]:
        return [(self.params.source, topics.probe(self.params.source))]

    def on_message(self, topic: bytes, msg: BusMessage) -> None:
        if self.closed:
            raise RuntimeError("a message was handed over after on_stop released its resources")

    async def on_stop(self) -> None:
        self.closed = True
        await asyncio.sleep(0.3)  # flushing: the loop runs, messages keep arriving
