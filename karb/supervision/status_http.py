"""The supervisor's status server: ``GET /api/status`` on 127.0.0.1, JSON."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

StatusFn = Callable[[], dict[str, Any]]
RoutesFn = Callable[[web.Application], None]


class StatusServer:
    def __init__(self, status: StatusFn, routes: RoutesFn | None = None) -> None:
        self._status = status
        self._routes = routes  # more routes on the same app (karb.ops: /metrics, the page)
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def start(self, port: int) -> int:
        """Listen on 127.0.0.1:``port`` (0: any free port); returns the port. OSError if taken."""
        app = web.Application()
        app.router.add_get("/api/status", self._handle)
        if self._routes is not None:
            self._routes(app)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        try:
            await site.start()
        except OSError:
            await self._runner.cleanup()
            self._runner = None
            raise
        addresses = self._runner.addresses  # (host, port) of what it listens on
        self.port = int(addresses[0][1]) if addresses else port
        return self.port

    async def _handle(self, request: web.Request) -> web.Response:
        return web.json_response(self._status())

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
