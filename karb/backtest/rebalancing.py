"""The rebalancer inside a backtest: the live policy (:mod:`karb.execution.rebalance_policy`) and
transfer manager on the backtest's venues and virtual time.

What differs from live, and why:

- Transfers go through :mod:`karb.backtest.transfers` (the simulator's own transfer network,
  on virtual time) instead of HTTP.
- The KRW pair trade's children are given to the executor directly (``accept`` then ``run``),
  as the bus would: the same risk checks, journal, legs and hedging.
- Market states: the monitor samples every market's tops each ``sample_ms``; here the sampled
  mid is the model's fair value (reading every book every second would build books the lazy
  market model otherwise skips — most of a backtest's time), and the spread and top depth are
  read from the books when a state is asked for. Volatility, trend and ranging are judged on the
  fair mid's path, the illiquid rule on the books of that moment.
- Without addresses in ``rebalance.addresses`` the simulator's own deposit addresses are used
  and travel-rule receiver fields are filled in for transfers that need them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
from collections import deque
from typing import TYPE_CHECKING

from karb import clock
from karb.backtest.results import AlgoRecord, IntentRecord
from karb.backtest.results import TransferRecord as TransferRow
from karb.backtest.transfers import in_flight, sim_rebalance, transfer_clients
from karb.backtest.params import actor_params
from karb.config import Config
from karb.execution.algos.pair import ChildFill, MarketNow, child_fill
from karb.execution.rebalance import TransferManager
from karb.execution.rebalance_policy import Balances, RebalancePolicy, RebalancerParams
from karb.execution.tops import Quote
from karb.execution.transfer_journal import TransferJournal, TransferState
from karb.messages import Intent
from karb.ops.marketstate import MarketStateRules, Sample, classify
from karb.ops.monitor import MonitorParams

if TYPE_CHECKING:
    from karb.backtest.run import Backtest

log = logging.getLogger("karb.backtest")


def rebalancer_params(cfg: Config) -> RebalancerParams:
    return actor_params(cfg, "rebalancer", RebalancerParams)


def state_rules(cfg: Config) -> MarketStateRules:
    """The monitor actor's market-state rules (its ``market_state`` params)."""
    return actor_params(cfg, "monitor", MonitorParams).market_state


class StateSampler:
    """The market-state monitor's windows over the model's fair mids (see the module docstring)."""

    def __init__(self, bt: Backtest, rules: MarketStateRules) -> None:
        self.bt = bt
        self.rules = rules
        size = max(2, round(rules.window_s * 1000 / rules.sample_ms))
        self.mids: dict[str, deque[float]] = {m: deque(maxlen=size) for m in bt.markets}
        self.every_ns = rules.sample_ms * 1_000_000
        self.next_ns = 0

    def tick(self, mono_ns: int) -> None:
        if mono_ns < self.next_ns:
            return
        self.next_ns = mono_ns + self.every_ns
        fair = self.bt.model.fair
        for market, window in self.mids.items():
            mid = fair.get(market)  # a replay knows a market from its first recorded book on
            if mid is not None:
                window.append(mid)

    def state(self, market: str) -> MarketNow:
        """The state only: the model prints no trade stream the backtest could read, so the
        optimizer sizes against top-of-book depth and vwap slices evenly, as live before the
        monitor has seen trades."""
        quotes = [q for v in self.bt.venues if (q := self.bt.tops.quote(v, market)) is not None]
        if not quotes:
            return MarketNow()
        spread = max((q.ask - q.bid) / ((q.ask + q.bid) / 2) * 1e4 for q in quotes)
        depth = min(min(q.bid * q.bid_size, q.ask * q.ask_size) for q in quotes)
        samples = [Sample(m, spread, depth) for m in self.mids[market]]
        return MarketNow(str(classify(samples, self.rules).state))


