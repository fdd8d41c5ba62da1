"""What the rebalancer decides, apart from how it talks to the rest (the ``rebalancer`` actor live,
the backtester on virtual time run the same code).

Every check (:meth:`RebalancePolicy.check_once`): each coin's skew from the free balances after
reservations (execution's ``pos``) plus coin in transit, and the KRW skew. A coin out of band for
``rebalance.out_of_band_s`` without pause (no transfer of it open meanwhile) is moved from its
heavy venue to its light one, the amount chosen to bring the light one back to target
(:class:`~karb.execution.rebalance.TransferManager`: journal first, asked once, followed).

KRW cannot move between the venues quickly: a KRW skew held ``out_of_band_s`` is fixed (when
``krw_trade_krw`` > 0) by buying coin on the KRW-heavy venue and selling it on the other *at
the same time*: a hedged pair trade run by an execution algorithm
(:mod:`karb.execution.algos.pair`: every child is an intent through execution's risk checks,
journal and hedging) chosen by the optimizer from the market state and the measured quality per
algorithm and state. The market is the cheapest all in: the trade's own cost (spread at the
touch plus both fees), the withdrawal fee of sending the bought coin back, and the time it is in
flight (``confirm_s`` per coin at ``confirm_bps_per_hour``: coin in flight cannot be traded).
When the algorithm ends, the coin it left on the buy venue is sent back to the venue it was sold
on (purpose ``krw``). The pending send-back is held in memory: after a restart in between, the
coin's own skew moves it instead.

``out_of_band_s`` should exceed execution's ``balance_refresh_s`` (``pos`` is that old at most):
a skew is judged on balances that already show the last transfer's credit.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import msgspec

from karb import clock
from karb.config import RebalanceConfig
from karb.exchanges.errors import VenueError
from karb.execution.algos import make_algo
from karb.execution.algos.optimizer import AlgoOptimizer, OptimizerConfig, size_basis
from karb.execution.algos.pair import (
    IntentSink,
    PairAlgoRunner,
    PairOrder,
    PairResult,
    QuoteView,
    StateView,
)
from karb.execution.rebalance import TransferManager, floor_amount
from karb.execution.transfer_journal import TransferRecord
from karb.trading import skew

log = logging.getLogger("karb.rebalancer")

Balances = dict[str, dict[str, float]]  # venue → currency → free after reservations
CHANCE_TTL_S = 3600.0  # withdrawal fees change rarely: asked once an hour per coin at most
RESULTS_KEPT = 1000


class RebalancerParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    execution: str = "execution"  # the actor whose pos we read and who takes KRW intents
    check_interval_ms: int = 500
    # A withdrawal whose answer was lost is "never sent" when not found this long after.
    settle_s: float = 10.0
    # KRW skew: a hedged pair trade of up to this notional (0: off), each child costing at most
    # krw_max_cost_bps (spread at the touch, the children's aggression and both fees).
    krw_trade_krw: float = 0.0
    krw_max_cost_bps: float = 30.0
    krw_child_krw: float = 2_000_000.0  # per child intent: at most execution's notional cap
    krw_algo: str = "auto"  # auto (the optimizer) or one of karb.execution.algos.ALGOS
    krw_horizon_s: float = 120.0
    krw_slice_s: float = 10.0
    krw_urgency: float = 0.3
    krw_cross_bps: float = 3.0
    # Choosing the coin of a KRW trade: expected withdrawal-to-credit time per coin (guess
    # when not measured) and what an hour in flight costs, bps of the amount.
    confirm_s: dict[str, float] = {}
    confirm_bps_per_hour: float = 1.0
    optimizer: OptimizerConfig = msgspec.field(default_factory=OptimizerConfig)
    request_timeout_ms: int = 2000

    def __post_init__(self) -> None:
        if self.krw_trade_krw < 0 or self.krw_child_krw <= 0 or self.krw_horizon_s <= 0 \
                or self.krw_slice_s <= 0:
            raise ValueError("krw_trade_krw must be 0 or more; krw_child_krw, krw_horizon_s and "
                             "krw_slice_s positive")
        if self.krw_algo != "auto":
            make_algo(self.krw_algo)  # ValueError names the known ones


class RebalancePolicy:
    def __init__(self, cfg: RebalanceConfig, params: RebalancerParams, venues: list[str],
                 markets: list[str], fees: dict[str, float], manager: TransferManager,
                 position: Callable[[], Balances | None], quotes: QuoteView, states: StateView,
                 sink: IntentSink, new_id: Callable[[], str]) -> None:
        self.cfg = cfg
        self.params = params
        self.venues = venues
        self.markets = markets
        self.coins = [m.split("-", 1)[1] for m in markets]
        self.fees = fees
        self.manager = manager
        self.position = position
        self.quotes = quotes
        self.states = states
        self.new_id = new_id
        self.pairs = PairAlgoRunner(sink, quotes, states, fees, new_id)
        self.optimizer = AlgoOptimizer(params.optimizer)
        self.since: dict[str, float] = {}  # currency → monotonic s it went out of band
        self.skews: dict[str, skew.Skew] = {}
        self.last_note: dict[str, str] = {}  # currency → what was done or why not
        self.krw_task: asyncio.Task[None] | None = None
        self.results: list[PairResult] = []  # finished KRW trades, newest last
        self.keep = RESULTS_KEPT  # how many (a backtest keeps them all for its report)
        self.sources: dict[str, str] = {}  # algo id → the optimizer's choice source
        self.krw_trades = 0
        self._chances: dict[tuple[str, str], tuple[float, float]] = {}  # → (fee, asked at)

    # -- deciding ---------------------------------------------------------------------------------

    def compute(self, opened: list[TransferRecord] | None = None) -> dict[str, skew.Skew]:
        pos = self.position()
        if pos is None:
            return {}
        transit = self.manager.in_transit(opened)
        out = {}
        for coin in self.coins:
            free: dict[str, float] = {v: pos.get(v, {}).get(coin, 0.0) for v in self.venues}
            out[coin] = skew.coin_skew(self.cfg, coin, skew.usable(free, in_transit=transit.get(coin)),
                                       self.venues)
        krw: dict[str, float] = {v: pos.get(v, {}).get("KRW", 0.0) for v in self.venues}
        out["KRW"] = skew.krw_skew(self.cfg, krw, self.venues)
        return out

    async def check_once(self) -> None:
        opened = self.manager.open()  # one journal read per check, not one per coin
        moving = {t.coin for t in opened}
        self.skews = self.compute(opened)
        now = clock.monotonic()
        for currency, s in self.skews.items():
            busy = self.krw_busy if currency == "KRW" else currency in moving
            if not s.out_of_band or busy:
                self.since.pop(currency, None)
                continue
            since = self.since.setdefault(currency, now)
            if now - since < self.cfg.out_of_band_s:
                continue
            self.since.pop(currency, None)  # acted (or noted why not): the clock starts again
            if currency == "KRW":
                await self._fix_krw(s)
            else:
                await self._transfer(currency, s)

    @property
    def krw_busy(self) -> bool:
        return self.krw_task is not None and not self.krw_task.done()

    async def _transfer(self, coin: str, s: skew.Skew) -> None:
        try:
            amount, fee, why = await self.manager.plan(coin, s)
        except VenueError as exc:  # a venue down or refusing: asked again next time out of band
            self.last_note[coin] = f"withdraw_chance on {s.heavy} failed: {exc}"
            log.warning("%s out of band but %s", coin, self.last_note[coin])
            return
        if why:
            self.last_note[coin] = why
            log.warning("%s out of band (%.0f %% off target) but not moved: %s", coin,
                        s.worst * 100, why)
            return
        rec = await self.manager.start(coin, s.heavy, s.light, amount, fee)
        self.last_note[coin] = (f"transfer {rec.transfer_id} {rec.state}" if rec is not None
                                else "no transfer started (address missing or one open)")

    # -- KRW ----------------------------------------------------------------------------------------

    async def _withdraw_fee(self, venue: str, coin: str) -> float | None:
        known = self._chances.get((venue, coin))
        now = clock.monotonic()
        if known is not None and now - known[1] < CHANCE_TTL_S:
            return known[0]
        try:
            chance = await self.manager.clients[venue].withdraw_chance(coin)
        except VenueError as exc:  # this coin is not a candidate now
            log.info("withdraw_chance %s on %s: %s", coin, venue, exc)
            return None
        if not chance.can_withdraw:
            return None
        self._chances[(venue, coin)] = (chance.fee, now)
        return chance.fee

    async def choose_market(self, buy: str, sell: str, notional: float
                            ) -> tuple[float, str, str] | None:
        """(all-in cost bps, market, why) of the cheapest coin to swap KRW with, or None."""
        best: tuple[float, str, str] | None = None
        for market, coin in zip(self.markets, self.coins):
            qb, qs = self.quotes(buy, market), self.quotes(sell, market)
            if qb is None or qs is None or self.manager.open_for(coin) is not None:
                continue
            ref = (qb.ask + qs.bid) / 2
            trade = (qb.ask - qs.bid) / ref * 1e4 + (self.fees[buy] + self.fees[sell]) * 1e4
            fee = await self._withdraw_fee(buy, coin)
            if fee is None:
                continue
            send = fee * qb.ask / notional * 1e4 if notional > 0 else 0.0
            flight = self.params.confirm_s.get(coin, 0.0) / 3600 * self.params.confirm_bps_per_hour
            cost = trade + send + flight
            if best is None or cost < best[0]:
                best = (cost, market, f"{trade:.1f} bps trade + {send:.1f} bps withdrawal fee + "
                                      f"{flight:.1f} bps in flight")
        return best

    async def _fix_krw(self, s: skew.Skew) -> None:
        p = self.params
        if p.krw_trade_krw <= 0:
            self.last_note["KRW"] = "out of band; krw_trade_krw is 0 (KRW rebalancing off)"
            return
        buy, sell = s.heavy, s.light
        notional = min(p.krw_trade_krw, s.to_target(buy))
        best = await self.choose_market(buy, sell, notional)
        if best is None:
            self.last_note["KRW"] = "no market with prices and a withdrawable coin"
            return
        cost, market, why = best
        if cost > p.krw_max_cost_bps:
            self.last_note["KRW"] = f"cheapest {market} costs {cost:.1f} bps > krw_max_cost_bps"
            return
        qb = self.quotes(buy, market)
        if qb is None:
            return
        volume = float(f"{notional / qb.ask:.6f}")
        m = self.states(market)
        order = PairOrder(market, buy, sell, volume, p.krw_max_cost_bps, p.krw_child_krw,
                          p.krw_horizon_s, p.krw_slice_s, p.krw_urgency, p.krw_cross_bps)
        if p.krw_algo == "auto":
            # Size against both venues' recent traded volume (the monitor's, from the trade
            # streams); the buy venue's touch depth before there is any, as execution's
            # ``algo auto`` does.
            basis = size_basis(m.recent_volume, m.volume_profile, qb.ask_size + qb.bid_size,
                               max(1, round(order.horizon_s / order.slice_s)))
            choice = self.optimizer.choose(m.state, volume, basis.recent_volume,
                                           p.krw_urgency, has_profile=basis.has_profile)
            name, source = str(choice.algo), choice.source
        else:
            name, source = p.krw_algo, "config"
        algo_id = self.new_id()
        self.sources[algo_id] = source
        self.krw_trades += 1
        self.last_note["KRW"] = (f"{name} ({source}) {algo_id}: buy {volume:g} {market} on {buy}, "
                                 f"sell on {sell}; all-in {cost:.1f} bps ({why})")
        log.info("KRW rebalancing: %s", self.last_note["KRW"])
        self.krw_task = asyncio.create_task(self._run_pair(name, order, algo_id))

    async def _run_pair(self, name: str, order: PairOrder, algo_id: str) -> None:
        try:
            result = await self.pairs.run(make_algo(name), order, algo_id)
            if result is None:
                self.last_note["KRW"] = f"{algo_id}: no quotes at arrival"
                return
            self.results.append(result)
            del self.results[:-self.keep]
            self.optimizer.record(result)  # unfilled runs too: their fill rate is measured
            await self._send_back(result)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("KRW rebalancing %s crashed; its children are execution's", algo_id)

    async def _send_back(self, r: PairResult) -> None:
        """The coin the trade left on the buy venue goes to the venue it was sold on."""
        coin = r.market.split("-", 1)[1]
        if r.net_bought <= 0 or self.manager.open_for(coin) is not None:
            self.last_note["KRW"] = (f"{r.algo_id} {r.algo}: {r.filled:g} hedged, "
                                     "nothing to send back (or a transfer of it is open)")
            return
        try:
            chance = await self.manager.clients[r.buy_venue].withdraw_chance(coin)
        except VenueError as exc:  # left to the coin's own skew
            self.last_note["KRW"] = f"{r.algo_id}: no send-back ({exc}); left to the skew"
            return
        if not chance.can_withdraw:
            self.last_note["KRW"] = f"{r.buy_venue} does not allow {coin} withdrawals now: left to the skew"
            return
        amount = floor_amount(min(r.net_bought, chance.free - chance.fee))
        if amount < chance.minimum or amount <= 0:
            self.last_note["KRW"] = f"{r.net_bought:g} {coin} under {r.buy_venue}'s minimum: left to the skew"
            return
        rec = await self.manager.start(coin, r.buy_venue, r.sell_venue, amount, chance.fee,
                                       purpose="krw")
        self.last_note["KRW"] = (f"{r.algo_id} {r.algo} done ({r.filled:g} hedged, shortfall "
                                 f"{r.shortfall_bps:.1f} bps); transfer "
                                 f"{rec.transfer_id if rec else 'not started'}")

    async def stop(self, wait_s: float = 0.0) -> None:
        """Stop the KRW trade after its current child (``wait_s`` for it; then cancel: its
        children in flight are execution's, journaled and recovered like any intent)."""
        self.pairs.stopping = True
        task = self.krw_task
        if task is None or task.done():
            return
        if wait_s > 0:
            await asyncio.wait([task], timeout=wait_s)
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    # -- visible ------------------------------------------------------------------------------------

    def report(self) -> dict[str, Any]:
        now = clock.monotonic()
        running = [{"id": i, "algo": name, "market": o.market, "buy": o.buy_venue,
                    "sell": o.sell_venue, "volume": o.volume, "filled": pr.filled,
                    "children": pr.children} for i, (name, o, pr) in self.pairs.running.items()]
        return {
            "skew": {c: {"amounts": s.amounts, "shares": s.shares, "targets": s.targets,
                         "band": s.band, "out_of_band": s.out_of_band,
                         "out_for_s": round(now - self.since[c], 1) if c in self.since else 0.0}
                     for c, s in self.skews.items()},
            "transfers": [{"id": t.transfer_id, "coin": t.coin, "from": t.from_venue,
                           "to": t.to_venue, "amount": t.amount, "state": str(t.state),
                           "age_s": round((clock.time_ns() - t.requested_ns) / 1e9, 1),
                           "stuck": bool(t.alerted)} for t in self.manager.open()],
            "algos": running,
            "quality": {state: {a: {"n": q.samples, "shortfall_bps": round(q.shortfall_bps, 2),
                                    "fill_rate": round(q.fill_rate, 4)} for a, q in row.items()}
                        for state, row in self.optimizer.table().items()},
            "counts": {"sent": self.manager.sent, "credited": self.manager.credited,
                       "failed": self.manager.failed, "krw_trades": self.krw_trades},
            "notes": self.last_note,
        }
