"""The six schedules (pure; see :mod:`.base` for the interface).

- ``market``: everything at once, priced at the limit (crosses as deep as allowed); repeats
  while children fill, stops at the first that fills nothing.
- ``limit``: everything at ``limit_price`` every ``slice_s`` until filled or the horizon ends.
- ``twap``: ``n`` even slices over the horizon; slice k is due at ``k * horizon / n`` and sized
  to bring the fill to ``(k + 1) / n`` of the order (a missed slice is caught up by the next).
- ``vwap``: as twap, but the cumulative target follows the volume profile of the trade stream
  (``MarketView.volume_profile``, one weight per slice; even when the profile is missing).
- ``iceberg``: ``display_volume`` at a time at the limit, refilled as soon as one is done.
- ``adaptive``: twap's schedule, but aggressiveness follows progress and market state: behind
  schedule or a volatile/trending market → cross deeper (up to 3 × ``cross_bps``); ahead, or
  ranging → at the touch; illiquid → half-size slices.
"""

from __future__ import annotations

from dataclasses import dataclass

from karb.execution.algos.base import Algo, AlgoName, AlgoOrder, Child, Decision, MarketView, Progress

DUST = 1e-9


def _remaining(order: AlgoOrder, p: Progress) -> float:
    return max(0.0, order.volume - p.filled)


def _price(order: AlgoOrder, view: MarketView | None, cross_bps: float) -> float:
    """Touch price moved ``cross_bps`` towards aggression, never past the limit."""
    if view is None:
        return order.limit_price
    if order.side == "buy":
        return min(order.limit_price, view.ask * (1 + cross_bps / 1e4))
    return max(order.limit_price, view.bid * (1 - cross_bps / 1e4))


def slice_count(order: AlgoOrder) -> int:
    """How many slices twap, vwap and adaptive cut the order into."""
    return order.slices or max(1, round(order.horizon_s / order.slice_s))


def _over(order: AlgoOrder, p: Progress, now_s: float) -> bool:
    return now_s - p.started_s >= order.horizon_s


@dataclass
class Market:
    name: AlgoName = "market"

    def next(self, order: AlgoOrder, p: Progress, now_s: float, view: MarketView | None) -> Decision:
        left = _remaining(order, p)
        if left <= DUST or p.empty_children > 0:
            return None
        return Child(left, order.limit_price)


@dataclass
class Limit:
    name: AlgoName = "limit"

    def next(self, order: AlgoOrder, p: Progress, now_s: float, view: MarketView | None) -> Decision:
        left = _remaining(order, p)
        if left <= DUST or _over(order, p, now_s):
            return None
        if p.children and p.empty_children:
            due = p.started_s + p.children * order.slice_s
            if now_s < due:
                return due - now_s
        return Child(left, order.limit_price)


def _sliced(order: AlgoOrder, p: Progress, now_s: float, weights: list[float],
            cross_bps: float, view: MarketView | None, size: float = 1.0) -> Decision:
    """Shared by twap, vwap and adaptive: slice k at k * horizon / n, sized to the target."""
    left = _remaining(order, p)
    n = len(weights)
    if left <= DUST:
        return None
    elapsed = now_s - p.started_s
    step = order.horizon_s / n
    k = min(n - 1, int(elapsed / step + 1e-9))
    if p.children > k:  # slice k already sent: wait for the next one (or stop at the end)
        if k == n - 1:
            return None
        return (k + 1) * step - elapsed
    total = sum(weights) or 1.0
    target = order.volume * sum(weights[:k + 1]) / total
    volume = min(left, max(0.0, target - p.filled) * size)
    if volume <= DUST:
        return (k + 1) * step - elapsed if k < n - 1 else None
    return Child(volume, _price(order, view, cross_bps))


@dataclass
class Twap:
    name: AlgoName = "twap"

    def next(self, order: AlgoOrder, p: Progress, now_s: float, view: MarketView | None) -> Decision:
        return _sliced(order, p, now_s, [1.0] * slice_count(order), order.cross_bps, view)


def profile_usable(profile: tuple[float, ...], n: int) -> bool:
    """Does the observed profile cover ``n`` slices, with some volume in them?"""
    return len(profile) >= n and sum(profile[-n:]) > 0


def profile_weights(profile: tuple[float, ...], n: int) -> list[float]:
    """The last ``n`` buckets of the observed profile (the market-state monitor's
    ``volume_profile``, oldest first) as slice weights; even weights if too short or empty."""
    if not profile_usable(profile, n):
        return [1.0] * n
    return [max(0.0, w) for w in profile[-n:]]


@dataclass
class Vwap:
    name: AlgoName = "vwap"

    def next(self, order: AlgoOrder, p: Progress, now_s: float, view: MarketView | None) -> Decision:
        n = slice_count(order)
        weights = profile_weights(view.volume_profile if view else (), n)
        return _sliced(order, p, now_s, weights, order.cross_bps, view)


@dataclass
class Iceberg:
    name: AlgoName = "iceberg"

    def next(self, order: AlgoOrder, p: Progress, now_s: float, view: MarketView | None) -> Decision:
        left = _remaining(order, p)
        if left <= DUST or _over(order, p, now_s):
            return None
        if p.empty_children:  # the last refill found nothing at the limit: wait a slice
            return order.slice_s if p.empty_children < 3 else None
        display = order.display_volume or order.volume / 10
        return Child(min(display, left), order.limit_price)


AGGRESSIVE_STATES = frozenset({"volatile", "trending"})


@dataclass
class Adaptive:
    name: AlgoName = "adaptive"

    def aggression(self, order: AlgoOrder, p: Progress, now_s: float, state: str) -> float:
        """cross bps: 0 (touch) to 3 × cross_bps, by how far behind schedule and the state."""
        elapsed = max(0.0, now_s - p.started_s)
        due = min(1.0, elapsed / order.horizon_s) if order.horizon_s > 0 else 1.0
        done = p.filled / order.volume if order.volume > 0 else 1.0
        behind = max(0.0, due - done)  # 0..1
        level = order.urgency + 2 * behind + (1.0 if state in AGGRESSIVE_STATES else 0.0)
        if state == "ranging" and behind < 0.1:
            level = 0.0
        return order.cross_bps * min(3.0, level)

    def next(self, order: AlgoOrder, p: Progress, now_s: float, view: MarketView | None) -> Decision:
        state = view.state if view else "normal"
        cross = self.aggression(order, p, now_s, state)
        size = 0.5 if state == "illiquid" else 1.0
        return _sliced(order, p, now_s, [1.0] * slice_count(order), cross, view, size)


ALGOS: dict[str, type] = {"market": Market, "limit": Limit, "twap": Twap, "vwap": Vwap,
                          "iceberg": Iceberg, "adaptive": Adaptive}


def make_algo(name: str) -> Algo:
    try:
        algo: Algo = ALGOS[name]()
    except KeyError:
        raise ValueError(f"unknown execution algorithm {name!r} (one of {', '.join(ALGOS)})") from None
    return algo
