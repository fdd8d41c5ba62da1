"""The live page: ``GET /`` (one static HTML file, no build step), ``GET /events`` (Server-Sent
Events), ``GET /api/ops`` (the same state as JSON) and ``POST /api/control`` (kill switch,
resume, unhalt), which needs the token from the environment variable
``ops.dashboard.token_env`` in an ``X-Karb-Token`` header and is refused without it.

The event stream looks at shared memory every ``push_interval_ms`` and sends ``books`` when any
slot changed; it sends ``state`` (actors, money, intents, alerts, monitors) when the bus-fed
state changed, at most once a second otherwise.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import re
import time
from importlib import resources
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from karb.ops.hub import OpsHub

_UNHALT = re.compile(r"^[A-Z0-9]+-[A-Z0-9]+$")


def page_html() -> str:
    return resources.files("karb.ops").joinpath("page.html").read_text(encoding="utf-8")


def ops_state(hub: OpsHub) -> dict[str, Any]:
    st = hub.state
    status = hub.status()
    pos = st.position
    money: dict[str, Any] = {}
    if pos is not None:
        skew = {}
        for market, held in pos.inventory.items():
            # coin on its way between venues counts where it will land (the rebalancer's)
            moving = pos.in_transit.get(market.split("-", 1)[1], {})
            venues = {v: q + moving.get(v, 0.0) for v, q in held.items()}
            total = sum(venues.values())
            skew[market] = {v: round(q / total, 3) if total > 0 else 0.0 for v, q in venues.items()}
        money = {"balances": pos.balances, "inventory": pos.inventory, "skew": skew,
                 "in_transit": pos.in_transit, "pnl_krw": pos.pnl_krw,
                 "pnl_total_krw": pos.pnl_total_krw,
                 "intents_done": pos.intents_done, "fills": pos.fills, "halted": pos.halted,
                 "open_intents": len(pos.open_intents)}
    exe = next((a for a in status["actors"] if a["name"] == hub.execution), None)
    return {
        "actors": [{k: a[k] for k in ("name", "pid", "state", "restarts", "heartbeat_age_ms",
                                      "rss_bytes", "cpu_percent")} for a in status["actors"]],
        "money": money,
        "pnl_today_krw": _pnl_today(hub),
        "kill_switch": bool(exe and exe["extra"].get("kill_switch", 0.0) > 0),
        "breaker_open": bool(exe and exe["extra"].get("breaker_open", 0.0) > 0),
        "intents": st.recent_intents(),
        "alerts": list(st.alerts)[-30:][::-1],
        "firing": [{"rule": r, "subject": s, "text": t} for (r, s), t in hub.rules.active.items()],
        "market_state": {m: {"state": v.state, "volatility_bps": v.volatility_bps,
                             "trend_bps": v.trend_bps, "spread_bps": v.spread_bps}
                         for m, v in st.market_state.items()},
        "quality": {f"{v}/{m}": agg.as_dict() for (v, m), agg in st.quality.items()},
        "controls": bool(hub.token()),
    }


def _pnl_today(hub: OpsHub) -> float | None:
    """Realised PnL since local midnight or the supervisor's start, whichever is later."""
    pos = hub.state.position
    if pos is None or hub.pnl_day is None:
        return None
    return round(pos.pnl_total_krw - hub.pnl_day[1], 2)


def add_dashboard_routes(app: web.Application, hub: OpsHub) -> None:
    push_s = hub.cfg.dashboard.push_interval_ms / 1000
    closing = asyncio.Event()  # set at server shutdown: open streams end, the stop never waits

    async def on_shutdown(app: web.Application) -> None:
        closing.set()

    async def index(request: web.Request) -> web.Response:
        return web.Response(text=page_html(), content_type="text/html")

    async def api_ops(request: web.Request) -> web.Response:
        books = hub.books.snapshot() if hub.books is not None else []
        return web.json_response(ops_state(hub) | {"books": books})

    async def events(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-cache"})
        await resp.prepare(request)
        last_books: list[Any] = []
        last_version, last_state_at = -1, 0.0
        try:
            while not closing.is_set():
                books = hub.books.snapshot() if hub.books is not None else []
                seqs = [[t["seq"] for t in m["venues"].values()] for m in books]
                if seqs != last_books:
                    last_books = seqs
                    await _send(resp, "books", books)
                now = time.monotonic()
                if hub.state.version != last_version or now - last_state_at >= 1.0:
                    last_version, last_state_at = hub.state.version, now
                    await _send(resp, "state", ops_state(hub))
                await asyncio.sleep(push_s)
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        return resp

    async def control(request: web.Request) -> web.Response:
        token = hub.token()
        if not token:
            return web.json_response({"ok": False, "error": "controls are disabled: set "
                                      f"{hub.cfg.dashboard.token_env} for the supervisor"}, status=403)
        given = request.headers.get("X-Karb-Token", "")
        if not hmac.compare_digest(given.encode(), token.encode()):
            return web.json_response({"ok": False, "error": "a valid token is required"}, status=403)
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"ok": False, "error": "body must be JSON"}, status=400)
        action = body.get("action") if isinstance(body, dict) else None
        market = str(body.get("market", "")) if isinstance(body, dict) else ""
        if action in ("kill", "resume"):
            cmd = action
        elif action == "unhalt" and _UNHALT.match(market):
            cmd = f"unhalt {market}"
        else:
            return web.json_response({"ok": False, "error": "action must be kill, resume or "
                                      "unhalt (with a market)"}, status=400)
        ok, detail = await hub.control(cmd)
        return web.json_response({"ok": ok, "detail": detail}, status=200 if ok else 409)

    app.on_shutdown.append(on_shutdown)
    app.router.add_get("/", index)
    app.router.add_get("/events", events)
    app.router.add_get("/api/ops", api_ops)
    app.router.add_post("/api/control", control)


async def _send(resp: web.StreamResponse, event: str, data: Any) -> None:
    await resp.write(f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode())
