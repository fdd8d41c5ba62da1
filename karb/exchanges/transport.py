"""REST transport shared by the venue clients: one ``aiohttp.ClientSession`` per venue (keep-alive
pool, explicit timeouts), the rate limiter in front, msgspec decoding, and venue errors mapped to
our typed errors. Only idempotent requests are retried here, within an overall deadline; an order
POST is never retried by anyone below the leg runner (karb.execution.legs), which alone decides
what an unanswered POST means."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import urlencode

import aiohttp
import msgspec

from karb.exchanges.errors import RateLimited, VenueError, VenueUnavailable, classify
from karb.exchanges.ratelimit import RateLimiter
from karb.retry import Backoff, retry

log = logging.getLogger(__name__)
T = TypeVar("T")
Params = Sequence[tuple[str, Any]]
# (query or body as hashed, or None) → headers; built per request (nonce, timestamp).
Signer = Callable[[str | None], dict[str, str]]

# Idempotent reads are retried for at most this long (2–3 tries at the default timeout).
SAFE_RETRY_DEADLINE_S = 1.5


class _ErrorBody(msgspec.Struct):
    name: str | int = ""
    message: str = ""


class _ErrorEnvelope(msgspec.Struct):
    error: _ErrorBody


_ERROR = msgspec.json.Decoder(_ErrorEnvelope)
_JSON = msgspec.json.Encoder()


async def _headers_sent(session: aiohttp.ClientSession, ctx: Any, params: Any) -> None:
    """Record when a traced request's headers were written (tick-to-trade ends here)."""
    if isinstance(ctx.trace_request_ctx, dict):
        ctx.trace_request_ctx.setdefault("sent_mono", time.monotonic_ns())


class RestTransport:
    def __init__(self, venue: str, base_url: str, limiter: RateLimiter, timeout_ms: int) -> None:
        self.venue = venue
        self.base_url = base_url.rstrip("/")
        self.limiter = limiter
        self._timeout = aiohttp.ClientTimeout(total=timeout_ms / 1000,
                                              sock_connect=min(timeout_ms, 3000) / 1000)
        self._session: aiohttp.ClientSession | None = None
        self.requests = 0

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=32, keepalive_timeout=30, ttl_dns_cache=300)
            tracing = aiohttp.TraceConfig()
            tracing.on_request_headers_sent.append(_headers_sent)
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout,
                                                  trace_configs=[tracing])
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(self, method: str, path: str, group: str, decode: type[T],
                      params: Params | None = None, body: dict[str, Any] | None = None,
                      sign: Signer | None = None, hash_source: str | None = None,
                      safe: bool | None = None, trace: dict[str, int] | None = None,
                      timeout_ms: int | None = None) -> T:
        """Send one request and decode the answer into ``decode``; typed errors on failure.
        ``safe`` (default: GET) requests are retried on 5xx, timeouts and 429 for at most
        ``SAFE_RETRY_DEADLINE_S``; others are sent once. ``timeout_ms`` overrides the client's
        total timeout for this request (order POSTs have their own, short one)."""
        safe = method == "GET" if safe is None else safe

        async def once() -> T:
            return await self._once(method, path, group, decode, params, body, sign,
                                    hash_source, trace, timeout_ms)

        if not safe:
            return await once()

        def pause(exc: BaseException) -> float:
            log.warning("%s %s %s failed (%s); retrying", self.venue, method, path,
                        getattr(exc, "name", exc))
            return exc.retry_after_s if isinstance(exc, RateLimited) else 0.0

        return await retry(once, (VenueUnavailable, RateLimited),
                           Backoff(0.1, 0.8, SAFE_RETRY_DEADLINE_S), pause)

    async def _once(self, method: str, path: str, group: str, decode: type[T],
                    params: Params | None, body: dict[str, Any] | None, sign: Signer | None,
                    hash_source: str | None, trace: dict[str, int] | None = None,
                    timeout_ms: int | None = None) -> T:
        url = self.base_url + path
        if params:
            url += "?" + urlencode(list(params), doseq=True)
        headers = sign(hash_source) if sign is not None else {}
        data = None
        if body is not None:
            headers["Content-Type"] = "application/json; charset=utf-8"
            data = _JSON.encode(body)
        await self.limiter.acquire(group)
        self.requests += 1
        try:
            # (timeout=None would mean "no timeout" to aiohttp: pass it only when overridden)
            extra: dict[str, Any] = {} if timeout_ms is None else {"timeout": aiohttp.ClientTimeout(
                total=timeout_ms / 1000, sock_connect=min(timeout_ms, 3000) / 1000)}
            async with self.session.request(method, url, data=data, headers=headers,
                                            trace_request_ctx=trace, **extra) as resp:
                raw = await resp.read()
                status = resp.status
                self.limiter.observe(group, resp.headers)
                retry_after = resp.headers.get("Retry-After")
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise VenueUnavailable(self.venue, type(exc).__name__, str(exc) or "no answer") from None
        if status in (418, 429):
            pause = self.limiter.on_429(group, float(retry_after) if retry_after else None)
            name = "too_many_requests" if status == 429 else "blocked"
            raise RateLimited(self.venue, name, raw[:200].decode(errors="replace"), status, pause)
        if status >= 400 or raw.startswith(b'{"error"'):  # Bithumb: errors with HTTP 200 too
            raise self._error(status, raw)
        try:
            return msgspec.json.decode(raw, type=decode)
        except msgspec.DecodeError as exc:
            raise VenueUnavailable(self.venue, "malformed_response",
                                   f"{method} {path}: {exc}", status) from None

    def _error(self, status: int, raw: bytes) -> VenueError:
        try:
            err = _ERROR.decode(raw).error
            return classify(self.venue, status, str(err.name), err.message)
        except msgspec.DecodeError:
            text = raw[:200].decode(errors="replace")
            if status >= 500 or status == 0:
                return VenueUnavailable(self.venue, f"http_{status}", text, status)
            return classify(self.venue, status, f"http_{status}", text)
