"""The backtester (issue 11): a leg timeout on virtual time, live/backtest parity of the sized
opportunities on one recorded stream, and one simulated hour whose summary adds up."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from karb import clock, topics
from karb.actors.strategy import Strategy
from karb.backtest.lazymarket import LazyMarketModel
from karb.backtest.results import EPS_COIN, summarise
from karb.backtest.run import Backtest, Options, hot_threshold_bps, run_backtest
from karb.config import load_config
from karb.messages import DepthUpdate, Position, Signal, encode
from karb.recording import RecordWriter, read_messages
from karb.trading.decide import StrategyParams
from karb.trading.limits import ExecutionLimits
from karb.trading.orders import LegRecord, LegState
from tests.unit.execution_kit import MARKET, intent, make_kit
from tests.unit.stub_venue import Post

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "backtest.yaml"


@pytest.fixture
def virtual() -> Any:
    vclock = clock.VirtualClock()
    previous = clock.set_clock(vclock)
    yield vclock
    clock.set_clock(previous)


# -- a leg timeout fires in virtual time ---------------------------------------------------------


def test_leg_timeout_fires_in_virtual_time(tmp_path: Path, virtual: clock.VirtualClock) -> None:
    """An order that stays open is cancelled after leg_timeout_ms (30 s) of virtual time, in
    well under a second of real time."""
    limits = ExecutionLimits(max_notional_krw=2_000_000, max_inventory_krw=1e12,
                             stale_after_ms=2000, hedge_loss_bps=30, leg_timeout_ms=30_000,
                             poll_interval_ms=50, settle_ms=1000, leg_deadline_ms=60_000)
    kit = make_kit(tmp_path, limits)
    kit.upbit.posts.append(Post("open"))
    one = intent()
    leg = LegRecord("c-open-b", one.intent_id, "buy", "upbit", MARKET, "buy", 100_000.0, 0.1,
                    LegState.PENDING)

    async def run() -> tuple[LegRecord, int]:
        start = clock.monotonic_ns()
        done = await kit.ex.legs.run(leg, 0, clock.monotonic() + limits.leg_deadline_ms / 1000)
        return done, clock.monotonic_ns() - start

    real = time.perf_counter()
    done, elapsed_ns = virtual.run(run())
    assert time.perf_counter() - real < 2.0
    assert elapsed_ns >= limits.leg_timeout_ms * 1_000_000
    assert elapsed_ns < limits.leg_deadline_ms * 1_000_000
    assert done.state == LegState.CANCELLED
    assert any(c.startswith("cancel") for c in kit.upbit.calls)


# -- parity: live strategy actor and backtester, one recorded stream -----------------------------


class _Tops:
    def top(self, venue: str, market: str) -> tuple[float, int] | None:
        return 1.0, clock.monotonic_ns()  # valid and fresh: the filters' other rules decide


def _live_strategy(params: StrategyParams, venues: list[str], fees: dict[str, float],
                   markets: list[str], tops: _Tops, published: list[Any]) -> Strategy:
    """The strategy actor's own message handling (on_message, on_batch, _act), its bus and shared
    memory replaced: publish appends, the tops are a stub view."""
    from karb.trading.decide import Decider

    strategy = Strategy.__new__(Strategy)
    strategy.params = params
    strategy.decider = Decider(params, venues, fees, markets, tops,
                               new_id=iter(f"i{n:020d}" for n in range(1, 10**6)).__next__)
    strategy.dirty = {}
    strategy.outbox = asyncio.Queue()
    strategy.decisions = {}
    strategy.log = logging.getLogger("test.strategy")
    strategy.publish = lambda topic, msg: published.append(msg)  # type: ignore[method-assign]
    return strategy


def _recorded_stream(tmp: Path, steps: int) -> Path:
    """Books of a dislocated market model, written and read back as a recording."""
    cfg = load_config(CONFIG)
    assert cfg.sim is not None
    markets = ["KRW-BTC", "KRW-XRP"]
    model = LazyMarketModel(markets, cfg.sim, 1_767_225_600_000, hot_bps=0.0)  # every book
    writer = RecordWriter(tmp / "rec")
    t = 1_767_225_600_000
    for i in range(steps):
        t += 100
        if i % 50 == 10:
            model.dislocate("upbit" if i % 100 == 10 else "bithumb", markets[i % 2], 40.0, 1500)
        for venue, market in model.step(t):
            book = model.book(venue, market)
            msg = DepthUpdate(venue=venue, market=market, bids=[(p, q) for p, q in book.bids[:10]],
                              asks=[(p, q) for p, q in book.asks[:10]], recv_mono=t * 1_000_000)
            writer.add(t * 1_000_000, topics.depth(venue, market), encode(msg))
    writer.close()
    return tmp / "rec"


def test_parity_live_strategy_and_backtester(tmp_path: Path, virtual: clock.VirtualClock) -> None:
    cfg = load_config(CONFIG)
    bt = Backtest(cfg, Options(days=1), tmp_path)
    tops = _Tops()
    bt.decider = bt.new_decider(tops)
    published: list[Any] = []
    live = _live_strategy(bt.sp, bt.venues, bt.fees, bt.markets, tops, published)
    position = Position(balances={v: {"KRW": 30_000_000.0, "BTC": 0.5, "XRP": 5000.0}
                                  for v in bt.venues},
                        inventory={}, pnl_krw={}, pnl_total_krw=0.0, intents_done=0, fills=0,
                        halted=[], open_intents=[])
    live.on_message(topics.POSITION, position)
    bt.decider.on_position(position)

    ours: list[tuple[Any, ...]] = []
    burst: list[DepthUpdate] = []
    last_ns = 0

    def flush() -> None:
        live.on_batch()
        for d in bt.feed(burst):
            ours.append((d.market, d.buy_venue, d.sell_venue, d.volume, d.buy_limit,
                         d.sell_limit, d.decision, d.intent_id))
        burst.clear()

    for recv_ns, _topic, msg in read_messages(_recorded_stream(tmp_path, 600)):
        if recv_ns != last_ns and burst:
            flush()
            virtual.advance(recv_ns - last_ns)
        last_ns = recv_ns
        assert isinstance(msg, DepthUpdate)
        live.on_message(topics.depth(msg.venue, msg.market), msg)
        burst.append(msg)
    flush()
    theirs = [(s.market, s.buy_venue, s.sell_venue, s.volume, s.buy_limit, s.sell_limit,
               s.decision, s.intent_id) for s in published if isinstance(s, Signal)]
    assert len(theirs) >= 5 and any(t[6] == "sent" for t in theirs)
    assert ours == theirs


# -- one simulated hour ------------------------------------------------------------------------


def test_one_simulated_hour_adds_up(tmp_path: Path) -> None:
    cfg = load_config(CONFIG)
    res, stats = run_backtest(cfg, Options(days=1 / 24), tmp_path)
    s = summarise(res)
    assert s["crashes"] == 0
    assert s["intents"] and s["round_trips"]
    assert stats["books_skipped"] > stats["books_built"]  # the lazy model did its job
    # PnL = fills - fees (+ leftover coin at its mark), from the fills themselves ...
    cash = sum(f.price * f.volume * (1 if f.side == "ask" else -1) for f in res.fills)
    fees = sum(f.fee_krw for f in res.fills)
    coin: dict[str, float] = defaultdict(float)
    for f in res.fills:
        coin[f.market] += f.volume if f.side == "bid" else -f.volume
    marked = sum(q * res.final_marks[m] for m, q in coin.items())
    # ... less the fees of the rebalancer's transfers (coin that left and arrives nowhere)
    sent = sum(t.fee_krw for t in res.transfers if t.state not in ("NOT_SENT", "FAILED"))
    assert s["pnl_krw"] == pytest.approx(cash - fees + marked - sent, abs=0.05)
    assert s["fees_krw"] == pytest.approx(fees, abs=0.05)
    # The venues' accounts moved by exactly the fills: KRW by cash - fees, coin by volume.
    first, last = res.balances[0].balances, res.balances[-1].balances
    for venue in first:
        krw = sum(f.price * f.volume * (1 if f.side == "ask" else -1) - f.fee_krw
                  for f in res.fills if f.venue == venue)
        assert last[venue]["KRW"] - first[venue]["KRW"] == pytest.approx(krw, abs=0.01)
    # Balances never negative, at any balance point.
    assert s["negative_balance_events"] == 0
    assert all(v >= -EPS_COIN for p in res.balances for b in p.balances.values() for v in b.values())
    # The success rate is the legs': buy/sell legs filled in full over those sent.
    arb = {i.intent_id for i in res.intents if i.purpose == "arb"}  # not rebalancing children
    main = [leg for leg in res.legs if leg.role != "hedge" and leg.intent_id in arb]
    full = sum(leg.executed_volume >= leg.volume - EPS_COIN for leg in main)
    assert s["order_success_rate"] == pytest.approx(full / len(main), abs=1e-4)
    assert res.intents and sum(i.accepted for i in res.intents) >= len({leg.intent_id for leg in main})


def test_hot_threshold_stays_under_every_trader() -> None:
    cfg = load_config(CONFIG)
    assert cfg.sim is not None
    fees: dict[str, float] = {v.name: v.fee for v in cfg.venues}
    hot = hot_threshold_bps(cfg.sim, StrategyParams(min_edge_bps=10), fees)
    assert hot < cfg.sim.competitors.min_edge_bps
    assert hot < 10 + sum(fees.values()) * 1e4


# -- sweeps ------------------------------------------------------------------------------------


def test_sweep_keys_reach_sim_sections_and_actor_params(tmp_path: Path) -> None:
    from karb.backtest.run import strategy_params
    from karb.backtest.sweep import parse_values, variant_config
    from karb.config import ConfigError

    assert parse_values("8,10.5,true") == [8, 10.5, True]
    path = variant_config(CONFIG, "actors.strategy.min_edge_bps", 14, tmp_path)
    assert strategy_params(load_config(path)).min_edge_bps == 14
    path = variant_config(CONFIG, "sim.competitors.latency_ms", 5.0, tmp_path)
    sim = load_config(path).sim
    assert sim is not None and sim.competitors.latency_ms == 5.0
    with pytest.raises(ConfigError):
        variant_config(CONFIG, "sim.competitors.no_such_key", 1, tmp_path)
    with pytest.raises(ConfigError):
        variant_config(CONFIG, "actors.nobody.x", 1, tmp_path)


# -- replay of a recording ---------------------------------------------------------------------


def test_backtest_replays_a_recording(tmp_path: Path) -> None:
    """--data: recorded books (md.*) instead of the model; the run ends with the recording."""
    from karb.messages import BookUpdate

    cfg = load_config(CONFIG)
    assert cfg.sim is not None
    model = LazyMarketModel(list(cfg.markets), cfg.sim, 1_767_225_600_000, hot_bps=0.0)
    writer = RecordWriter(tmp_path / "rec")
    t = start = 1_767_225_600_000
    for i in range(1200):  # two minutes, a wide gap now and then
        t += 100
        if i % 100 == 10:
            model.dislocate("upbit", "KRW-ETH", 40.0 if i % 200 == 10 else -40.0, 1500)
        for venue, market in model.step(t):
            book = model.book(venue, market)
            msg = BookUpdate(venue=venue, market=market, bids=[(p, q) for p, q in book.bids],
                             asks=[(p, q) for p, q in book.asks], recv_mono=t)
            writer.add(t * 1_000_000, topics.market_data(venue, market), encode(msg))
    writer.close()
    res, stats = run_backtest(cfg, Options(days=1, data=tmp_path / "rec"), tmp_path)
    s = summarise(res)
    assert res.started_ns == (start + 100) * 1_000_000
    assert res.ended_ns - res.started_ns < 3 * 60 * 10**9  # the recording's end, not a day
    assert s["crashes"] == 0 and s["intents"] and s["round_trips"]
    assert {i.market for i in res.intents} == {"KRW-ETH"}
    assert s["negative_balance_events"] == 0
