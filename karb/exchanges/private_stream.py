"""Order updates by private WebSocket (myOrder): one authenticated connection per venue, kept
open, reconnecting with back-off; every frame becomes a typed :class:`OrderUpdate`.

Wire (exchanges.md §1.5, §2.5, §7):
- Upbit ``/websocket/v1/private``: JWT (``access_key``, ``nonce``; no ``query_hash``) in the
  upgrade's ``Authorization`` header; request ``[{"ticket"}, {"type": "myOrder", "codes"?}]``.
  Frames: ``uuid, identifier, ask_bid (ASK|BID), order_type, state (wait|watch|trade|done|cancel|
  prevented), price, volume`` (the fill's on a ``trade`` event, else the order's),
  ``executed_volume, executed_funds, paid_fee, remaining_volume, trade_uuid, trade_fee,
  is_maker, trade_timestamp, timestamp`` (ms).
- Bithumb ``/websocket/v2/private`` (v1 private ended 2026-10): the same JWT plus the
  ``timestamp`` claim; myOrder v2 renames ``uuid→order_id``, ``trade_uuid→trade_id``,
  ``ask_bid→side`` (``buy|sell``), ``price→order_price``/``trade_price``, ``volume→quantity``
  and adds ``client_order_id``.

A stream is a faster source, never the owner of an order's truth: myOrder frames carry no
sequence number, so after a reconnect (``on_gap``) updates may have been missed and the owner
must look its open orders up by REST. Silence is normal on a private stream (no orders, no
frames), so liveness is the venue's answer to our text ``PING`` (``{"status":"UP"}``): no frame
at all for ``stale_after_ms`` means the connection is stalled and is replaced.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import aiohttp
import msgspec

from karb.exchanges.bithumb import auth as bithumb_auth
from karb.exchanges.credentials import Credentials
from karb.exchanges.types import OrderState, Side
from karb.exchanges.upbit import auth as upbit_auth
from karb.retry import backoff_delay

log = logging.getLogger(__name__)

PrivateVenue = Literal["upbit", "bithumb"]
PRIVATE_PATHS: dict[PrivateVenue, str] = {"upbit": "/websocket/v1/private",
                                          "bithumb": "/websocket/v2/private"}
# myOrder ``state`` → ours. ``trade`` is a fill of an order that may still be open: the update
# carries the fill, and the order stays OPEN until a ``done``/``cancel`` frame says otherwise.
STATES: dict[str, OrderState] = {"wait": OrderState.OPEN, "watch": OrderState.OPEN,
                                 "trade": OrderState.OPEN, "done": OrderState.DONE,
                                 "cancel": OrderState.CANCELLED,
                                 "prevented": OrderState.CANCELLED}


class StreamFill(msgspec.Struct, frozen=True, gc=False):
    trade_id: str
    price: float
    volume: float
    funds: float
    fee: float
    is_maker: bool | None
    ts_event: int  # ns


class OrderUpdate(msgspec.Struct, frozen=True, gc=False):
    """One myOrder frame in our terms. ``fill`` is set on a ``trade`` event (one fill each);
    the cumulative fields are the venue's totals after this event."""

    venue: str
    order_id: str
    client_id: str | None
    market: str
    side: Side
    order_type: str
    state: OrderState
    venue_state: str  # as the venue said it: wait | watch | trade | done | cancel | prevented
    # The order's limit price and volume (None for a market order's missing one). Upbit's
    # ``trade`` events carry the fill's price/volume in these fields instead, so there they are
    # None and ``fill`` has them; Bithumb v2 sends ``order_price`` on every event.
    price: float | None
    volume: float | None
    remaining_volume: float
    executed_volume: float
    executed_funds: float
    paid_fee: float
    fill: StreamFill | None
    ts_event: int  # ns, the venue's
    ts_init: int  # ns, when we received it


class _UpbitOrder(msgspec.Struct, gc=False):
    type: str
    code: str
    uuid: str
    ask_bid: str
    order_type: str
    state: str
    price: float | None = None
    volume: float | None = None
    remaining_volume: float | None = None
    executed_volume: float = 0.0
    executed_funds: float = 0.0
    paid_fee: float = 0.0
    trade_uuid: str | None = None
    trade_fee: float | None = None
    is_maker: bool | None = None
    identifier: str | None = None
    trade_timestamp: int | None = None
    timestamp: int = 0