class BacktestRebalancer:
    def __init__(self, bt: Backtest) -> None:
        self.bt = bt
        cfg = bt.cfg
        self.params = rebalancer_params(cfg)
        self.sampler = StateSampler(bt, state_rules(cfg))
        self.clients = transfer_clients(bt.sim, bt.clients)
        self.network = self.clients[bt.venues[0]].net
        self.access_key = next(iter(bt.accounts.values())).access_key
        coins = [m.split("-", 1)[1] for m in bt.markets]
        self.rebalance = sim_rebalance(cfg.rebalance, coins, bt.venues, self.access_key)
        self.journal = TransferJournal(bt.workdir / "journal.sqlite")
        self.manager = TransferManager(self.journal, self.clients, self.rebalance, self._alert,
                                       self.params.settle_s)
        ids = itertools.count(1)
        self.policy = RebalancePolicy(self.rebalance, self.params, bt.venues, bt.markets, bt.fees,
                                      self.manager, self._balances, self._quote,
                                      self.sampler.state, self._child,
                                      lambda: f"r{next(ids):020d}")
        self.policy.keep = 10**9
        self.alerts: list[str] = []

    def _balances(self) -> Balances | None:
        pos = self.bt.position
        return None if pos is None else pos.balances

    def _quote(self, venue: str, market: str) -> Quote | None:
        return self.bt.tops.quote(venue, market)

    def _alert(self, level: str, coin: str, text: str, kind: str) -> None:
        self.alerts.append(f"{level} {kind} {coin}: {text}")
        log.warning("rebalancer %s %s: %s", level, kind, text)

    async def _child(self, intent: Intent) -> ChildFill:
        bt = self.bt
        accepted = bt.ex.accept(intent)
        bt.intents.append(IntentRecord(
            intent_id=intent.intent_id, ts_ns=clock.time_ns(), market=intent.market,
            buy_venue=intent.buy_venue, sell_venue=intent.sell_venue, volume=intent.volume,
            buy_limit=intent.buy_limit, sell_limit=intent.sell_limit, net_bps=intent.net_bps,
            accepted=accepted.ack.accepted, purpose="rebalance"))
        if not accepted.legs:
            return ChildFill(False, reason=accepted.ack.reason)
        bt.decided[intent.intent_id] = clock.monotonic_ns()
        await bt.ex.run(intent, accepted.legs)
        bt.record_legs(intent.intent_id)
        legs = bt.journal.legs(intent.intent_id)
        fill = child_fill([(leg.venue, leg.side, leg.executed_volume, leg.executed_funds,
                            leg.fee) for leg in legs], intent.buy_venue, intent.sell_venue)
        if any(not leg.final for leg in legs):  # left to reconciliation: the algorithm stops
            return dataclasses.replace(fill, reason="still open", final=False)
        return fill

    async def run(self) -> None:
        """The actor's loop: follow transfers, then one policy check."""
        every = self.params.check_interval_ms / 1000
        while True:
            await asyncio.sleep(every)
            try:
                await self.manager.advance()
                await self.policy.check_once()
            except Exception:
                self.bt.crashes += 1
                log.exception("the backtest's rebalancer crashed")

    async def stop(self) -> None:
        """The run is over: the KRW trade stops after its current child (its legs and hedges
        bounded by the leg deadlines), so no position is left open by the stop itself."""
        await self.policy.stop(wait_s=120.0)

    def in_flight(self) -> dict[str, dict[str, float]]:
        """Destination venue → coin → amount withdrawn and not yet credited (in no balance)."""
        return in_flight(self.network, self.access_key)

    # -- results ----------------------------------------------------------------------------------

    def transfers(self) -> list[TransferRow]:
        marks = self.bt.model.fair
        return [TransferRow(
            transfer_id=t.transfer_id, coin=t.coin, from_venue=t.from_venue, to_venue=t.to_venue,
            amount=t.amount, fee=t.fee, fee_krw=t.fee * marks.get(f"KRW-{t.coin}", 0.0),
            requested_ns=t.requested_ns,
            credited_ns=t.updated_ns if t.state == TransferState.CREDITED else 0,
            state=str(t.state), purpose=t.purpose) for t in self.journal.all()]

    def algos(self) -> list[AlgoRecord]:
        return [AlgoRecord(
            algo_id=r.algo_id, algo=r.algo, state=r.state_at_arrival,
            source=self.policy.sources.get(r.algo_id, "rules"), market=r.market,
            buy_venue=r.buy_venue, sell_venue=r.sell_venue, started_ns=r.started_ns,
            duration_s=r.duration_s, volume=r.volume, filled=r.filled, children=r.children,
            arrival_mid=r.arrival_mid, arrival_premium=r.arrival_premium, cost_krw=r.cost_krw,
            shortfall_bps=r.shortfall_bps) for r in self.policy.results]
