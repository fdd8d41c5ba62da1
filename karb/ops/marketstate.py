"""Market state: a pure classifier over a window of top-of-book samples, one per market.

The monitor samples every market's mid, spread and top-of-book depth at a fixed interval
(``sample_ms``, default 1 s) from both venues and keeps the last ``window_s`` of samples. The
rules, checked in this order (the first that holds wins):

1. **illiquid** — the median spread of the worst venue is at least ``illiquid_spread_bps``, or
   the median top-of-book depth of the thinnest venue (the smaller of bid size × bid and
   ask size × ask, in KRW) is below ``illiquid_depth_krw``. Checked first: on a thin book every
   price figure below is noise.
2. **volatile** — the standard deviation of sample-to-sample mid returns is at least
   ``volatile_bps``.
3. **trending** — the mid moved at least ``trend_bps`` over the window *and* the move was
   efficient: ``|net move| / sum(|each move|)`` is at least ``trend_efficiency`` (a straight
   line is 1, a random walk about ``1/sqrt(n)``).
4. **ranging** — the mid went back and forth inside a band: efficiency at most
   ``ranging_efficiency`` and the high-low range at most ``ranging_max_bps``, over at least
   ``min_samples`` samples.
5. **normal** — anything else, including too few samples to say (``samples`` tells which).

The mid of a market is the mean of the venues' mids (both venues quote the same coin in KRW).
The rules use the books only. The public trade streams add the volume figures published with
the verdict (``volume_profile``: traded volume per ``profile_bucket_s`` bucket, both venues,
the last ``profile_buckets`` finished buckets; ``recent_volume``: their sum; ``trades``: the
prints counted), kept by the monitor (:mod:`karb.ops.volume`); they do not change the state.
The rebalancer (issue 12) reads the verdict from ``mstate.<market>`` to pick an algorithm.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections import deque
from dataclasses import dataclass
from enum import StrEnum

import msgspec


class MarketState(StrEnum):
    NORMAL = "normal"
    VOLATILE = "volatile"
    TRENDING = "trending"
    ILLIQUID = "illiquid"
    RANGING = "ranging"


class MarketStateRules(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Thresholds of the rules in the module docstring (the monitor actor's ``params``)."""

    window_s: float = 60.0
    sample_ms: int = 1000
    min_samples: int = 10
    illiquid_spread_bps: float = 30.0
    illiquid_depth_krw: float = 100_000.0
    volatile_bps: float = 8.0
    trend_bps: float = 25.0
    trend_efficiency: float = 0.5
    ranging_efficiency: float = 0.15
    ranging_max_bps: float = 30.0


@dataclass(frozen=True)
class Sample:
    """One market at one instant: the mid over venues, the worst spread, the thinnest depth."""

    mid: float
    spread_bps: float
    depth_krw: float


@dataclass(frozen=True)
class Verdict:
    state: MarketState
    volatility_bps: float
    trend_bps: float
    efficiency: float
    range_bps: float
    spread_bps: float
    depth_krw: float
    samples: int


def sample(tops: list[tuple[float, float, float, float]]) -> Sample | None:
    """Combine the venues' tops ``(bid_px, bid_size, ask_px, ask_size)`` into one sample;
    None when no venue has a usable two-sided book."""
    usable = [t for t in tops if t[0] > 0 and t[2] > 0 and t[2] >= t[0]]
    if not usable:
        return None
    mids = [(b + a) / 2 for b, _, a, _ in usable]
    spreads = [(a - b) / ((a + b) / 2) * 1e4 for b, _, a, _ in usable]
    depths = [min(b * bs, a * asz) for b, bs, a, asz in usable]
    return Sample(sum(mids) / len(mids), max(spreads), min(depths))


def classify(samples: list[Sample], rules: MarketStateRules) -> Verdict:
    """The state of one market over ``samples`` (oldest first), by the rules above."""
    n = len(samples)
    if n == 0:
        return Verdict(MarketState.NORMAL, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0)
    spread = statistics.median(s.spread_bps for s in samples)
    depth = statistics.median(s.depth_krw for s in samples)
    mids = [s.mid for s in samples]
    moves = [(b - a) / a * 1e4 for a, b in itertools.pairwise(mids) if a > 0]
    vol = statistics.pstdev(moves) if len(moves) >= 2 else 0.0
    trend = (mids[-1] - mids[0]) / mids[0] * 1e4 if mids[0] > 0 else 0.0
    path = sum(abs(m) for m in moves)
    efficiency = abs(trend) / path if path > 0 else 0.0
    lo = min(mids)
    rng = (max(mids) - lo) / lo * 1e4 if lo > 0 else 0.0
    state = MarketState.NORMAL
    if n >= rules.min_samples:
        if spread >= rules.illiquid_spread_bps or depth < rules.illiquid_depth_krw:
            state = MarketState.ILLIQUID
        elif vol >= rules.volatile_bps:
            state = MarketState.VOLATILE
        elif abs(trend) >= rules.trend_bps and efficiency >= rules.trend_efficiency:
            state = MarketState.TRENDING
        elif efficiency <= rules.ranging_efficiency and rng <= rules.ranging_max_bps:
            state = MarketState.RANGING
    return Verdict(state, _r(vol), _r(trend), round(efficiency, 4), _r(rng), _r(spread),
                   round(depth, 0), n)


class Window:
    """The last ``window_s`` of samples of one market (a bounded deque)."""

    def __init__(self, rules: MarketStateRules) -> None:
        self.rules = rules
        size = max(2, math.ceil(rules.window_s * 1000 / rules.sample_ms))
        self.samples: deque[Sample] = deque(maxlen=size)

    def add(self, s: Sample) -> Verdict:
        self.samples.append(s)
        return classify(list(self.samples), self.rules)


def _r(x: float) -> float:
    return round(x, 3)
