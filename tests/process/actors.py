"""Small actors that exist only to be crashed, hung and killed by the process tests."""

from __future__ import annotations

import asyncio

import msgspec

from karb.actors.base import Actor


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