class _BithumbOrder(msgspec.Struct, gc=False):
    type: str
    code: str
    order_id: str
    side: str
    order_type: str
    state: str
    order_price: float | None = None
    trade_price: float | None = None
    quantity: float | None = None
    remaining_volume: float | None = None
    executed_volume: float = 0.0
    executed_funds: float = 0.0
    paid_fee: float = 0.0
    trade_id: str | None = None
    trade_fee: float | None = None
    is_maker: bool | None = None
    client_order_id: str | None = None
    trade_timestamp: int | None = None
    timestamp: int = 0


class _Probe(msgspec.Struct, gc=False):
    type: str | None = None
    status: str | None = None
    error: dict[str, str] | None = None


_PROBE = msgspec.json.Decoder(_Probe)
_UPBIT = msgspec.json.Decoder(_UpbitOrder)
_BITHUMB = msgspec.json.Decoder(_BithumbOrder)
_MS = 1_000_000


def parse_upbit(data: bytes, ts_init: int) -> OrderUpdate:
    w = _UPBIT.decode(data)
    fill = None
    if w.state == "trade" and w.trade_uuid is not None:
        # On a trade event Upbit's price/volume are the fill's; the order's limit is unknown.
        px, qty = w.price or 0.0, w.volume or 0.0
        fill = StreamFill(w.trade_uuid, px, qty, px * qty, w.trade_fee or 0.0, w.is_maker,
                          (w.trade_timestamp or w.timestamp) * _MS)
    return OrderUpdate("upbit", w.uuid, w.identifier, w.code, "buy" if w.ask_bid == "BID" else "sell",
                       w.order_type, STATES.get(w.state, OrderState.OPEN), w.state,
                       None if fill else w.price, None if fill else w.volume,
                       w.remaining_volume or 0.0, w.executed_volume, w.executed_funds,
                       w.paid_fee, fill, w.timestamp * _MS, ts_init)


def parse_bithumb(data: bytes, ts_init: int) -> OrderUpdate:
    w = _BITHUMB.decode(data)
    fill = None
    if w.state == "trade" and w.trade_id is not None:
        px = w.trade_price or 0.0
        qty = w.quantity or 0.0  # v2 ``quantity`` on a trade event: the fill's
        fill = StreamFill(w.trade_id, px, qty, px * qty, w.trade_fee or 0.0, w.is_maker,
                          (w.trade_timestamp or w.timestamp) * _MS)
    return OrderUpdate("bithumb", w.order_id, w.client_order_id, w.code,
                       "buy" if w.side == "buy" else "sell", w.order_type,
                       STATES.get(w.state, OrderState.OPEN), w.state, w.order_price,
                       None if fill else w.quantity, w.remaining_volume or 0.0,
                       w.executed_volume, w.executed_funds, w.paid_fee, fill,
                       w.timestamp * _MS, ts_init)


PARSERS: dict[PrivateVenue, Callable[[bytes, int], OrderUpdate]] = {
    "upbit": parse_upbit, "bithumb": parse_bithumb}


@dataclass
class PrivateStreamStats:
    connects: int = 0
    frames: int = 0
    updates: int = 0
    malformed: int = 0
    stale_reconnects: int = 0
    refused: int = 0  # error frames (e.g. INVALID_AUTH) and failed upgrades
    errors: int = 0
    last_error: str = ""


UpdateHandler = Callable[[OrderUpdate], None]


