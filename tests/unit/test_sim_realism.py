"""The realistic market model: heavy-tailed decaying dislocations, regimes, competitors, outages."""

from __future__ import annotations

import asyncio
import math
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import pytest

from karb.config import (
    CompetitorConfig,
    ConfigError,
    DislocationConfig,
    OutageConfig,
    PremiumConfig,
    SimConfig,
    VolatilityRegimeConfig,
    load_config,
)
from karb.sim.dislocations import DislocationSource
from karb.sim.engine import Account, Balance, Exchange
from karb.sim.market import MarketModel
from karb.sim.outages import OutageSchedule, apply
from karb.sim.regimes import MarkovRegime
from karb.sim.venue import Faults

REPO = Path(__file__).resolve().parents[2]
MARKETS = ["KRW-BTC", "KRW-XRP"]
QUIET = {"noise_bps": 0.0, "volatility_bps": 0.0}


def test_pareto_sizes_are_heavy_tailed_and_most_are_below_the_fees() -> None:
    cfg = DislocationConfig(size_dist="pareto", size_bps=2.0, pareto_alpha=1.5, max_bps=200.0)
    source = DislocationSource(cfg, seed=1)
    sizes = [source._size() for _ in range(20_000)]
    assert min(sizes) >= 2.0 and max(sizes) == 200.0
    above_fees = sum(s > 9.0 for s in sizes) / len(sizes)
    assert above_fees == pytest.approx((2 / 9) ** 1.5, abs=0.01)  # 10.5 %
    lognormal = DislocationSource(DislocationConfig(size_dist="lognormal", size_bps=5.0), seed=1)
    assert statistics.median(lognormal._size() for _ in range(5000)) == pytest.approx(5.0, rel=0.1)


def test_arrivals_are_poisson_at_the_configured_rate_and_scale_with_volatility() -> None:
    source = DislocationSource(DislocationConfig(rate_per_min=30.0), seed=2)
    counts = [len(source.arrivals(MARKETS, t, 100)) for t in range(0, 600_000, 100)]  # 10 min
    assert sum(counts) == pytest.approx(300, abs=60)
    assert max(counts) >= 2  # two may start in one step
    doubled = sum(len(source.arrivals(MARKETS, t, 100, rate_scale=2.0))
                  for t in range(0, 600_000, 100))
    assert doubled == pytest.approx(600, abs=90)


def test_a_dislocation_decays_by_its_half_life_and_ends_below_half_a_bps() -> None:
    cfg = SimConfig(seed=3, **QUIET, dislocation=DislocationConfig(  # type: ignore[arg-type]
        rate_per_min=0.0, half_life_ms=1000, duration_ms=60_000))
    model = MarketModel(["KRW-BTC"], cfg, 0)
    source = DislocationSource(DislocationConfig(rate_per_min=600_000.0, size_bps=50.0,
                                                 half_life_ms=1000, duration_ms=60_000), seed=3)
    (d,) = source.arrivals(["KRW-BTC"], 0, 100)[:1]
    model.dislocations.append(d)
    gap = []
    for t in (1000, 2000, 3000):
        model.step(t)
        up, bt = model.book("upbit", "KRW-BTC"), model.book("bithumb", "KRW-BTC")
        mid = {v: (b.best_bid() + b.best_ask()) / 2 for v, b in (("upbit", up), ("bithumb", bt))}
        other = "bithumb" if d.venue == "upbit" else "upbit"
        gap.append((mid[d.venue] / mid[other] - 1) * 1e4)
    assert abs(gap[0]) == pytest.approx(25.0, abs=1.5) and abs(gap[1]) == pytest.approx(12.5, abs=1.5)
    assert d.alive(6000) and not d.alive(7000)  # 50 * 0.5**6.7 < 0.5
    model.step(7000)
    assert model.dislocations == []


