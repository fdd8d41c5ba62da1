"""One simulated venue's state and the HTTP plumbing its API modules share: the middleware that
applies faults and rate limits, parameter parsing, and error rendering in the venue's shape."""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, overload
from urllib.parse import parse_qsl

import jwt
from aiohttp import web
from multidict import MultiDict, MultiMapping

from karb.config import SimConfig, SimVenueConfig
from karb.sim.auth import (
    NonceStore,
    hash_source_from_body,
    hash_source_from_query,
    verify_jwt,
)
from karb.sim.engine import Account, Exchange, VenueError
from karb.sim.market import MarketModel
from karb.sim.ratelimit import (
    BithumbLimiter,
    UpbitLimiter,
    bithumb_category,
    upbit_group,
)
from karb.sim.rules import dialect

KST_OFFSET_S = 9 * 3600
DelayAnswer = Literal["504", "hold"]
T = TypeVar("T")


@dataclass
class Faults:
    """What ``/_sim/faults`` has switched on for one venue."""

    rest_latency_ms: int = 0
    fail_next: int = 0
    lose_next: int = 0  # carry out the request, then answer 504 as a gateway would
    fail_status: int = 500
    ws_stalled: bool = False
    malformed_next: int = 0
    clock_skew_ms: int = 0
    # delay_execution: the next ``delay_next`` order POSTs reach the engine ``delay_ms`` late,
    # answered with a 504 at once or only once carried out ("hold").
    delay_next: int = 0
    delay_ms: int = 0
    delay_answer: DelayAnswer = "504"
    not_ready_next: int = 0  # Bithumb: the next n lookups/cancels answer 422 order_not_ready
    cancel_race_next: int = 0  # the next n cancels of an open order meet its complete fill

    def clear(self) -> None:
        self.__init__()  # type: ignore[misc]


