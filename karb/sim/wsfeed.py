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
import time
import uuid
from collections.abc import Callable
from typing import Any

import msgspec
from aiohttp import WSMsgType, web

from karb.sim.engine import Account, Fill, Order, VenueError
from karb.sim.venue import VenueState

OUTBOX_LIMIT = 10_000
_JSON = msgspec.json.Encoder()
DEPTHS = (1, 5, 15, 30)
PUBLIC_TYPES = ("orderbook", "ticker", "trade")
PRIVATE_TYPES = ("myOrder", "myAsset")

SIMPLE_KEYS = {
    "type": "ty", "code": "cd", "timestamp": "tms", "stream_type": "st", "level": "lv",
    "total_ask_size": "tas", "total_bid_size": "tbs", "orderbook_units": "obu",
    "ask_price": "ap", "bid_price": "bp", "ask_size": "as", "bid_size": "bs",
    "opening_price": "op", "high_price": "hp", "low_price": "lp", "trade_price": "tp",
    "prev_closing_price": "pcp", "change": "c", "change_price": "cp",
    "signed_change_price": "scp", "change_rate": "cr", "signed_change_rate": "scr",
    "trade_volume": "tv", "acc_trade_volume": "atv", "acc_trade_volume_24h": "atv24h",
    "acc_trade_price": "atp", "acc_trade_price_24h": "atp24h", "trade_date": "tdt",
    "trade_time": "ttm", "trade_timestamp": "ttms", "ask_bid": "ab", "market_state": "ms",
    "sequential_id": "sid", "best_ask_price": "bap", "best_ask_size": "bas",
    "best_bid_price": "bbp", "best_bid_size": "bbs",
    "uuid": "uid", "order_type": "ot", "state": "s", "trade_uuid": "tuid", "price": "p",
    "avg_price": "ap", "volume": "v", "remaining_volume": "rv", "executed_volume": "ev",
    "trades_count": "tc", "reserved_fee": "rsf", "remaining_fee": "rmf", "paid_fee": "pf",
    "locked": "l", "executed_funds": "ef", "time_in_force": "tif", "trade_fee": "tf",
    "is_maker": "im", "identifier": "id", "order_timestamp": "otms",
    "asset_uuid": "astuid", "assets": "ast", "currency": "cu", "balance": "b",
    "asset_timestamp": "asttms",
}


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
            frame = _simple(frame)
        return _JSON.encode([frame] if self.fmt.endswith("_LIST") else frame)


