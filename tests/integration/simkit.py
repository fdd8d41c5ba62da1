"""Test helpers for the simulator: a server on free loopback ports, and signed requests built
from the venues' documented recipes (independently of karb's own clients)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any
from urllib.parse import unquote, urlencode

import aiohttp
import jwt

from karb.config import ActorSpec, Config, RateLimitConfig, SimConfig
from karb.sim.server import Endpoint, SimServer

ACCESS, SECRET = "sim-access", "sim-secret"
MARKETS = ["KRW-BTC", "KRW-ETH", "KRW-XRP"]


def sim_config(markets: list[str] | None = None, **overrides: Any) -> Config:
    sim = {"step_ms": 50, "dislocation": {"rate_per_min": 0.0}, **overrides}
    import msgspec
    return Config(actors=[ActorSpec(name="sim", kind="sim")], markets=markets or MARKETS,
                  sim=msgspec.convert(sim, SimConfig))


@asynccontextmanager
async def running_sim(markets: list[str] | None = None,
                      **overrides: Any) -> AsyncIterator[tuple[SimServer, dict[str, Endpoint]]]:
    import asyncio
    server = SimServer(sim_config(markets, **overrides))
    endpoints = await server.start()
    market = asyncio.create_task(server.run_market())
    try:
        yield server, endpoints
    finally:
        market.cancel()
        await server.stop()


def query_string(params: dict[str, Any] | list[tuple[str, Any]]) -> str:
    """Upbit's documented hash input: ``unquote(urlencode(params, doseq=True))``."""
    return unquote(urlencode(params, doseq=True))


def token(query: str | None = None, venue: str = "upbit", access: str = ACCESS,
          secret: str = SECRET, alg: str = "HS256", nonce: str | None = None,
          timestamp: int | None = None) -> str:
    claims: dict[str, Any] = {"access_key": access, "nonce": nonce or str(uuid.uuid4())}
    if venue == "bithumb":
        claims["timestamp"] = timestamp if timestamp is not None else int(time.time() * 1000)
    if query:
        claims["query_hash"] = hashlib.sha512(query.encode()).hexdigest()
        claims["query_hash_alg"] = "SHA512"
    return "Bearer " + jwt.encode(claims, secret, algorithm=alg)


def body_query(body: dict[str, Any]) -> str:
    return "&".join(f"{k}={v}" for k, v in body.items())


async def private_get(session: aiohttp.ClientSession, base: str, path: str,
                      params: list[tuple[str, Any]] | None = None, venue: str = "upbit",
                      method: str = "GET", **token_kw: Any) -> aiohttp.ClientResponse:
    q = query_string(params or [])
    url = f"{base}{path}" + (f"?{urlencode(params or [], doseq=True)}" if params else "")
    return await session.request(method, url, headers={
        "Authorization": token(q or None, venue, **token_kw)})


async def private_post(session: aiohttp.ClientSession, base: str, path: str, body: dict[str, Any],
                       venue: str = "upbit", timeout: aiohttp.ClientTimeout | None = None,
                       **token_kw: Any) -> aiohttp.ClientResponse:
    return await session.post(f"{base}{path}", json=body, timeout=timeout or session.timeout,
                              headers={"Authorization": token(body_query(body), venue, **token_kw)})


def legacy_headers(endpoint: str, body: str, access: str = ACCESS, secret: str = SECRET,
                   nonce: str | None = None) -> dict[str, str]:
    nonce = nonce or str(int(time.time() * 1000))
    message = f"{endpoint}\0{body}\0{nonce}".encode()
    sign = base64.b64encode(hmac.new(secret.encode(), message, hashlib.sha512).hexdigest().encode())
    return {"Api-Key": access, "Api-Sign": sign.decode(), "Api-Nonce": nonce,
            "Content-Type": "application/x-www-form-urlencoded"}


def no_limits() -> RateLimitConfig:
    return RateLimitConfig(enabled=False)


@contextmanager
def sim_in_thread(**overrides: Any) -> Iterator[tuple[SimServer, dict[str, Endpoint]]]:
    """The simulator on its own event loop in a thread, for synchronous third-party clients
    (and for ones that fork a process while the test waits). Stopped even on failure."""
    import asyncio
    import threading

    holder: dict[str, Any] = {}
    ready, stop = threading.Event(), threading.Event()

    def serve() -> None:
        async def main() -> None:
            try:
                async with running_sim(**overrides) as (server, endpoints):
                    holder["sim"] = (server, endpoints)
                    ready.set()
                    while not stop.is_set():
                        await asyncio.sleep(0.02)
            except Exception as exc:
                holder["error"] = exc
                ready.set()
        asyncio.run(main())

    thread = threading.Thread(target=serve, name="sim", daemon=True)
    thread.start()
    try:
        if not ready.wait(15) or "error" in holder:
            raise RuntimeError(f"the simulator did not start: {holder.get('error')!r}")
        yield holder["sim"]
    finally:
        stop.set()
        thread.join(15)
