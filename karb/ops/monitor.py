"""``monitor``: the market-state and execution-quality monitors, as one actor.

- Market state: every ``sample_ms`` it reads each market's top of book on every venue from shared
  memory, adds a sample to that market's window and publishes the verdict on
  ``mstate.<market>`` (rules: :mod:`karb.ops.marketstate`), on a change at once and otherwise
  every ``republish_s``; a late subscriber gets every market's verdict at once.
- Volume: it listens to the feeds' public trades (``trade.*``) and keeps per market the traded
  volume of both venues in ``profile_bucket_s`` buckets, the last ``profile_buckets`` of them
  (:mod:`karb.ops.volume`); the verdict carries that profile and its sum (``volume_profile``,
  ``recent_volume``, ``trades``) and is also republished each time a bucket closes, so vwap
  and the optimizer read a profile at most one bucket old. Without trade streams (feeds with
  ``trades: false``, Bithumb legacy) the profile stays empty and they fall back.
- Execution quality: it listens to the strategy's ``sig.*`` and execution's ``ord.*`` and
  publishes one ``xq.<venue>.<market>`` per leg that reaches a final state
  (:mod:`karb.ops.execquality`).

It listens to the actors of kind ``strategy`` and ``execution`` in the config (a config without
them has only the market-state half). Place it last in ``actors:``, so it stops first.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable

import msgspec

from karb import topics
from karb.actors.base import Actor
from karb.messages import BusMessage, MarketStateUpdate, OrderEvent, Signal, TradeTick
from karb.ops.execquality import ExecQualityTracker
from karb.ops.marketstate import MarketStateRules, Verdict, Window, sample
from karb.ops.volume import TradeVolumes
from karb.shm import VALID, TopOfBookTable, segment_path


class MonitorParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    market_state: MarketStateRules = msgspec.field(default_factory=MarketStateRules)
    republish_s: float = 10.0
    # Volume profile from the trade streams: buckets of profile_bucket_s, the last
    # profile_buckets of them. vwap weighs its slices by the last n buckets, so a bucket is
    # best one slice long (AlgoOrder.slice_s, 5 s) and the span one horizon (60 s).
    profile_bucket_s: float = 5.0
    profile_buckets: int = 12

    def __post_init__(self) -> None:
        if self.profile_bucket_s <= 0 or self.profile_buckets < 1:
            raise ValueError("profile_bucket_s must be > 0 and profile_buckets at least 1")


class Monitor(Actor):
    Params = MonitorParams

    def subscriptions(self) -> Iterable[tuple[str, bytes]]:
        for spec in self.config.actors:
            if spec.kind == "strategy":
                yield spec.name, topics.SIGNAL
            elif spec.kind == "execution":
                yield spec.name, topics.ORDER
            elif spec.kind == "feed":
                yield spec.name, topics.TRADE

    async def on_start(self) -> None:
        cfg = self.config
        self.table = TopOfBookTable.attach(segment_path(cfg.run_dir), len(cfg.venues),
                                           len(cfg.markets))
        self.windows = {m: Window(self.params.market_state) for m in cfg.markets}
        self.verdicts: dict[str, Verdict] = {}
        self.published_at: dict[str, float] = {}
        self.volumes = TradeVolumes(list(cfg.markets), self.params.profile_bucket_s,
                                    self.params.profile_buckets, time.monotonic())
        self.published_bucket: dict[str, int] = {}
        self.quality = ExecQualityTracker()
        self.legs_measured = 0
        self.spawn(self._sample_loop(), name="market-state")

    def on_message(self, topic: bytes, msg: BusMessage) -> None:
        if isinstance(msg, TradeTick):
            self.volumes.on_trade(msg, time.monotonic())
        elif isinstance(msg, Signal):
            self.quality.on_signal(msg)
        elif isinstance(msg, OrderEvent):
            q = self.quality.on_order(msg, time.monotonic_ns())
            if q is not None:
                now = time.time_ns()
                q.ts_event = q.ts_init = now
                self.legs_measured += 1
                self.publish(topics.leg_quality(q.venue, q.market), q)

    async def _sample_loop(self) -> None:
        interval = self.params.market_state.sample_ms / 1000
        while True:
            self.sample_once()
            await asyncio.sleep(interval)

    def sample_once(self) -> None:
        n_markets = len(self.config.markets)
        now = time.monotonic()
        for mi, market in enumerate(self.config.markets):
            tops = []
            for vi in range(len(self.config.venues)):
                top = self.table.read(vi * n_markets + mi)
                if top is not None and top.flags == VALID:
                    tops.append((top.bid_px, top.bid_size, top.ask_px, top.ask_size))
            s = sample(tops)
            if s is None:
                continue
            verdict = self.windows[market].add(s)
            before = self.verdicts.get(market)
            self.verdicts[market] = verdict
            if (before is None or before.state != verdict.state
                    or self.published_bucket.get(market) != self.volumes.bucket(market, now)
                    or now - self.published_at.get(market, 0.0) >= self.params.republish_s):
                self._publish(market, verdict)
                self.published_at[market] = now

    def _publish(self, market: str, v: Verdict) -> None:
        self.publish(topics.market_state(market), self.update(market, v, time.monotonic()))

    def update(self, market: str, v: Verdict, now_s: float) -> MarketStateUpdate:
        """The verdict of ``market`` with its volume figures as of ``now_s`` (monotonic)."""
        now = time.time_ns()
        vol = self.volumes.figures(market, now_s)
        self.published_bucket[market] = self.volumes.bucket(market, now_s)
        return MarketStateUpdate(
            market=market, state=v.state.value, volatility_bps=v.volatility_bps,
            trend_bps=v.trend_bps, efficiency=v.efficiency, range_bps=v.range_bps,
            spread_bps=v.spread_bps, depth_krw=v.depth_krw, samples=v.samples,
            volume_profile=vol.profile, recent_volume=vol.recent_volume, trades=vol.trades,
            ts_event=now, ts_init=now)

    def on_subscribe(self, prefix: bytes) -> None:
        if topics.MARKET_STATE.startswith(prefix) or prefix.startswith(topics.MARKET_STATE):
            for market, verdict in self.verdicts.items():
                self._publish(market, verdict)

    def heartbeat_extra(self) -> dict[str, float]:
        counts: dict[str, float] = {}
        for v in self.verdicts.values():
            counts[f"markets_{v.state.value}"] = counts.get(f"markets_{v.state.value}", 0.0) + 1
        return counts | {"legs_measured": float(self.legs_measured),
                         "trades_counted": float(self.volumes.counted)}

    async def on_stop(self) -> None:
        self.table.close()