class PrivateOrderStream:
    """``await stream.run()`` until cancelled; ``on_update`` gets every order update in order
    of arrival, ``on_gap`` is called after every connect but the first (updates may have been
    missed: look open orders up by REST). ``connected`` is set while subscribed."""

    def __init__(self, venue: PrivateVenue, ws_base: str, credentials: Credentials,
                 on_update: UpdateHandler, markets: list[str] | None = None,
                 on_gap: Callable[[], None] | None = None, ping_interval_s: float = 5.0,
                 stale_after_ms: int = 12_000, backoff_initial_s: float = 0.25,
                 backoff_max_s: float = 10.0, rng: random.Random | None = None) -> None:
        """``ws_base``: the venue's WebSocket origin, e.g. ``wss://api.upbit.com`` or
        ``ws://127.0.0.1:PORT`` (a ``…/websocket/v1`` URL is cut back to it)."""
        self.venue = venue
        origin = ws_base.split("/websocket/")[0].rstrip("/")
        self.url = origin + PRIVATE_PATHS[venue]
        self.credentials = credentials
        self.on_update = on_update
        self.on_gap = on_gap
        self.markets = list(markets) if markets else None
        self.ping_interval_s = min(ping_interval_s, 30.0)
        self.stale_after_s = max(stale_after_ms / 1000, self.ping_interval_s * 2)
        self.backoff_initial_s = max(backoff_initial_s, 0.25)
        self.backoff_max_s = backoff_max_s
        self.stats = PrivateStreamStats()
        self.connected = asyncio.Event()
        self._parse = PARSERS[venue]
        self._rng = rng or random.Random()

    def subscription(self) -> str:
        item: dict[str, object] = {"type": "myOrder"}
        if self.markets:
            item["codes"] = self.markets
        return msgspec.json.encode([{"ticket": str(uuid.uuid4())}, item]).decode()

    def headers(self) -> dict[str, str]:
        """A fresh token per connect (nonces are single-use; Bithumb's expire after 60 s)."""
        if self.venue == "bithumb":
            return bithumb_auth.authorization(self.credentials, None)
        return upbit_auth.authorization(self.credentials, None)

    def backoff_s(self, attempt: int) -> float:
        # ±20 % around 1.25× the schedule: never under backoff_initial_s (≥ 0.25 s)
        return backoff_delay(self.backoff_initial_s * 1.25, self.backoff_max_s * 1.25, attempt, 0.2,
                             self._rng)

    async def run(self) -> None:
        attempt = 0
        async with aiohttp.ClientSession() as session:
            while True:
                healthy = await self._one_session(session)
                attempt = 0 if healthy else attempt + 1
                delay = self.backoff_s(attempt)
                log.info("%s private stream: reconnecting in %.2f s", self.venue, delay)
                await asyncio.sleep(delay)

    async def _one_session(self, session: aiohttp.ClientSession) -> bool:
        """One connection; True if it was subscribed and alive for a while before it ended."""
        started = time.monotonic()
        try:
            async with session.ws_connect(self.url, headers=self.headers(), heartbeat=None,
                                          autoping=True, max_msg_size=8 << 20) as ws:
                self.stats.connects += 1
                await ws.send_str(self.subscription())
                if self.stats.connects > 1 and self.on_gap is not None:
                    self.on_gap()
                self.connected.set()
                pinger = asyncio.create_task(self._ping(ws))
                try:
                    refused = await self._receive(ws)
                finally:
                    pinger.cancel()
                    self.connected.clear()
                if refused:
                    return False
        except aiohttp.WSServerHandshakeError as exc:
            self.stats.refused += 1
            self.stats.last_error = f"handshake refused: HTTP {exc.status}"
            log.warning("%s private stream: %s", self.venue, self.stats.last_error)
            return False
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            self.stats.errors += 1
            self.stats.last_error = f"{type(exc).__name__}: {exc}"
            log.warning("%s private stream: %s", self.venue, self.stats.last_error)
            return False
        return time.monotonic() - started > self.stale_after_s

    async def _receive(self, ws: aiohttp.ClientWebSocketResponse) -> bool:
        """Until the connection ends or stalls; True if the venue refused us (error frame)."""
        while True:
            try:
                msg = await ws.receive(timeout=self.stale_after_s)
            except TimeoutError:
                self.stats.stale_reconnects += 1
                log.warning("%s private stream: nothing (not even PING answers) for %.1f s, "
                            "replacing the connection", self.venue, self.stale_after_s)
                return False
            if msg.type not in (aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.TEXT):
                log.info("%s private stream: closed by the venue (%s)", self.venue,
                         msg.extra or msg.data)
                return False
            ts_init = time.time_ns()
            data = msg.data if isinstance(msg.data, bytes) else msg.data.encode()
            self.stats.frames += 1
            try:
                probe = _PROBE.decode(data)
                if probe.error is not None:
                    self.stats.refused += 1
                    self.stats.last_error = f"{probe.error.get('name')}: {probe.error.get('message')}"
                    log.warning("%s private stream refused: %s", self.venue, self.stats.last_error)
                    return True
                if probe.type != "myOrder":
                    continue  # {"status":"UP"}, myAsset, …
                update = self._parse(data, ts_init)
            except (ValueError, msgspec.DecodeError) as exc:
                self.stats.malformed += 1
                log.warning("%s private stream: malformed frame skipped: %.120s", self.venue, exc)
                continue
            self.stats.updates += 1
            self.on_update(update)

    async def _ping(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        while True:
            await ws.send_str("PING")
            await asyncio.sleep(self.ping_interval_s)