def test_markov_regime_holds_levels_for_the_mean_time_and_follows_its_transitions() -> None:
    import random
    chain = MarkovRegime([0.0, 6.0, -6.0], [1.0, 1.0, 1.0], [], random.Random(1), 0)
    time_in: dict[float, int] = {}
    for t in range(0, 3_600_000, 100):
        level = chain.level_at(t)
        time_in[level] = time_in.get(level, 0) + 1
    assert chain.switches == pytest.approx(3600, rel=0.1)
    assert all(n / 36_000 == pytest.approx(1 / 3, abs=0.05) for n in time_in.values())
    forced = MarkovRegime([1.0, 2.5, 5.0], [1.0, 1.0, 1.0], [[0, 1, 0], [0, 0, 1], [1, 0, 0]],
                          random.Random(2), 0)
    seen: list[float] = []
    for t in range(0, 60_000, 10):
        level = forced.level_at(t)
        if not seen or seen[-1] != level:
            seen.append(level)
    assert seen[:7] == [1.0, 2.5, 5.0, 1.0, 2.5, 5.0, 1.0]
    constant = MarkovRegime([0.0], [1.0], [], random.Random(3), 0)
    assert constant.level_at(10**12) == 0.0 and constant.switches == 0


def test_a_premium_regime_makes_upbit_dearer_by_its_level() -> None:
    cfg = SimConfig(seed=4, **QUIET, dislocation=DislocationConfig(rate_per_min=0.0),  # type: ignore[arg-type]
                    premium=PremiumConfig(levels_bps=[20.0], hold_s=[3600.0]))
    model = MarketModel(MARKETS, cfg, 0)
    model.step(100)
    for market in MARKETS:
        up, bt = model.book("upbit", market), model.book("bithumb", market)
        ratio = (up.best_bid() + up.best_ask()) / (bt.best_bid() + bt.best_ask())
        tick_bps = 1e4 * (up.best_ask() - up.best_bid()) / up.best_bid()
        assert (ratio - 1) * 1e4 == pytest.approx(20.0, abs=max(1.0, tick_bps))


def test_a_volatility_regime_scales_the_fair_value_steps() -> None:
    def realised(multiplier: float) -> float:
        cfg = SimConfig(seed=5, volatility_bps=1.0, dislocation=DislocationConfig(rate_per_min=0.0),
                        volatility_regimes=VolatilityRegimeConfig(multipliers=[multiplier]))
        model = MarketModel(["KRW-BTC"], cfg, 0)
        prev, moves = model.fair["KRW-BTC"], []
        for t in range(100, 200_001, 100):
            model.step(t)
            moves.append(math.log(model.fair["KRW-BTC"] / prev) * 1e4)
            prev = model.fair["KRW-BTC"]
        return statistics.pstdev(moves)
    assert realised(1.0) == pytest.approx(1.0, rel=0.1)
    assert realised(3.0) == pytest.approx(3.0, rel=0.1)


def competitor_market(notional_krw: float) -> tuple[MarketModel, Exchange, Account, float, float]:
    """KRW-XRP, no noise, Bithumb 100 bps above Upbit from the first step (at 100 ms); one
    competitor 50 ms late. Upbit's best ask is made deep, so it does not move as the competitor
    buys it. Returns the model, Bithumb's exchange, an account, the sell limit that pays us
    10 bps over Upbit's ask, and the Bithumb bid volume at or above that limit."""
    cfg = SimConfig(seed=6, **QUIET, dislocation=DislocationConfig(rate_per_min=0.0),  # type: ignore[arg-type]
                    competitors=CompetitorConfig(count=1, min_edge_bps=12.0, latency_ms=50.0,
                                                 latency_sigma=0.0, notional_krw=notional_krw,
                                                 notional_sigma=0.0))
    model = MarketModel(["KRW-XRP"], cfg, 0)
    model.dislocate("bithumb", "KRW-XRP", 100.0, 10_000)
    model.step(100)  # the gap shows at 100 ms; the competitor lands at 150 ms
    model.book("upbit", "KRW-XRP").asks[0][1] = 1e9
    limit = float(math.ceil(model.book("upbit", "KRW-XRP").best_ask() * 1.001))
    paying = sum(size for px, size in model.book("bithumb", "KRW-XRP").bids if px >= limit)
    account = Account("k", "s", {"KRW": Balance(free=1e9), "XRP": Balance(free=1e6)})
    clock_ms = {"now": 0}
    exchange = Exchange("bithumb", model, 0.0004, 5000.0, [account],
                        lambda: clock_ms["now"] * 10**6)
    exchange.clock_ms = clock_ms  # type: ignore[attr-defined]
    return model, exchange, account, limit, paying


