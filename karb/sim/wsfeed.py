"""WebSocket streams in the Upbit request format, served by Upbit and by Bithumb's /websocket/v1.

A client sends one JSON array ``[{"ticket"}, {"type", "codes", flags…}, {"format"}]``; a new
request replaces the subscription. The first frame per (type, code) is ``SNAPSHOT``, then
``REALTIME`` on every change; frames are binary UTF-8 JSON in DEFAULT or SIMPLE keys (``*_LIST``
wraps each in a list). Text ``PING`` answers ``{"status":"UP"}``. A connection that sends nothing
for ``ws_idle_timeout_s`` is closed, as the venues do. Differences of Bithumb: camelCase flags,
at most 15 levels, microsecond timestamps, ``level`` 1 by default.

Each connection owns a bounded outbound queue drained by its own writer task, so the market loop
never waits for a slow client; a client that falls too far behind is disconnected.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import msgspec
from aiohttp import WSMsgType, web

from karb.sim import frames
from karb.sim.engine import Account, Fill, Order, VenueError
from karb.sim.rules import dialect
from karb.sim.venue import VenueState

OUTBOX_LIMIT = 10_000
_JSON = msgspec.json.Encoder()
DEPTHS = (1, 5, 15, 30)
PUBLIC_TYPES = ("orderbook", "ticker", "trade")
PRIVATE_TYPES = ("myOrder", "myAsset")
# myOrder per venue: Upbit's fields, Bithumb's v2 renames (frames.bithumb_my_order_frame).
MY_ORDER_FRAMES = {"upbit": frames.my_order_frame, "bithumb": frames.bithumb_my_order_frame}

class Session:
    """One WebSocket connection and what it subscribed to."""

    def __init__(self, ws: web.WebSocketResponse, state: VenueState, family: str,
                 account: Account | None = None) -> None:
        self.ws = ws
        self.state = state
        self.family = family
        self.account = account
        self.subs: dict[str, list[tuple[str, int]]] = {}
        self.realtime: set[str] = set()
        self.fmt = "DEFAULT"
        self.level = 0
        self.malformed_pending = 0
        self.last_trade_seq: dict[str, int] = {}
        self.tick_types: list[str] = []  # pubwss ticker: the tickTypes asked for
        # Streams with their own protocol (Bithumb's pubwss) publish through this hook.
        self.on_step: Callable[[set[str]], None] | None = None
        self.outbox: asyncio.Queue[bytes | str | None] = asyncio.Queue(OUTBOX_LIMIT)

    def send(self, frame: bytes | str) -> None:
        if self.state.faults.ws_stalled:
            return
        if self.malformed_pending:
            self.malformed_pending -= 1
            frame = b'{"type":"orderbook","code":'  # cut short: not JSON
        try:
            self.outbox.put_nowait(frame)
        except asyncio.QueueFull:
            self.outbox = asyncio.Queue(1)
            self.outbox.put_nowait(None)  # too slow a reader: the writer closes the socket

    async def writer(self) -> None:
        while True:
            frame = await self.outbox.get()
            if frame is None:
                await self.ws.close()
                return
            if isinstance(frame, str):
                await self.ws.send_str(frame)
            else:
                await self.ws.send_bytes(frame)

    async def drop(self) -> None:
        await self.ws.close()

    async def close(self, writer: asyncio.Task[None]) -> None:
        """Flush what is queued (an error frame, say), then close; bounded in time."""
        try:
            self.outbox.put_nowait(None)
        except asyncio.QueueFull:
            pass
        try:
            await asyncio.wait_for(writer, 1.0)
        except (TimeoutError, ConnectionError, RuntimeError):
            writer.cancel()
        await self.ws.close()

    def encode(self, frame: dict[str, Any]) -> bytes:
        if self.fmt in ("SIMPLE", "SIMPLE_LIST"):
            frame = frames.simple(frame)
        return _JSON.encode([frame] if self.fmt.endswith("_LIST") else frame)


def parse_request(text: str, family: str, private: bool
                  ) -> tuple[dict[str, list[tuple[str, int]]], set[str], set[str], str, int]:
    """(subs, snapshot-only types, realtime-only types, format, level) or VenueError(name)."""
    try:
        items = json.loads(text)
    except ValueError:
        raise VenueError(400, "WRONG_FORMAT", "request is not JSON") from None
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise VenueError(400, "WRONG_FORMAT", "request must be a JSON array of objects")
    if not any("ticket" in i for i in items):
        raise VenueError(400, "NO_TICKET", "ticket is required")
    # Flags as each venue documents them (exchanges.md §1.5, §2.5, §7): Upbit only snake_case,
    # Bithumb only camelCase (NA saw snake_case ignored there). A flag in the other spelling is
    # an unknown field and ignored — so pyupbit's camelCase ``isOnlyRealtime`` on Upbit gets
    # the SNAPSHOT first, as we take the real venue to do (it documents no camelCase).
    snap_key, real_key = dialect(family).ws_flags
    allowed = PRIVATE_TYPES if private else PUBLIC_TYPES
    subs: dict[str, list[tuple[str, int]]] = {}
    only_snap, only_real = set(), set()
    fmt, level = "DEFAULT", dialect(family).ws_default_level
    types = [i for i in items if "type" in i]
    if not types:
        raise VenueError(400, "NO_TYPE", "type is required")
    for item in types:
        kind = item["type"]
        if kind not in allowed:
            raise VenueError(400, "INVALID_PARAM", f"type {kind} is not available here")
        codes = item.get("codes")
        if kind == "myOrder" and codes is None:
            codes = []  # optional for myOrder: every market
        if kind != "myAsset" and (not isinstance(codes, list) or (not codes and kind != "myOrder")):
            raise VenueError(400, "NO_CODES", "codes is required")
        parsed = []
        for code in codes or []:
            market, _, depth = str(code).partition(".")
            n = int(depth) if depth.isdigit() else 30
            parsed.append((market, n if n in DEPTHS else 30))
        # Several items of one type in one request are merged (ccxt.pro's Upbit sends one item
        # per symbol; PR #26954's live capture shows all of them streaming); the request as a
        # whole replaces the previous subscription (``serve``).
        merged = subs.setdefault(kind, [])
        merged.extend(code for code in parsed if code not in merged)
        if item.get(snap_key):
            only_snap.add(kind)
        if item.get(real_key):
            only_real.add(kind)
        if isinstance(item.get("level"), (int, float)):
            level = item["level"]
    for item in items:
        if "format" in item:
            fmt = str(item["format"]).upper()
            if fmt not in ("DEFAULT", "SIMPLE", "JSON_LIST", "SIMPLE_LIST"):
                raise VenueError(400, "INVALID_PARAM", f"format {fmt} is not supported")
    return subs, only_snap, only_real, fmt, level


# -- serving -----------------------------------------------------------------------------------

def snapshot(session: Session, only_real: set[str]) -> None:
    state = session.state
    for kind, codes in session.subs.items():
        if kind in only_real or kind in PRIVATE_TYPES:
            continue
        for market, depth in codes:
            if market not in state.model.markets:
                continue  # unknown codes are silently ignored, as the venues do
            if kind == "orderbook":
                session.send(session.encode(frames.orderbook_frame(state, market, depth, "SNAPSHOT", session.level)))
            elif kind == "ticker":
                session.send(session.encode(frames.ticker_frame(state, market, "SNAPSHOT")))
            else:
                for frame in frames.trade_frames(state, session.last_trade_seq, market, "SNAPSHOT"):
                    session.send(session.encode(frame))


def publish_step(state: VenueState, changed: set[str]) -> None:
    """Called by the market loop after each step: REALTIME frames to every subscriber."""
    cache: dict[tuple[Any, ...], bytes] = {}
    for session in list(state.sockets):
        if session.on_step is not None:
            session.on_step(changed)
            continue
        for kind in session.realtime & {"orderbook", "ticker", "trade"}:
            for market, depth in session.subs.get(kind, ()):
                if market not in changed:
                    continue
                if kind == "trade":
                    for frame in frames.trade_frames(state, session.last_trade_seq, market, "REALTIME"):
                        session.send(session.encode(frame))
                    continue
                key = (kind, market, depth, session.fmt, session.level)
                payload = cache.get(key)
                if payload is None:
                    frame = (frames.orderbook_frame(state, market, depth, "REALTIME", session.level)
                             if kind == "orderbook" else frames.ticker_frame(state, market, "REALTIME"))
                    payload = cache[key] = session.encode(frame)
                session.send(payload)


def publish_order_event(state: VenueState, order: Order, fill: Fill | None) -> None:
    """Engine listener: myOrder / myAsset frames to the order's account's private sockets."""
    for session in list(state.sockets):
        if session.account is None or session.account.access_key != order.account:
            continue
        codes = [c for c, _ in session.subs.get("myOrder", [])]
        if "myOrder" in session.subs and (not codes or order.market in codes):
            session.send(session.encode(MY_ORDER_FRAMES[session.family](state, order, fill)))
        if "myAsset" in session.subs:
            session.send(session.encode(frames.my_asset_frame(state, session.account,
                                                       [order.quote, order.base])))


async def serve(request: web.Request, state: VenueState, family: str, private: bool) -> web.StreamResponse:
    ws = web.WebSocketResponse(autoping=False, max_msg_size=1 << 20)
    account = None
    auth_error = None
    if private:
        try:
            account = state.authenticate(request, None)
        except VenueError as exc:
            auth_error = exc
    await ws.prepare(request)
    session = Session(ws, state, family, account)
    writer = asyncio.create_task(session.writer())
    state.sockets.add(session)
    try:
        if auth_error is not None:
            session.send(frames.error_frame("INVALID_AUTH", auth_error.message))
            return ws
        while True:
            try:
                msg = await ws.receive(timeout=state.sim.ws_idle_timeout_s)
            except TimeoutError:
                break  # idle: the venues close such connections
            if msg.type == WSMsgType.PING:
                await ws.pong(msg.data)
            elif msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                text = msg.data if msg.type == WSMsgType.TEXT else msg.data.decode(errors="replace")
                if text.strip() == "PING":
                    session.send('{"status":"UP"}')
                    continue
                try:
                    subs, only_snap, only_real, fmt, level = parse_request(text, family, private)
                except VenueError as exc:
                    session.send(frames.error_frame(exc.name, exc.message))
                    break
                session.subs, session.fmt, session.level = subs, fmt, level
                session.realtime = set(subs) - only_snap
                session.last_trade_seq.clear()
                snapshot(session, only_real)
            elif msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                break
    finally:
        state.sockets.discard(session)
        await session.close(writer)
    return ws
