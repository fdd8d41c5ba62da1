"""Server-side rate limits as the venues apply them.

Upbit: a per-second window per group (IP-scoped for quotation groups, account-scoped for the
rest); every reply says ``Remaining-Req: group=<g>; min=<m>; sec=<s>``; past the limit 429 with a
plain-text body; a client that keeps going gets 418 and a block that doubles on each repeat.
Bithumb: a token bucket per IP and category (150/s public, 140/s private) reported in
``x-ratelimit-*`` headers; 429 when empty.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from karb.config import RateLimitConfig

# group → (requests, per seconds). Upbit's "order" group (POST orders, cancel_and_new) is 12/s
# since 2026-08-21 (changelog; exchanges.md §1.6 and §7); order-test stays 8/s.
UPBIT_LIMITS: dict[str, tuple[int, float]] = {
    "market": (10, 1.0), "candle": (10, 1.0), "trade": (10, 1.0), "ticker": (10, 1.0),
    "orderbook": (10, 1.0), "default": (30, 1.0), "order": (12, 1.0), "order-test": (8, 1.0),
    "order-cancel-all": (1, 2.0), "websocket-connect": (5, 1.0),
}
BITHUMB_PUBLIC_PER_S = 150
BITHUMB_PRIVATE_PER_S = 140


def upbit_group(method: str, path: str) -> str:
    if path.startswith("/v1/market/"):
        return "market"
    if path.startswith("/v1/candles"):
        return "candle"
    if path.startswith("/v1/trades"):
        return "trade"
    if path.startswith("/v1/ticker"):
        return "ticker"
    if path.startswith("/v1/orderbook"):
        return "orderbook"
    if method == "POST" and path in ("/v1/orders", "/v1/orders/cancel_and_new"):
        return "order"
    if method == "POST" and path == "/v1/orders/test":
        return "order-test"
    if method == "DELETE" and path == "/v1/orders/open":
        return "order-cancel-all"
    return "default"


def bithumb_category(method: str, path: str) -> tuple[str, int]:
    if path.startswith("/public/") or any(path.startswith(f"/v1/{p}") for p in
                                          ("market", "ticker", "orderbook", "trades", "candles")):
        return path.split("/")[2] if path.startswith("/v1/") else "public", BITHUMB_PUBLIC_PER_S
    if method == "POST" and ("orders" in path or path.startswith(("/trade/place", "/trade/market"))):
        return "order", BITHUMB_PRIVATE_PER_S
    if method == "DELETE" or path.startswith("/trade/cancel") or path.endswith("/cancel"):
        return "cancel", BITHUMB_PRIVATE_PER_S
    return "private-other", BITHUMB_PRIVATE_PER_S


@dataclass
class RateDecision:
    allowed: bool
    status: int = 200  # 429 or 418 when refused
    headers: dict[str, str] = field(default_factory=dict)
    retry_after_s: float = 0.0


class UpbitLimiter:
    def __init__(self, cfg: RateLimitConfig) -> None:
        self.cfg = cfg
        self._hits: dict[tuple[str, str], deque[float]] = {}
        self._minute: dict[tuple[str, str], deque[float]] = {}
        self._refusals: dict[str, deque[float]] = {}
        self._blocked_until: dict[str, float] = {}
        self._block_s: dict[str, float] = {}

    def check(self, group: str, scope: str, now: float) -> RateDecision:
        limit, per_s = UPBIT_LIMITS[group]
        if not self.cfg.enabled:
            return RateDecision(True, headers={"Remaining-Req": f"group={group}; min={limit * 60}; sec={limit - 1}"})
        until = self._blocked_until.get(scope, 0.0)
        if now < until:
            return RateDecision(False, 418, {"Retry-After": f"{until - now:.0f}"}, until - now)
        hits = self._hits.setdefault((group, scope), deque())
        minute = self._minute.setdefault((group, scope), deque())
        while hits and now - hits[0] >= per_s:
            hits.popleft()
        while minute and now - minute[0] >= 60:
            minute.popleft()
        if len(hits) >= limit:
            return self._refuse(scope, now, group, limit, per_s - (now - hits[0]))
        hits.append(now)
        minute.append(now)
        left = limit - len(hits)
        return RateDecision(True, headers={
            "Remaining-Req": f"group={group}; min={max(0, limit * 60 - len(minute))}; sec={left}"})

    def _refuse(self, scope: str, now: float, group: str, limit: int, wait_s: float) -> RateDecision:
        refusals = self._refusals.setdefault(scope, deque())
        refusals.append(now)
        while refusals and now - refusals[0] >= 1.0:
            refusals.popleft()
        if len(refusals) >= self.cfg.upbit_418_after:
            block = self._block_s.get(scope, self.cfg.upbit_418_block_s / 2) * 2
            self._block_s[scope] = block
            self._blocked_until[scope] = now + block
            refusals.clear()
            return RateDecision(False, 418, {"Retry-After": f"{block:.0f}"}, block)
        return RateDecision(False, 429, {"Remaining-Req": f"group={group}; min=0; sec=0"},
                            max(wait_s, 0.0))


class BithumbLimiter:
    """Token buckets: capacity = the per-second limit, refilled continuously."""

    def __init__(self, cfg: RateLimitConfig) -> None:
        self.cfg = cfg
        self._buckets: dict[tuple[str, str], tuple[float, float]] = {}  # tokens, last refill

    def check(self, category: str, capacity: int, scope: str, now: float) -> RateDecision:
        tokens, last = self._buckets.get((category, scope), (float(capacity), now))
        tokens = min(float(capacity), tokens + (now - last) * capacity)
        allowed = tokens >= 1 or not self.cfg.enabled
        if allowed and self.cfg.enabled:
            tokens -= 1
        self._buckets[(category, scope)] = (tokens, now)
        headers = {"x-ratelimit-remaining": str(int(tokens)),
                   "x-ratelimit-burst-capacity": str(capacity),
                   "x-ratelimit-replenish-rate": str(capacity),
                   "x-ratelimit-requested-tokens": "1"}
        if allowed:
            return RateDecision(True, headers=headers)
        return RateDecision(False, 429, headers, (1 - tokens) / capacity)
