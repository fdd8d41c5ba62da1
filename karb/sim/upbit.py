"""Upbit's API on loopback: REST ``/v1`` and WebSockets ``/websocket/v1`` (+ ``/private``).

Quotation amounts are JSON numbers; exchange (private) amounts are strings; ``created_at`` is
KST. Errors are ``{"error": {"name", "message"}}`` with the venue's HTTP status (quotation errors
use numeric names).
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from karb.sim import faults, frames, transfer_api, upbit_private, wsfeed
from karb.sim.market import KOREAN_NAMES
from karb.sim.rules import tick
from karb.sim.v1render import markets_param, orderbook_rows
from karb.sim.venue import (
    Handler,
    VenueState,
    error_json,
    num,
    ok_json,
    venue_middleware,
)

# Since 2026-11-16 Upbit rejects malformed paths (exchanges.md §7) instead of routing them
# leniently, and asks clients to branch on ``error.name``. The stored sources name no error for
# it: we answer 400 ``invalid_path``. Malformed: an empty segment (``//v1/deposits``, as
# pyupbit's get_deposit_list builds it), a trailing slash, ``.``/``..`` segments, or characters
# outside the venue's path alphabet.
PATH_CHARS = re.compile(r"^(/[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)?)+$")


@web.middleware
async def reject_malformed_paths(request: web.Request, handler: Handler) -> web.StreamResponse:
    raw = request.rel_url.raw_path
    if not raw.startswith("/_sim/") and not PATH_CHARS.match(raw):
        return error_json(400, "invalid_path", f"malformed request path {raw!r}")
    return await handler(request)


def build_app(state: VenueState) -> web.Application:
    app = web.Application(middlewares=[reject_malformed_paths, venue_middleware(state)])

    async def market_all(request: web.Request) -> web.Response:
        details = request.query.get("is_details") == "true"
        rows = []
        for m in state.model.markets:
            base = m.split("-", 1)[1]
            row: dict[str, Any] = {"market": m, "korean_name": KOREAN_NAMES.get(base, base),
                                   "english_name": base.title()}
            if details:
                row["market_event"] = {"warning": False, "caution": {
                    "PRICE_FLUCTUATIONS": False, "TRADING_VOLUME_SOARING": False,
                    "DEPOSIT_AMOUNT_SOARING": False, "GLOBAL_PRICE_DIFFERENCES": False,
                    "CONCENTRATION_OF_SMALL_ACCOUNTS": False}}
            rows.append(row)
        return ok_json(rows)

    async def ticker(request: web.Request) -> web.Response:
        return ok_json([frames.ticker_fields(state, m) for m in markets_param(state, request)])

    async def ticker_all(request: web.Request) -> web.Response:
        quotes = request.query.get("quote_currencies", "KRW").split(",")
        return ok_json([frames.ticker_fields(state, m) for m in state.model.markets
                        if m.split("-", 1)[0] in quotes])

    async def orderbook(request: web.Request) -> web.Response:
        try:
            count = int(request.query.get("count", "30"))
        except ValueError:
            count = 0
        if not 1 <= count <= 30:
            return error_json(400, 400, "count must be between 1 and 30")
        return ok_json(orderbook_rows(state, markets_param(state, request), count))

    async def instruments(request: web.Request) -> web.Response:
        return ok_json([{"market": m, "quote_currency": "KRW",
                         "tick_size": num(tick(state.model.book(state.name, m).best_bid())),
                         "supported_levels": ["0"]} for m in markets_param(state, request)])

    async def websocket(request: web.Request) -> web.StreamResponse:
        return await wsfeed.serve(request, state, "upbit", private=False)

    async def websocket_private(request: web.Request) -> web.StreamResponse:
        return await wsfeed.serve(request, state, "upbit", private=True)

    r = app.router
    r.add_get("/v1/market/all", market_all)
    r.add_get("/v1/ticker", ticker)
    r.add_get("/v1/ticker/all", ticker_all)
    r.add_get("/v1/orderbook", orderbook)
    r.add_get("/v1/orderbook/instruments", instruments)
    r.add_get("/websocket/v1", websocket)
    r.add_get("/websocket/v1/private", websocket_private)
    upbit_private.add_routes(app, state)
    if state.transfers is not None:
        transfer_api.add_routes(app, state, state.transfers)
    faults.add_routes(app, state)
    state.exchange.listeners.append(lambda order, fill: wsfeed.publish_order_event(state, order, fill))
    return app
