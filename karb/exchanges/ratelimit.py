"""Client-side rate limiting: one token bucket per venue group, corrected by what the venue says.

A bucket with rate r and capacity c lets through at most c + r·T requests in any window of T
seconds; against a venue that counts a sliding one-second window with limit L we keep
c + r ≤ L, so bursts never reach a 429. Upbit's ``Remaining-Req: …; sec=N`` and Bithumb's
``x-ratelimit-remaining`` lower our count when the venue has seen more than we have (other
processes on the same key or IP). A 429 pauses that group with exponential back-off; a
success resets it, so the limiter never pushes on into Upbit's 418 block.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

# group → venue limit per second. Upbit (exchanges.md §1.6; "order" 12/s since 2026-08-21,
# order-test stays 8/s), Bithumb (§2.6, per category).
UPBIT_GROUPS = {"market": 10, "candle": 10, "trade": 10, "ticker": 10, "orderbook": 10,
                "default": 30, "order": 12, "order-test": 8}
BITHUMB_GROUPS = {"public": 150, "private": 140, "order": 140, "cancel": 140}

_REMAINING_REQ = re.compile(r"group=([\w-]+);.*sec=(\d+)")
MAX_PAUSE_S = 10.0


@dataclass
class Bucket:
    rate: float
    capacity: float
    tokens: float
    updated: float
    paused_until: float = 0.0
    pause_s: float = 0.0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def refill(self, now: float) -> None:
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now


class RateLimiter:
    def __init__(self, limits: Mapping[str, int], burst: float = 0.5) -> None:
        """``burst``: the share of each limit usable at once (capacity), the rest refills over
        the second. Arbitrage needs its orders together, so half of the limit is a burst."""
        now = time.monotonic()
        self.buckets: dict[str, Bucket] = {}
        for group, limit in limits.items():
            capacity = max(1.0, limit * burst)
            self.buckets[group] = Bucket(rate=limit - capacity, capacity=capacity,
                                         tokens=capacity, updated=now)
        self.waits = 0
        self.throttled_429 = 0

    async def acquire(self, group: str) -> None:
        """Wait until a request in ``group`` may go out."""
        bucket = self.buckets[group]
        async with bucket.lock:  # FIFO: concurrent callers go out in order
            while True:
                now = time.monotonic()
                if now < bucket.paused_until:
                    await asyncio.sleep(bucket.paused_until - now)
                    continue
                bucket.refill(now)
                if bucket.tokens >= 1:
                    bucket.tokens -= 1
                    return
                self.waits += 1
                await asyncio.sleep((1 - bucket.tokens) / bucket.rate)

    def observe(self, group: str, headers: Mapping[str, str]) -> None:
        """Correct the bucket from the venue's own count of what is left."""
        bucket = self.buckets[group]
        remaining: float | None = None
        upbit = headers.get("Remaining-Req")
        if upbit:
            match = _REMAINING_REQ.search(upbit)
            if match and match.group(1) in self.buckets:
                bucket = self.buckets[match.group(1)]
                remaining = float(match.group(2))
        elif "x-ratelimit-remaining" in headers:
            try:
                remaining = float(headers["x-ratelimit-remaining"])
            except ValueError:
                remaining = None
        if remaining is not None and remaining < bucket.tokens:
            bucket.tokens = remaining
        bucket.pause_s = 0.0

    def on_429(self, group: str, retry_after_s: float | None = None) -> float:
        """Pause ``group``: doubling from 0.5 s up to 10 s, or what the venue asked for."""
        bucket = self.buckets[group]
        self.throttled_429 += 1
        bucket.pause_s = min(MAX_PAUSE_S, max(0.5, bucket.pause_s * 2))
        pause = max(bucket.pause_s, retry_after_s or 0.0)
        bucket.paused_until = time.monotonic() + pause
        bucket.tokens = 0.0
        return pause
