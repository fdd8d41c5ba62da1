"""Traded volume over time, one market: the volume profile behind vwap and the "recent volume"
the execution optimizer weighs an order's size against.

Prints from the public trade streams (``trade.<venue>.<market>``, both venues summed, in coin)
are added to the bucket of ``bucket_s`` seconds they arrived in, on the monitor's monotonic
clock (receipt time: the venues' trade clocks are not ours, and Bithumb has printed KST wall
time as epoch before). The profile is the last ``buckets`` *finished* buckets, oldest first — a
bucket still filling would weigh its slice low — and a silent bucket counts as 0. The recent
volume is their sum: the volume of the last ``buckets × bucket_s`` seconds, as of the last
finished bucket. SNAPSHOT prints (the last trade before we subscribed) are not counted.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from karb.messages import TradeTick


class VolumeProfile:
    def __init__(self, bucket_s: float, buckets: int, start_s: float) -> None:
        if bucket_s <= 0 or buckets < 1:
            raise ValueError("profile_bucket_s must be > 0 and profile_buckets >= 1")
        self.bucket_s = bucket_s
        self.volumes: deque[float] = deque(maxlen=buckets)
        self.counts: deque[int] = deque(maxlen=buckets)
        self.index = int(start_s // bucket_s)  # the bucket now filling
        self.current = 0.0
        self.current_n = 0

    def add(self, volume: float, now_s: float) -> None:
        self.roll(now_s)
        self.current += volume
        self.current_n += 1

    def roll(self, now_s: float) -> None:
        """Close the filling bucket (and any silent ones since) once ``now_s`` is past it."""
        index = int(now_s // self.bucket_s)
        if index <= self.index:
            return
        self.volumes.append(self.current)
        self.counts.append(self.current_n)
        for _ in range(min(index - self.index - 1, self.volumes.maxlen or 0)):
            self.volumes.append(0.0)
            self.counts.append(0)
        self.index, self.current, self.current_n = index, 0.0, 0

    def profile(self, now_s: float) -> tuple[float, ...]:
        self.roll(now_s)
        return tuple(round(v, 8) for v in self.volumes)


@dataclass(frozen=True)
class VolumeFigures:
    """What the verdict carries: the profile (oldest first), its sum, the prints counted."""

    profile: tuple[float, ...]
    recent_volume: float
    trades: int


class TradeVolumes:
    """One :class:`VolumeProfile` per market, fed with the bus's TradeTicks of every venue."""

    def __init__(self, markets: list[str], bucket_s: float, buckets: int, start_s: float) -> None:
        self.profiles = {m: VolumeProfile(bucket_s, buckets, start_s) for m in markets}
        self.counted = 0

    def on_trade(self, t: TradeTick, now_s: float) -> bool:
        """Count one print; False for a market we do not watch or a SNAPSHOT print."""
        profile = self.profiles.get(t.market)
        if profile is None or t.snapshot:
            return False
        profile.add(t.volume, now_s)
        self.counted += 1
        return True

    def bucket(self, market: str, now_s: float) -> int:
        """The index of the bucket filling now (changes when one closes)."""
        profile = self.profiles[market]
        profile.roll(now_s)
        return profile.index

    def figures(self, market: str, now_s: float) -> VolumeFigures:
        profile = self.profiles[market]
        shape = profile.profile(now_s)  # rolls: the counts below are of the same buckets
        return VolumeFigures(shape, round(sum(shape), 8), sum(profile.counts))
