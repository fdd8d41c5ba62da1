"""A backtest on the live trading code, on virtual time.

The pieces are the live ones: the strategy's decisions (``karb.trading.decide.Decider``), the
executor's risk checks, journal (SQLite, in the work dir), legs, hedges and ledger
(``karb.execution``), the periodic balance refresh and continuous reconciliation as the
``execution`` actor runs them. What is replaced: the bus (direct calls), shared memory
(:class:`~karb.backtest.venue.ModelTops`), the venues (:class:`~karb.backtest.venue.InProcessVenue`
over the simulator's own matching engine and accounts), and the system clocks (a
``VirtualClock`` installed as ``karb.clock``'s current clock: nothing waits in real time).

Each model step (``sim.step_ms``) the market model moves (:class:`LazyMarketModel`: books of
markets where no gap can open are built only when read); the books of the markets that changed
go to the decider; a ``sent`` decision becomes an intent that execution accepts after the feed's
one-way delay and our decision time, and runs as live (its orders wait ``rtt/2`` each way).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import msgspec

from karb import clock
from karb.backtest.lazymarket import LazyMarketModel
from karb.backtest.operator import unhalt_after
from karb.backtest.params import (execution_params, hot_threshold_bps, limits_of,
                                  strategy_params)
from karb.backtest.rebalancing import BacktestRebalancer
from karb.backtest.replay import ReplayMarket, first_book_ns
from karb.backtest.results import (BacktestResults, BalancePoint, FillRecord, HaltRecord,
                                   IntentRecord, LegRecord, Role, SignalRecord)
from karb.backtest.venue import InProcessVenue, ModelTops
from karb.config import Config, SimConfig
from karb.execution.executor import Executor
from karb.execution.journal import Journal
from karb.execution.reconcile import Reconciler
from karb.messages import Alert, DepthUpdate, FillEvent, Intent, Msg, Position
from karb.sim import engine
from karb.sim.market import VENUES, MarketModel
from karb.sim.outages import OutageSchedule
from karb.sim.server import default_account
from karb.trading.arb import edge_bps, size_trade
from karb.trading.decide import Decider, Sized, TopView
from karb.trading.risk import CircuitBreaker, KillSwitch

log = logging.getLogger("karb.backtest")
DAY_NS = 86_400 * 10**9


@dataclass(frozen=True)
class Latency:
    # Frame receipt → first leg's headers written, measured: tools/bench.py
    # tick_to_trade_us_p50 (2.9-3.6 ms on the 2-core dev machine, README "Benchmarks").
    decision_ms: float = 3.5
    # Our host ↔ the venue, round trip. Guess: a Seoul cloud host to both venues' APIs.
    rtt_ms: float = 10.0


@dataclass(frozen=True)
class Options:
    days: float
    seed: int | None = None
    latency: Latency = field(default_factory=Latency)
    depth_levels: int = 10  # as the book actor publishes (configs: book depth_levels)
    balance_every_s: float = 300.0  # a balance point for the report this often
    reconcile: bool = True  # continuous reconciliation, as live
    # Its interval here. Live: reconcile_interval_s (5 s). Each sweep's balance check sums every
    # leg the journal holds (Journal.executed_totals, legs(only_open)): O(history) per sweep,
    # quadratic over a long backtest, so a backtest sweeps less often by default.
    reconcile_every_s: float = 300.0
    progress: bool = False  # a line on stderr per simulated six hours
    data: Path | None = None  # a recording to replay instead of the synthetic market
    # The config's rebalance: section in force (skew-aware thresholds, the rebalancer's
    # transfers and KRW trades); False: the bare strategy, for the side-by-side report.
    rebalancing: bool = True
    # An operator unhalts a halted market this long after its halt, once reconciliation has
    # settled everything of it (live: the ``unhalt`` command after a look); None: never, a halt
    # lasts to the end of the run.
    operator_unhalt_s: float | None = 1800.0


class Backtest:
    def __init__(self, cfg: Config, opts: Options, workdir: Path) -> None:
        self.cfg = cfg
        self.opts = opts
        sim = cfg.sim or SimConfig()
        if opts.seed is not None:
            sim = msgspec.structs.replace(sim, seed=opts.seed)
        self.sim = sim
        self.markets = list(cfg.markets)
        self.venues: list[str] = [v.name for v in cfg.venues]
        if sorted(self.venues) != sorted(VENUES):
            raise ValueError(f"a backtest needs the venues {VENUES}; the config has {self.venues}")
        self.fees: dict[str, float] = {v.name: v.fee for v in cfg.venues}
        self.sp = strategy_params(cfg)
        self.ep = execution_params(cfg)
        self.workdir = workdir
        self.lat = opts.latency
        self.arrivals: dict[str, int] = {}  # client id → monotonic ns it reached the engine
        self.decided: dict[str, int] = {}  # intent id → monotonic ns of the decision
        self.fills: list[FillRecord] = []
        self.intents: list[IntentRecord] = []
        self.legs: list[LegRecord] = []
        self.signals: list[SignalRecord] = []
        self.balances: list[BalancePoint] = []
        self.halts: list[HaltRecord] = []
        self.crashes = 0
        self.position: Position | None = None  # execution's last pos (the rebalancer reads it)
        self.rebalancer: BacktestRebalancer | None = None
        self.tasks: set[asyncio.Task[None]] = set()
        self.steps = 0
        self.t0 = 0.0

    # -- wiring ----------------------------------------------------------------------------------

    def _build(self) -> None:
        sim = self.sim
        now_ms = clock.time_ns() // 1_000_000
        self.model: MarketModel
        if self.opts.data is not None:
            self.model = ReplayMarket(self.opts.data, self.markets, self.venues, now_ms)
            self.model.step(now_ms)  # the books of the first instant
            no_outages = msgspec.structs.replace(sim.outages, ws_drops_per_hour=0.0,
                                                 ws_stalls_per_hour=0.0, rest_outages_per_hour=0.0)
            self.outages = OutageSchedule(no_outages, VENUES, sim.seed, now_ms)
        else:
            self.model = LazyMarketModel(self.markets, sim, now_ms,
                                         hot_threshold_bps(sim, self.sp, self.fees))
            self.outages = OutageSchedule(sim.outages, VENUES, sim.seed, now_ms)
        acct = sim.accounts[0] if sim.accounts else default_account(self.markets, sim.prices)
        self.accounts: dict[str, engine.Account] = {}
        self.clients: dict[str, InProcessVenue] = {}
        for venue in self.venues:
            vcfg = sim.upbit if venue == "upbit" else sim.bithumb
            account = engine.Account(acct.access_key, acct.secret_key,
                                     {c: engine.Balance(free=a) for c, a in acct.balances.items()})
            exchange = engine.Exchange(venue, self.model, vcfg.fee_rate, vcfg.min_total_krw,
                                       [account], clock.time_ns)
            self.accounts[venue] = account
            self.clients[venue] = InProcessVenue(exchange, account, self.lat.rtt_ms, self._arrived)
        self.tops = ModelTops(self.model, self.venues)
        self.journal = Journal(self.workdir / "journal.sqlite", self.ep.journal_sync)
        self.ex = Executor(dict(self.clients), self.journal, limits_of(self.ep), self.fees,
                           self._publish, self.tops,
                           CircuitBreaker(self.ep.breaker_failures, self.ep.breaker_open_s),
                           KillSwitch(self.workdir / "KILL"), self.markets)
        self.reconciler = Reconciler(self.ex)
        self.decider = self.new_decider(self.tops)
        if self.opts.rebalancing:
            self.rebalancer = BacktestRebalancer(self)

    def new_decider(self, tops: TopView) -> Decider:
        ids = itertools.count(1)
        return Decider(self.sp, self.venues, self.fees, self.markets, tops,
                       new_id=lambda: f"i{next(ids):020d}",
                       rebalance=self.cfg.rebalance if self.opts.rebalancing else None)

    def _arrived(self, client_id: str, mono_ns: int) -> None:
        self.arrivals.setdefault(client_id, mono_ns)

    def _publish(self, topic: bytes, msg: Msg) -> None:
        if isinstance(msg, Position):
            self.position = msg
            self.decider.on_position(msg)
        elif isinstance(msg, FillEvent):
            role: Role = "hedge" if "-h" in msg.client_id else ("buy" if msg.side == "buy" else "sell")
            self.fills.append(FillRecord(
                intent_id=msg.intent_id, role=role, ts_ns=msg.ts_event, venue=msg.venue,
                market=msg.market, side="bid" if msg.side == "buy" else "ask", price=msg.price,
                volume=msg.volume, fee_krw=msg.fee))
        elif isinstance(msg, Alert) and msg.text.startswith("HALT"):
            self.halts.append(HaltRecord(ts_ns=msg.ts_event, market=msg.market, reason=msg.text))

    def start_equity(self) -> float:
        total = 0.0
        for account in self.accounts.values():
            for cur, bal in account.balances.items():
                amount = bal.free + bal.locked
                total += amount if cur == "KRW" else amount * self.model.fair.get(f"KRW-{cur}", 0.0)
        return total

    def _balance_point(self) -> None:
        """Every venue's total per currency; coin withdrawn and not yet credited counts at the
        venue it goes to (it is in no account meanwhile)."""
        points = {v: {c: b.free + b.locked for c, b in a.balances.items()}
                  for v, a in self.accounts.items()}
        if self.rebalancer is not None:
            for venue, coins in self.rebalancer.in_flight().items():
                for coin, amount in coins.items():
                    points[venue][coin] = points[venue].get(coin, 0.0) + amount
        self.balances.append(BalancePoint(ts_ns=clock.time_ns(), balances=points))

    # -- running ---------------------------------------------------------------------------------

    async def main(self) -> BacktestResults:
        self._build()
        started_ns = clock.time_ns()
        equity = self.start_equity()
        await self.ex.refresh_balances()
        self.ex.publish_position()
        self._balance_point()
        background = [asyncio.create_task(self._refresh())]
        if self.opts.reconcile:
            background.append(asyncio.create_task(self._reconcile()))
        if self.rebalancer is not None:
            background.append(asyncio.create_task(self.rebalancer.run()))
        if self.opts.operator_unhalt_s is not None:
            background.append(asyncio.create_task(unhalt_after(self, self.opts.operator_unhalt_s)))
        t0 = self.t0 = time.perf_counter()
        await self._drive()
        if self.tasks:  # let intents in flight finish (each is bounded by leg_deadline_ms)
            await asyncio.wait(self.tasks, timeout=self.ep.leg_deadline_ms / 1000 * 2)
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        rb = self.rebalancer
        transfers, algos = [], []
        if rb is not None:
            await rb.stop()
            transfers, algos = rb.transfers(), rb.algos()
            rb.journal.close()
        self._balance_point()
        self.journal.close()
        return BacktestResults(
            started_ns=started_ns, ended_ns=clock.time_ns(), wall_s=time.perf_counter() - t0,
            markets=self.markets, fee_bps={v: f * 1e4 for v, f in self.fees.items()},
            start_equity_krw=equity, intents=self.intents, legs=self.legs, fills=self.fills,
            signals=self.signals, balances=self.balances, halts=self.halts,
            final_marks=dict(self.model.fair), crashes=self.crashes,
            rebalancing=rb is not None, transfers=transfers, algos=algos)

    async def _drive(self) -> None:
        step_ns = self.sim.step_ms * 1_000_000
        end = clock.monotonic_ns() + int(self.opts.days * DAY_NS)
        balance_every = int(self.opts.balance_every_s * 1e9)
        next_balance = clock.monotonic_ns() + balance_every
        t = start = clock.monotonic_ns()
        next_progress = start + 6 * 3600 * 10**9
        levels = self.opts.depth_levels
        replay = self.model if isinstance(self.model, ReplayMarket) else None
        while t + step_ns <= end and not (replay is not None and replay.exhausted):
            t += step_ns
            wait = t - clock.monotonic_ns()
            if wait > 0:
                await asyncio.sleep(wait / 1e9)
            now_ms = clock.time_ns() // 1_000_000
            for event in self.outages.due(now_ms):
                if event.kind == "rest_down":
                    self.clients[event.venue].down_until_ms = event.until_ms if event.starts else 0
            changed = self.model.step(now_ms)
            self.steps += 1
            if self.rebalancer is not None:
                self.rebalancer.sampler.tick(t)
            updates = []
            for venue, market in changed:
                book = self.model.state[(venue, market)].book
                updates.append(DepthUpdate(
                    venue=venue, market=market, bids=[(p, q) for p, q in book.bids[:levels]],
                    asks=[(p, q) for p, q in book.asks[:levels]], recv_mono=t))
            for d in self.feed(updates):
                if d.decision == "sent":
                    self._spawn(d, t)
            if self.opts.progress and t >= next_progress:
                next_progress += 6 * 3600 * 10**9
                print(f"backtest: {(t - start) / DAY_NS:.2f} simulated days, "
                      f"{time.perf_counter() - self.t0:.0f} s, {len(self.intents)} intents",
                      file=sys.stderr, flush=True)
            if t >= next_balance:
                next_balance += balance_every
                self._balance_point()

    def feed(self, updates: list[DepthUpdate]) -> list[Sized]:
        """One burst of books (a model step, or a recorded burst) → the decider, then every
        market it touched evaluated, as the live strategy does after a burst (on_batch). Returns
        the sized opportunities in order; the signals are recorded for the report."""
        seen: list[str] = []
        for msg in updates:
            self.decider.on_depth(msg)
            if msg.market not in seen:
                seen.append(msg.market)
        out: list[Sized] = []
        for market in seen:
            out += self._evaluate(market)
        return out

    def _evaluate(self, market: str) -> list[Sized]:
        sized = self.decider.evaluate(market)
        found = set()
        for d in sized:
            blocked = d.decision == "below_min_order" and d.opp.limited_by in ("krw", "coin", "volume")
            self.signals.append(SignalRecord(
                ts_ns=clock.time_ns(), market=d.market, buy_venue=d.buy_venue,
                sell_venue=d.sell_venue, gross_bps=d.opp.gross_bps, net_bps=d.opp.net_bps,
                decision=d.decision, inventory_blocked=blocked))
            found.add((d.buy_venue, d.sell_venue))
        # An edge at the touch that sized to nothing: no KRW, coin or inventory room for it.
        for buy in self.venues:
            for sell in self.venues:
                if buy == sell or (buy, sell) in found:
                    continue
                a, b = self.decider.depth.get((buy, market)), self.decider.depth.get((sell, market))
                if a is None or b is None or not a.asks or not b.bids:
                    continue
                net = edge_bps(a.asks[0][0], b.bids[0][0], self.fees[buy], self.fees[sell])
                if net >= self.sp.min_edge_bps:
                    # Under a skew-aware threshold the decider asked for more edge than this
                    # while there was inventory to take it: a choice that protects inventory,
                    # not inventory missing.
                    adj = self.decider.skew(market, buy, sell)
                    declined = False
                    if adj is not None and net < adj.threshold_bps:
                        caps = self.decider.caps(market, buy, sell, a.asks)
                        at_base = size_trade(a.asks, b.bids, self.fees[buy], self.fees[sell],
                                             self.sp.min_edge_bps, caps)
                        declined = at_base is not None and at_base.volume > 0
                    self.signals.append(SignalRecord(
                        ts_ns=clock.time_ns(), market=market, buy_venue=buy, sell_venue=sell,
                        gross_bps=(b.bids[0][0] - a.asks[0][0]) / a.asks[0][0] * 1e4,
                        net_bps=net, decision="skew_threshold" if declined else "no_size",
                        inventory_blocked=not declined))
        return sized

    def _spawn(self, d: Sized, recv_mono: int) -> None:
        self.decided[d.intent_id] = clock.monotonic_ns()
        intent = Intent(intent_id=d.intent_id, market=d.market, buy_venue=d.buy_venue,
                        sell_venue=d.sell_venue, volume=d.opp.volume, buy_limit=d.buy_limit,
                        sell_limit=d.sell_limit, net_bps=d.opp.net_bps, recv_mono=recv_mono,
                        ts_event=clock.time_ns(), ts_init=clock.time_ns())
        task = asyncio.create_task(self._intent(intent))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _intent(self, intent: Intent) -> None:
        lat = self.lat
        try:
            # The book reached us rtt/2 after the venue built it; we decided decision_ms later.
            await asyncio.sleep((lat.rtt_ms / 2 + lat.decision_ms) / 1000)
            accepted = self.ex.accept(intent)
            self.intents.append(IntentRecord(
                intent_id=intent.intent_id, ts_ns=clock.time_ns(), market=intent.market,
                buy_venue=intent.buy_venue, sell_venue=intent.sell_venue, volume=intent.volume,
                buy_limit=intent.buy_limit, sell_limit=intent.sell_limit, net_bps=intent.net_bps,
                accepted=accepted.ack.accepted))
            if not accepted.legs:
                self.decider.done(intent.intent_id)
                return
            await self.ex.run(intent, accepted.legs)
            self.record_legs(intent.intent_id)
        except Exception:
            self.crashes += 1
            log.exception("intent %s crashed the backtest's execution", intent.intent_id)

    def record_legs(self, intent_id: str) -> None:
        decided = self.decided.pop(intent_id, 0)
        for leg in self.journal.legs(intent_id):
            arrived = self.arrivals.pop(leg.client_id, 0)
            latency = (arrived - decided) / 1e6 + self.lat.rtt_ms / 2 if arrived else 0.0
            self.legs.append(LegRecord(
                intent_id=intent_id, role=cast(Role, leg.role), venue=leg.venue, market=leg.market,
                side="bid" if leg.side == "buy" else "ask", volume=leg.volume,
                executed_volume=leg.executed_volume, sent_ns=clock.time_ns(),
                latency_ms=latency))

    async def _refresh(self) -> None:
        """The execution actor's balance refresh and position publish (karb/actors/execution.py)."""
        while True:
            await asyncio.sleep(self.ep.balance_refresh_s)
            if not self.ex.open:
                await self.ex.refresh_balances()
            self.ex.publish_position()

    async def _reconcile(self) -> None:
        while True:
            await asyncio.sleep(self.opts.reconcile_every_s)
            try:
                await self.reconciler.sweep()
            except Exception:
                self.crashes += 1
                log.exception("reconciliation crashed")


def run_backtest(cfg: Config, opts: Options, workdir: Path) -> tuple[BacktestResults, dict[str, Any]]:
    """Run on a fresh virtual clock (installed as the process clock for the duration)."""
    start = first_book_ns(opts.data) if opts.data is not None else clock.DEFAULT_START_WALL_NS
    vclock = clock.VirtualClock(start_wall_ns=start)
    previous = clock.set_clock(vclock)
    bt = Backtest(cfg, opts, workdir)
    try:
        res = vclock.run(bt.main())
    finally:
        clock.set_clock(previous)
    model = bt.model
    stats = {"steps": bt.steps, "books_built": getattr(model, "built", 0),
             "books_skipped": getattr(model, "skipped", 0),
             "virtual_jumps": vclock.jumps, "venue_requests": sum(c.requests for c in bt.clients.values())}
    return res, stats