@dataclass
class VenueState:
    name: str
    cfg: SimVenueConfig
    sim: SimConfig
    model: MarketModel
    exchange: Exchange
    faults: Faults = field(default_factory=Faults)
    nonces: NonceStore = field(default_factory=NonceStore)
    sockets: set[Any] = field(default_factory=set)  # live WebSocket sessions (karb.sim.wsfeed)
    # Per-protocol memory that is not per connection (pubwss: the previous step's depth).
    memo: dict[str, Any] = field(default_factory=dict)
    upbit_limiter: UpbitLimiter | None = None
    bithumb_limiter: BithumbLimiter | None = None
    # The coin-transfer network both venues share (karb.sim.transfers.TransferNetwork; typed
    # loosely here because it imports this module).
    transfers: Any = None

    # Work that outlives the request that started it (delayed order executions): owned here so a
    # client hanging up (aiohttp cancels its handler) cannot stop it; cancelled at server stop.
    background: set[asyncio.Task[Any]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.upbit_limiter = UpbitLimiter(self.sim.rate_limits)
        self.bithumb_limiter = BithumbLimiter(self.sim.rate_limits)

    def spawn(self, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        task = asyncio.get_running_loop().create_task(coro)
        self.background.add(task)
        task.add_done_callback(self._reap)
        return task

    def _reap(self, task: asyncio.Task[Any]) -> None:
        self.background.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: a venue error of a late order is its answer, not a crash

    async def stop_background(self) -> None:
        tasks = list(self.background)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def now_ns(self) -> int:
        return time.time_ns() + self.faults.clock_skew_ms * 1_000_000

    def now_ms(self) -> int:
        return self.now_ns() // 1_000_000

    def authenticate(self, request: web.Request, hash_source: str | None) -> Account:
        return verify_jwt(request.headers.get("Authorization"), hash_source,
                          self.exchange.accounts, self.nonces, self.name, self.now_ms())


def kst_iso(ts_ns: int) -> str:
    """``2026-11-21T18:40:02+09:00``: how both venues print ``created_at``."""
    t = time.gmtime(ts_ns // 1_000_000_000 + KST_OFFSET_S)
    return time.strftime("%Y-%m-%dT%H:%M:%S+09:00", t)


@overload
def num(value: float) -> str: ...
@overload
def num(value: None) -> None: ...
@overload
def num(value: float | None) -> str | None: ...


def num(value: float | None) -> str | None:
    """A venue decimal string: no exponent, no float noise."""
    if value is None:
        return None
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.8f}".rstrip("0").rstrip(".")


def error_json(status: int, name: str | int, message: str,
               headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": {"name": name, "message": message}}, status=status,
                             headers=headers, dumps=lambda o: json.dumps(o, ensure_ascii=False))


def ok_json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status,
                             dumps=lambda o: json.dumps(o, ensure_ascii=False))


def parse_float(params: dict[str, Any], key: str, venue: str) -> float | None:
    value = params.get(key)
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise VenueError(400, dialect(venue).param_error, f"{key} is not a number") from None
    if not math.isfinite(number):
        raise VenueError(400, dialect(venue).param_error, f"{key} is not a finite number")
    return number


async def json_body(request: web.Request, venue: str) -> dict[str, Any]:
    """The JSON object body, keys in the order received (they are hashed in that order)."""
    try:
        raw = await request.read()
    except ConnectionResetError:
        # The client hung up before its body arrived (it timed out): nothing reached the
        # venue, and there is nobody to answer. Not a server error worth a traceback.
        raise web.HTTPRequestTimeout(text="the client went away") from None
    if not raw:
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise VenueError(400, dialect(venue).param_error,
                         "the body is not JSON (form bodies are not supported)") from None
    if not isinstance(body, dict):
        raise VenueError(400, dialect(venue).param_error, "the body must be a JSON object")
    return body


async def request_params(request: web.Request, venue: str
                         ) -> tuple[MultiMapping[str], list[tuple[str, str]], str | None]:
    """A GET/DELETE's parameters (as a mapping and as ordered pairs) and the string its JWT
    ``query_hash`` covers.

    From the query string when there is one. Otherwise from the body, as pyupbit sends them
    (``GET /v1/order`` with a form body, ``DELETE /v1/order`` with a JSON body, no query) and
    as Upbit serves them: a JSON body hashes as ``k=v&…`` in body order (the POST rule), a
    form body as the bytes received (pyupbit hashes ``urlencode(...)`` with only ``[]``
    decoded, which is exactly what it sends).
    """
    if request.query_string or not request.can_read_body:
        pairs = list(request.query.items())
        return request.query, pairs, hash_source_from_query(request.query_string) or None
    raw = await request.read()
    if not raw:
        return request.query, [], None
    if request.content_type == "application/json":
        body = json.loads(raw) if raw.strip() else {}
        if not isinstance(body, dict):
            raise VenueError(400, dialect(venue).param_error, "the body must be a JSON object")
        pairs = []
        for key, value in body.items():
            values = value if isinstance(value, list) else [value]
            name = f"{key}[]" if isinstance(value, list) and not key.endswith("[]") else key
            pairs.extend((name, "" if v is None else str(v)) for v in values)
        return MultiDict(pairs), pairs, hash_source_from_body(body) or None
    text = raw.decode(errors="replace")
    pairs = parse_qsl(text, keep_blank_values=True)
    return MultiDict(pairs), pairs, text or None


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def venue_middleware(state: VenueState) -> Any:
    """Faults first (latency, forced failures), then rate limits, then the handler; venue
    errors become the venue's JSON error. ``/_sim/`` is never limited or faulted."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        if path.startswith("/_sim/"):
            return await handler(request)
        faults = state.faults
        if faults.rest_latency_ms and not _is_websocket(request):
            await asyncio.sleep(faults.rest_latency_ms / 1000)
        if faults.fail_next > 0 and not _is_websocket(request):
            faults.fail_next -= 1
            if faults.fail_status == 429:
                return _too_many(state.name)
            return error_json(faults.fail_status, "server_error", "simulated venue failure")
        decision = _rate_check(state, request)
        if decision is not None and not decision.allowed:
            if decision.status == 418:
                return web.Response(status=418, text="Your IP is blocked for abusing the API.",
                                    headers=decision.headers)
            resp = _too_many(state.name)
            resp.headers.update(decision.headers)
            return resp
        try:
            response = await handler(request)
        except VenueError as exc:
            response = error_json(exc.status, exc.name, exc.message)
        if faults.lose_next > 0 and not _is_websocket(request):
            faults.lose_next -= 1
            return error_json(504, "gateway_timeout", "simulated lost response (request was carried out)")
        if decision is not None and not response.prepared:
            response.headers.update(decision.headers)
        return response

    return middleware


def _too_many(venue: str) -> web.Response:
    if dialect(venue).plain_text_429:
        return web.Response(status=429, text="Too many API requests.")
    return error_json(429, "too_many_requests", "Too many requests.")


def _is_websocket(request: web.Request) -> bool:
    return request.headers.get("Upgrade", "").lower() == "websocket"


def _rate_check(state: VenueState, request: web.Request) -> Any:
    now = time.monotonic()
    ip = request.remote or "?"
    if state.name == "upbit":
        group = "websocket-connect" if _is_websocket(request) else upbit_group(request.method, request.path)
        scope = ip
        if group not in ("market", "candle", "trade", "ticker", "orderbook", "websocket-connect"):
            scope = _access_key(request) or ip
        assert state.upbit_limiter is not None
        return state.upbit_limiter.check(group, scope, now)
    category, capacity = bithumb_category(request.method, request.path)
    assert state.bithumb_limiter is not None
    return state.bithumb_limiter.check(category, capacity, ip, now)


def _access_key(request: web.Request) -> str | None:
    """The access key a request claims (unverified): Upbit limits most groups per account."""
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer "):
        return None
    try:
        return str(jwt.decode(header[7:], options={"verify_signature": False}).get("access_key"))
    except jwt.PyJWTError:
        return None
