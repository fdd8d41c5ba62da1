"""The ``sim`` actor: the exchange simulator under the supervisor (configs that use it)."""

from __future__ import annotations

import json

from karb.actors.base import Actor
from karb.sim.server import SimServer


class SimActor(Actor):
    async def on_start(self) -> None:
        self.server = SimServer(self.config)
        endpoints = await self.server.start()
        for e in endpoints.values():
            self.log.info("karb.sim %s rest=%s ws=%s", e.venue, e.rest, e.ws)
        # Ports may be chosen at start (port 0): tools and tests find them here.
        self.endpoints_file = self.config.run_dir / "sim.json"
        self.endpoints_file.write_text(json.dumps(
            {v: {"rest": e.rest, "ws": e.ws} for v, e in endpoints.items()}))
        self.spawn(self.server.run_market(), name="market")

    async def on_stop(self) -> None:
        await self.server.stop()
        self.endpoints_file.unlink(missing_ok=True)  # its ports are gone