def sell(exchange: Exchange, account: Account, at_ms: int, limit: float, volume: float) -> float:
    exchange.clock_ms["now"] = at_ms  # type: ignore[attr-defined]
    order = exchange.place(account, "KRW-XRP", "ask", "limit", limit, round(volume, 4), "ioc", None)
    return order.executed_volume


def test_an_ioc_faster_than_the_competitor_fills_and_a_slower_one_does_not() -> None:
    _, exchange, account, limit, paying = competitor_market(notional_krw=1e12)
    assert paying > 1000
    assert sell(exchange, account, 120, limit, paying) == pytest.approx(paying)
    model, exchange, account, limit, paying = competitor_market(notional_krw=1e12)
    assert sell(exchange, account, 160, limit, paying) == 0.0  # it took everything that paid
    model.step(200)  # a new book, still dislocated: the competitor, already there, takes it
    bid = model.book("bithumb", "KRW-XRP").best_bid()
    assert bid <= model.book("upbit", "KRW-XRP").best_ask() * 1.0012  # no gap it would take
    assert bid > model.book("upbit", "KRW-XRP").best_ask()  # but the price is still dislocated
    assert model.competitors is not None and model.competitors.taken_krw > 0


def test_an_ioc_behind_a_small_competitor_fills_partly() -> None:
    _, exchange, account, limit, paying = competitor_market(notional_krw=600_000.0)
    filled = sell(exchange, account, 160, limit, paying)
    assert 0 < filled < paying
    assert paying - filled == pytest.approx(600_000.0 / limit, rel=0.05)


def test_same_seed_same_realistic_market_and_competitors_leave_the_price_path_alone() -> None:
    cfg = load_config(REPO / "configs" / "backtest.yaml").sim
    assert cfg is not None
    a, b = MarketModel(MARKETS, cfg, 0), MarketModel(MARKETS, cfg, 0)
    alone = MarketModel(MARKETS, msgspec.structs.replace(cfg, competitors=CompetitorConfig()), 0)
    for t in range(100, 60_001, 100):
        a.step(t)
        b.step(t)
        alone.step(t)
    assert a.fair == b.fair == alone.fair
    assert a.book("upbit", "KRW-BTC") == b.book("upbit", "KRW-BTC")
    assert [(d.venue, d.market, d.bps) for d in a.dislocations] == [
        (d.venue, d.market, d.bps) for d in alone.dislocations]


def test_the_demo_config_still_opens_60_bps_windows_about_six_a_minute() -> None:
    cfg = load_config(REPO / "configs" / "sim.yaml").sim
    assert cfg is not None and cfg.competitors.count == 0 and cfg.premium.levels_bps == [0.0]
    model = MarketModel(["KRW-BTC", "KRW-ETH"], cfg, 0)
    started = set()
    for t in range(100, 600_001, 100):  # ten minutes
        model.step(t)
        for d in model.dislocations:
            started.add((d.start_ms, d.venue, d.market))
            assert abs(d.bps) == 60.0 and d.until_ms - d.start_ms == 3000
    assert len(started) == pytest.approx(60, abs=25)