def _simple(value: Any) -> Any:
    if isinstance(value, dict):
        return {SIMPLE_KEYS.get(k, k): _simple(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_simple(v) for v in value]
    return value


def error_frame(name: str, message: str) -> str:
    return json.dumps({"error": {"name": name, "message": message}})


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
    snap_key, real_key = (("isOnlySnapshot", "isOnlyRealtime") if family == "bithumb"
                          else ("is_only_snapshot", "is_only_realtime"))
    allowed = PRIVATE_TYPES if private else PUBLIC_TYPES
    subs: dict[str, list[tuple[str, int]]] = {}
    only_snap, only_real = set(), set()
    fmt, level = "DEFAULT", (1 if family == "bithumb" else 0)
    types = [i for i in items if "type" in i]
    if not types:
        raise VenueError(400, "NO_TYPE", "type is required")
    for item in types:
        kind = item["type"]
        if kind not in allowed:
            raise VenueError(400, "INVALID_PARAM", f"type {kind} is not available here")
        codes = item.get("codes")
        if kind != "myAsset" and (not isinstance(codes, list) or (not codes and kind != "myOrder")):
            raise VenueError(400, "NO_CODES", "codes is required")
        parsed = []
        for code in codes or []:
            market, _, depth = str(code).partition(".")
            n = int(depth) if depth.isdigit() else 30
            parsed.append((market, n if n in DEPTHS else 30))
        subs[kind] = parsed
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


# -- frames ------------------------------------------------------------------------------------

def orderbook_frame(state: VenueState, market: str, depth: int, stream: str, level: float,
                    rest: bool = False) -> dict[str, Any]:
    book = state.model.book(state.name, market)
    # Bithumb's WebSocket sends at most 15 levels; its REST book of one market has 30.
    cap = min(depth, 15 if state.name == "bithumb" and not rest else 30)
    bids, asks = book.bids[:cap], book.asks[:cap]
    units = []
    for i in range(max(len(bids), len(asks))):
        ask = asks[i] if i < len(asks) else (0, 0)
        bid = bids[i] if i < len(bids) else (0, 0)
        units.append({"ask_price": ask[0], "bid_price": bid[0], "ask_size": ask[1], "bid_size": bid[1]})
    ts = state.now_ms() * (1000 if state.name == "bithumb" else 1)  # Bithumb WS: microseconds
    return {"type": "orderbook", "code": market, "timestamp": ts,
            "total_ask_size": round(sum(a[1] for a in asks), 8),
            "total_bid_size": round(sum(b[1] for b in bids), 8),
            "orderbook_units": units, "stream_type": stream, "level": level}


def ticker_fields(state: VenueState, market: str) -> dict[str, Any]:
    t = state.model.ticker(state.name, market)
    change = t.trade_price - t.prev_closing_price
    rate = change / t.prev_closing_price if t.prev_closing_price else 0.0
    now = state.now_ms()
    date = _utc(now, "%Y%m%d")
    return {"market": market, "trade_date": date, "trade_time": _utc(now, "%H%M%S"),
            "trade_date_kst": date, "trade_time_kst": _utc(now + 9 * 3_600_000, "%H%M%S"),
            "trade_timestamp": t.trade_ts_ms or now, "opening_price": t.opening_price,
            "high_price": t.high_price, "low_price": t.low_price, "trade_price": t.trade_price,
            "prev_closing_price": t.prev_closing_price,
            "change": "RISE" if change > 0 else "FALL" if change < 0 else "EVEN",
            "change_price": abs(change), "change_rate": round(abs(rate), 8),
            "signed_change_price": change, "signed_change_rate": round(rate, 8),
            "trade_volume": t.trade_volume, "acc_trade_price": t.acc_trade_price,
            "acc_trade_price_24h": t.acc_trade_price, "acc_trade_volume": t.acc_trade_volume,
            "acc_trade_volume_24h": t.acc_trade_volume,
            "highest_52_week_price": t.high_price, "highest_52_week_date": _utc(now, "%Y-%m-%d"),
            "lowest_52_week_price": t.low_price, "lowest_52_week_date": _utc(now, "%Y-%m-%d"),
            "timestamp": now}


def ticker_frame(state: VenueState, market: str, stream: str) -> dict[str, Any]:
    f = ticker_fields(state, market)
    f.pop("market")
    f.pop("trade_date_kst")
    f.pop("trade_time_kst")
    t = state.model.ticker(state.name, market)
    return {"type": "ticker", "code": market, **f, "ask_bid": t.ask_bid,
            "acc_ask_volume": 0.0, "acc_bid_volume": 0.0, "market_state": "ACTIVE",
            "is_trading_suspended": False, "delisting_date": None, "market_warning": "NONE",
            "stream_type": stream}


def trade_frames(state: VenueState, session: Session, market: str, stream: str) -> list[dict[str, Any]]:
    trades = state.model.state[(state.name, market)].trades
    last = session.last_trade_seq.get(market, -1)
    fresh = [t for t in trades if t.sequential_id > last] if last >= 0 else trades[-1:]
    if trades:
        session.last_trade_seq[market] = trades[-1].sequential_id
    book = state.model.book(state.name, market)
    ticker = state.model.ticker(state.name, market)
    out = []
    for t in fresh:
        change = t.price - ticker.prev_closing_price
        out.append({"type": "trade", "code": market, "trade_price": t.price,
                    "trade_volume": t.volume, "ask_bid": t.side.upper(),
                    "prev_closing_price": ticker.prev_closing_price,
                    "change": "RISE" if change > 0 else "FALL" if change < 0 else "EVEN",
                    "change_price": abs(change), "trade_date": _utc(t.ts_ms, "%Y-%m-%d"),
                    "trade_time": _utc(t.ts_ms, "%H:%M:%S"), "trade_timestamp": t.ts_ms,
                    "timestamp": state.now_ms(), "sequential_id": t.sequential_id,
                    "best_ask_price": book.best_ask(), "best_ask_size": book.asks[0][1] if book.asks else 0,
                    "best_bid_price": book.best_bid(), "best_bid_size": book.bids[0][1] if book.bids else 0,
                    "stream_type": stream})
    return out


def my_order_frame(state: VenueState, order: Order, fill: Fill | None) -> dict[str, Any]:
    state_name = "trade" if fill is not None else order.state
    avg = order.executed_funds / order.executed_volume if order.executed_volume else 0.0
    return {"type": "myOrder", "code": order.market, "uuid": order.id,
            "ask_bid": order.side.upper(), "order_type": order.ord_type, "state": state_name,
            "trade_uuid": fill.trade_id if fill else None,
            "price": fill.price if fill else order.price, "avg_price": avg,
            "volume": fill.volume if fill else order.volume,
            "remaining_volume": order.remaining_volume, "executed_volume": order.executed_volume,
            "trades_count": len(order.fills), "reserved_fee": order.reserved_fee,
            "remaining_fee": max(order.reserved_fee - order.paid_fee, 0.0),
            "paid_fee": order.paid_fee, "locked": order.locked,
            "executed_funds": order.executed_funds, "time_in_force": order.time_in_force,
            "trade_fee": fill.fee if fill else None, "is_maker": fill.is_maker if fill else None,
            "identifier": order.client_id, "smp_type": None, "prevented_volume": 0,
            "prevented_locked": 0, "trade_timestamp": fill.ts_ns // 1_000_000 if fill else None,
            "order_timestamp": order.created_ns // 1_000_000, "timestamp": state.now_ms(),
            "stream_type": "REALTIME"}


def my_asset_frame(state: VenueState, account: Account, currencies: list[str]) -> dict[str, Any]:
    now = state.now_ms()
    return {"type": "myAsset", "asset_uuid": str(uuid.uuid4()),
            "assets": [{"currency": c, "balance": account.balance(c).free,
                        "locked": account.balance(c).locked} for c in currencies],
            "asset_timestamp": now, "timestamp": now, "stream_type": "REALTIME"}


def _utc(ms: int, fmt: str) -> str:
    return time.strftime(fmt, time.gmtime(ms / 1000))


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
                session.send(session.encode(orderbook_frame(state, market, depth, "SNAPSHOT", session.level)))
            elif kind == "ticker":
                session.send(session.encode(ticker_frame(state, market, "SNAPSHOT")))
            else:
                for frame in trade_frames(state, session, market, "SNAPSHOT"):
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
                    for frame in trade_frames(state, session, market, "REALTIME"):
                        session.send(session.encode(frame))
                    continue
                key = (kind, market, depth, session.fmt, session.level)
                payload = cache.get(key)
                if payload is None:
                    frame = (orderbook_frame(state, market, depth, "REALTIME", session.level)
                             if kind == "orderbook" else ticker_frame(state, market, "REALTIME"))
                    payload = cache[key] = session.encode(frame)
                session.send(payload)


def publish_order_event(state: VenueState, order: Order, fill: Fill | None) -> None:
    """Engine listener: myOrder / myAsset frames to the order's account's private sockets."""
    for session in list(state.sockets):
        if session.account is None or session.account.access_key != order.account:
            continue
        codes = [c for c, _ in session.subs.get("myOrder", [])]
        if "myOrder" in session.subs and (not codes or order.market in codes):
            session.send(session.encode(my_order_frame(state, order, fill)))
        if "myAsset" in session.subs:
            session.send(session.encode(my_asset_frame(state, session.account,
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
            session.send(error_frame("INVALID_AUTH", auth_error.message))
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
                    session.send(error_frame(exc.name, exc.message))
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