def test_outages_follow_their_rates_each_stall_and_rest_outage_ends() -> None:
    cfg = OutageConfig(ws_drops_per_hour=2.0, ws_stalls_per_hour=1.0, ws_stall_s=10.0,
                       rest_outages_per_hour=1.0, rest_outage_s=30.0)
    schedule = OutageSchedule(cfg, ("upbit", "bithumb"), seed=7, now_ms=0)
    events = []
    for t in range(0, 100 * 3_600_000 + 1, 1000):  # 100 hours, a look a second
        events += schedule.due(t)
    assert [e.at_ms for e in events] == sorted(e.at_ms for e in events)
    for venue in ("upbit", "bithumb"):
        mine = [e for e in events if e.venue == venue]
        drops = [e for e in mine if e.kind == "ws_drop"]
        assert len(drops) == pytest.approx(200, abs=45)
        for kind, mean_s in (("ws_stall", 10.0), ("rest_down", 30.0)):
            starts = [e for e in mine if e.kind == kind and e.starts]
            ends = [e for e in mine if e.kind == kind and not e.starts]
            assert len(starts) == pytest.approx(100, abs=30)
            assert len(ends) >= len(starts) - 1
            lengths = [(e.until_ms - e.at_ms) / 1000 for e in starts]
            assert statistics.mean(lengths) == pytest.approx(mean_s, rel=0.3)
    again = OutageSchedule(cfg, ("upbit", "bithumb"), seed=7, now_ms=0)
    assert again.due(50 * 3_600_000) == [e for e in events if e.at_ms <= 50 * 3_600_000]


@dataclass(eq=False)
class StubSession:
    dropped: int = 0

    async def drop(self) -> None:
        self.dropped += 1


@dataclass
class StubVenue:
    """What :func:`karb.sim.outages.apply` uses of a VenueState: its faults and its sockets."""

    faults: Faults = field(default_factory=Faults)
    sockets: set[Any] = field(default_factory=set)


def test_applying_outages_switches_the_fault_set_on_and_off() -> None:
    cfg = OutageConfig(ws_drops_per_hour=3600.0, ws_stalls_per_hour=3600.0,
                       rest_outages_per_hour=3600.0, ws_stall_s=1.0, rest_outage_s=1.0)
    schedule = OutageSchedule(cfg, ("upbit",), seed=8, now_ms=0)
    venue = StubVenue()
    sessions = [StubSession(), StubSession()]
    venue.sockets = set(sessions)

    async def run() -> None:
        seen: set[tuple[str, bool]] = set()
        for t in range(0, 120_000, 100):
            for event in schedule.due(t):
                await apply(venue, event, 503)  # type: ignore[arg-type]
                seen.add((event.kind, event.starts))
                if event.kind == "rest_down":
                    assert (venue.faults.fail_next > 10**6) == event.starts
                    assert venue.faults.fail_status == 503
                if event.kind == "ws_stall":
                    assert venue.faults.ws_stalled == event.starts
        assert {("ws_drop", True), ("ws_stall", True), ("ws_stall", False), ("rest_down", True),
                ("rest_down", False)} <= seen
    asyncio.run(run())
    assert all(s.dropped > 0 for s in sessions)


def test_realism_keys_are_checked_and_the_shipped_backtest_config_loads(tmp_path: Path) -> None:
    cfg = load_config(REPO / "configs" / "backtest.yaml")
    assert cfg.sim is not None and cfg.sim.competitors.count == 3
    assert cfg.sim.dislocation.size_dist == "pareto"
    for sim, says in (({"competitors": {"latency": 5}}, "sim.competitors.latency: unknown key"),
                      ({"premium": {"levels_bps": [0, 5], "hold_s": [1.0]}},
                       "levels and hold_s must be non-empty lists of the same length"),
                      ({"volatility_regimes": {"multipliers": [1, 2], "hold_s": [1, 1],
                                               "transition": [[0, 1]]}},
                       "transition: must be 2 rows of 2 probabilities"),
                      ({"dislocation": {"size_dist": "cauchy"}}, "sim.dislocation.size_dist"),
                      ({"outages": {"rest_status": 404}}, "sim.outages.rest_status")):
        path = tmp_path / "c.yaml"
        path.write_text(msgspec.json.encode({"sim": sim, "actors": [{"name": "a", "kind": "sim"}]}).decode())
        with pytest.raises(ConfigError, match=re.escape(says)):
            load_config(path)
