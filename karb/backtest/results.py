"""What a backtest produced, and the figures derived from it (``summary.json``).

The backtester fills a :class:`BacktestResults` as it runs: intents (accepted or not), every
leg with its latency and outcome, every fill with its fee, every signal with its edge, the
balances per venue over time, halts and crashes. :func:`summarise` derives the summary, and
:mod:`karb.backtest.report` draws it. All money is KRW; all times are integer ns of the
backtest's (virtual) wall clock.

Definitions (each summary key):

Intents have a purpose: ``arb`` (the strategy's) or ``rebalance`` (a child of a KRW-rebalancing
algorithm: a hedged buy on the KRW-heavy venue and sell on the light one). Trading figures
(``intents``, ``round_trips``, ``order_success_rate``, ``hedges``, ``hedge_cost_krw``,
``arb_volume_krw``, the per-market table) count only *arb* intents' legs and fills; money
figures (``pnl_krw``, ``gross_krw``, ``fees_krw``, drawdown, Sharpe) count every fill, because
rebalancing trades cost real money, and subtract transfer fees.

- ``pnl_krw``: sells minus buys over every fill (hedges and rebalancing trades included), minus
  ``fees_krw``, minus ``transfer_fees_krw``, plus the coin left over (bought minus sold, per
  market) at ``final_marks`` (the last fill price when a market has no mark): PnL = fills - fees
  - transfer fees, marked to market. Coin in transit is in the leftover (a transfer moves coin,
  it does not buy or sell it), so it is valued like coin on a venue.
- ``round_trips``: arb intents whose buy and sell legs both filled in full (to 1e-9 coin).
- ``order_success_rate``: arb buy/sell legs (not hedges) that filled in full, over those sent.
- ``max_drawdown_krw`` / ``_pct``: the largest fall of cumulative PnL from its running peak;
  the percentage is of equity at that peak (``start_equity_krw`` + peak PnL).
- ``sharpe_daily``: mean over std of daily PnL / start equity, times sqrt(365) (annualised from
  days; crypto trades every day). None with fewer than two days or no variation.
- ``hedge_cost_krw``: per arb hedge fill, what it paid beyond the intent's limit for that side
  (buy: price - buy_limit; sell: sell_limit - price) times its volume, plus its fee.
- ``inventory_blocked_s``: per market, the time from a signal that found an edge but no
  inventory to take it until that market's next signal, capped at ``blocked_cap_s`` each;
  ``inventory_blocked_pct``: that over the run's length, %.
- ``halts`` / ``halted_s``: markets halted (execution fails closed: a leg unresolved by its
  deadline, a hedge that could not be placed) and the market-seconds they stayed halted; the
  backtest's operator unhalts a market ``Options.operator_unhalt_s`` after its halt once
  nothing of it is open (live: the ``unhalt`` command).
- ``min_balance_krw``: the lowest KRW balance of any venue at any balance point;
  ``negative_balance_events``: balance points with any currency below zero on any venue.
- ``arb_volume_krw``: the sum of |price x volume| over arb intents' fills (every role).
- ``transfers`` / ``transfers_credited``: coin transfers started / credited by the end.
- ``transfer_fees_krw``: the withdrawal fees at the coin's mark when requested, of transfers
  that left (every state but NOT_SENT and FAILED).
- ``rebalance_trades``: KRW-rebalancing trades (one per execution algorithm run);
  ``rebalance_trade_cost_krw``: over rebalance intents' fills, buys - sells + fees, less any
  coin they left over at the final marks: what those trades lost.
- ``rebalancing_cost_krw``: ``transfer_fees_krw`` + ``rebalance_trade_cost_krw``;
  ``rebalancing_cost_bps``: it in bps of ``arb_volume_krw`` (None without arb volume).
- ``coin_in_transit_krw``: coin of transfers neither credited nor failed at the end, at the
  final marks (already inside ``pnl_krw``; shown because it sits on no venue).
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from typing import Literal

import msgspec

Role = Literal["buy", "sell", "hedge"]
Side = Literal["bid", "ask"]
DAY_NS = 86_400 * 10**9
EPS_COIN = 1e-9


class _Rec(msgspec.Struct, frozen=True, kw_only=True):
    pass


class IntentRecord(_Rec, frozen=True):
    intent_id: str
    ts_ns: int
    market: str
    buy_venue: str
    sell_venue: str
    volume: float
    buy_limit: float
    sell_limit: float
    net_bps: float
    accepted: bool
    purpose: str = "arb"  # "arb" | "rebalance" (a child of a KRW-rebalancing algorithm)


class LegRecord(_Rec, frozen=True):
    intent_id: str
    role: Role
    venue: str
    market: str
    side: Side
    volume: float  # asked for
    executed_volume: float
    sent_ns: int
    latency_ms: float  # our decision to the venue's answer: what a competitor races


class FillRecord(_Rec, frozen=True):
    intent_id: str
    role: Role
    ts_ns: int
    venue: str
    market: str
    side: Side
    price: float
    volume: float
    fee_krw: float


class SignalRecord(_Rec, frozen=True):
    ts_ns: int
    market: str
    buy_venue: str
    sell_venue: str
    gross_bps: float
    net_bps: float
    decision: str
    inventory_blocked: bool = False  # an edge, but no coin or KRW where it was needed


class BalancePoint(_Rec, frozen=True):
    ts_ns: int
    balances: dict[str, dict[str, float]]  # venue -> currency -> total (free + locked)


class TransferRecord(_Rec, frozen=True):
    """One coin transfer the rebalancer started (karb.execution.rebalance.TransferManager)."""

    transfer_id: str
    coin: str
    from_venue: str
    to_venue: str
    amount: float
    fee: float  # coin, paid by the sending venue on top of the amount
    fee_krw: float  # the fee at the coin's mark when requested
    requested_ns: int
    credited_ns: int  # 0: not credited by the end of the run
    state: str  # the TransferState at the end of the run
    purpose: str  # "coin" (a coin's skew) | "krw" (the send-back after a KRW rebalancing trade)


class AlgoRecord(_Rec, frozen=True):
    """One KRW-rebalancing trade carried out by an execution algorithm: children are hedged
    intents (buy on the KRW-heavy venue, sell on the light one, at once)."""

    algo_id: str
    algo: str  # market | limit | twap | vwap | iceberg | adaptive
    state: str  # market state at arrival (karb.ops.marketstate)
    source: str  # the optimizer's reason kind: rules | measured | explore
    market: str
    buy_venue: str
    sell_venue: str
    started_ns: int
    duration_s: float
    volume: float  # asked for
    filled: float  # hedged volume (both sides filled)
    children: int
    arrival_mid: float  # mean of the two venues' mids at arrival
    arrival_premium: float  # buy venue's mid - sell venue's mid at arrival, KRW per coin
    cost_krw: float  # bought - sold + fees over the children's fills: what the trade cost
    shortfall_bps: float  # cost against the arrival premium, bps of the arrival mid per coin


class HaltRecord(_Rec, frozen=True):
    ts_ns: int
    market: str
    reason: str
    unhalted_ns: int = 0  # when the backtest's operator unhalted it (0: halted to the end)


class BacktestResults(_Rec, frozen=True):
    started_ns: int
    ended_ns: int
    wall_s: float
    markets: list[str]
    fee_bps: dict[str, float]  # venue -> taker fee, bps
    start_equity_krw: float
    intents: list[IntentRecord] = []
    legs: list[LegRecord] = []
    fills: list[FillRecord] = []
    signals: list[SignalRecord] = []
    balances: list[BalancePoint] = []
    halts: list[HaltRecord] = []
    final_marks: dict[str, float] = {}  # market -> price to value leftover coin
    crashes: int = 0
    blocked_cap_s: float = 1.0
    rebalancing: bool = False  # the skew-aware thresholds and the rebalancer ran
    transfers: list[TransferRecord] = []
    algos: list[AlgoRecord] = []


def signed_notional(fill: FillRecord) -> float:
    """KRW the fill brought in: + for a sale, - for a purchase (fees apart)."""
    return fill.price * fill.volume if fill.side == "ask" else -fill.price * fill.volume


# A transfer in these end states never left the venue: no fee paid (NOT_SENT: the venue never
# had it; FAILED: the venue refused or returned it, fee included).
UNSENT_STATES = frozenset({"NOT_SENT", "FAILED"})


def paid_transfers(res: BacktestResults) -> list[TransferRecord]:
    return [t for t in res.transfers if t.state not in UNSENT_STATES]


def purposes(res: BacktestResults) -> dict[str, str]:
    """intent_id -> purpose; an intent the results do not list counts as arb."""
    return {i.intent_id: i.purpose for i in res.intents}


def is_arb(intent_id: str, of: dict[str, str]) -> bool:
    return of.get(intent_id, "arb") != "rebalance"


def pnl_curve(res: BacktestResults) -> list[tuple[int, float]]:
    """Cumulative PnL after each fill or transfer: fills net of fees, minus transfer fees,
    leftover coin at its market's last fill price."""
    cash = 0.0
    coin: dict[str, float] = defaultdict(float)
    mark: dict[str, float] = {}
    curve = [(res.started_ns, 0.0)]
    events: list[tuple[int, FillRecord | TransferRecord]] = [(f.ts_ns, f) for f in res.fills]
    events += [(t.requested_ns, t) for t in paid_transfers(res)]
    for ts, ev in sorted(events, key=lambda e: e[0]):
        if isinstance(ev, TransferRecord):
            cash -= ev.fee_krw
        else:
            cash += signed_notional(ev) - ev.fee_krw
            coin[ev.market] += ev.volume if ev.side == "bid" else -ev.volume
            mark[ev.market] = ev.price
        curve.append((ts, cash + sum(q * mark[m] for m, q in coin.items())))
    return curve


def drawdowns(curve: list[tuple[int, float]], start_equity: float) -> tuple[list[float], float, float]:
    """Drawdown at each point of the curve, the largest in KRW, and it as % of peak equity."""
    peak, worst, worst_pct, out = -math.inf, 0.0, 0.0, []
    for _, pnl in curve:
        peak = max(peak, pnl)
        dd = peak - pnl
        out.append(dd)
        if dd > worst:
            worst = dd
            worst_pct = 100 * dd / (start_equity + peak) if start_equity + peak > 0 else 0.0
    return out, worst, worst_pct


def _full(leg: LegRecord) -> bool:
    return leg.executed_volume >= leg.volume - EPS_COIN


def _marks(res: BacktestResults) -> dict[str, float]:
    """market -> price to value coin at the end: final_marks, else the last fill price."""
    last_px = {f.market: f.price for f in sorted(res.fills, key=lambda f: f.ts_ns)}
    return {**last_px, **res.final_marks}


def _leftover(fills: list[FillRecord]) -> dict[str, float]:
    left: dict[str, float] = defaultdict(float)
    for f in fills:
        left[f.market] += f.volume if f.side == "bid" else -f.volume
    return left


Summary = dict[str, float | int | list[str] | None]


def summarise(res: BacktestResults) -> Summary:
    fills = res.fills
    of = purposes(res)
    arb_fills = [f for f in fills if is_arb(f.intent_id, of)]
    arb_legs = [leg for leg in res.legs if is_arb(leg.intent_id, of)]
    marks = _marks(res)
    gross = sum(signed_notional(f) for f in fills)
    fees = sum(f.fee_krw for f in fills)
    marked = sum(q * marks.get(m, 0.0) for m, q in _leftover(fills).items())
    curve = pnl_curve(res)
    _, dd_krw, dd_pct = drawdowns(curve, res.start_equity_krw)

    legs_by_intent: dict[str, dict[str, LegRecord]] = defaultdict(dict)
    for leg in arb_legs:
        if leg.role != "hedge":
            legs_by_intent[leg.intent_id][leg.role] = leg
    accepted = [i for i in res.intents if i.accepted and i.purpose != "rebalance"]
    round_trips = sum(1 for i in accepted
                      if all(r in legs_by_intent[i.intent_id] and _full(legs_by_intent[i.intent_id][r])
                             for r in ("buy", "sell")))
    main_legs = [leg for leg in arb_legs if leg.role != "hedge"]
    success = (sum(_full(leg) for leg in main_legs) / len(main_legs)) if main_legs else None

    limits = {i.intent_id: i for i in res.intents}
    hedge_cost = 0.0
    for f in arb_fills:
        if f.role != "hedge":
            continue
        intent = limits.get(f.intent_id)
        if intent is not None:
            worse = f.price - intent.buy_limit if f.side == "bid" else intent.sell_limit - f.price
            hedge_cost += worse * f.volume
        hedge_cost += f.fee_krw

    days = (res.ended_ns - res.started_ns) / DAY_NS
    daily: dict[int, float] = defaultdict(float)
    prev = 0.0
    for ts, pnl in curve[1:]:
        daily[(ts - res.started_ns) // DAY_NS] += pnl - prev
        prev = pnl
    n_days = max(1, math.ceil(days))
    returns = [daily.get(d, 0.0) / res.start_equity_krw for d in range(n_days)]
    sharpe = None
    if len(returns) >= 2 and statistics.pstdev(returns) > 0:
        sharpe = round(statistics.mean(returns) / statistics.pstdev(returns) * math.sqrt(365), 3)

    krw = [b.get("KRW", 0.0) for p in res.balances for b in p.balances.values()]
    negative = sum(1 for p in res.balances
                   if any(v < -EPS_COIN for b in p.balances.values() for v in b.values()))
    blocked_s = inventory_blocked_s(res)
    run_s = (res.ended_ns - res.started_ns) / 1e9
    reb = rebalancing_figures(res, arb_fills, marks)
    transfer_fees = sum(t.fee_krw for t in paid_transfers(res))
    return {
        "simulated_days": round(days, 4),
        "wall_s": round(res.wall_s, 3),
        "speedup": round(days * 86_400 / res.wall_s, 1) if res.wall_s > 0 else None,
        "markets": list(res.markets),
        "rebalancing": res.rebalancing,
        "intents": len(accepted),
        "round_trips": round_trips,
        "order_success_rate": round(success, 4) if success is not None else None,
        "gross_krw": round(gross, 2),
        "pnl_krw": round(gross - fees + marked - transfer_fees, 2),
        "fees_krw": round(fees, 2),
        "leftover_value_krw": round(marked, 2),
        "max_drawdown_krw": round(dd_krw, 2),
        "max_drawdown_pct": round(dd_pct, 6),
        "sharpe_daily": sharpe,
        "hedges": sum(1 for leg in arb_legs if leg.role == "hedge"),
        "hedge_cost_krw": round(hedge_cost, 2),
        "halts": len(res.halts),
        "halted_s": round(halted_s(res), 1),
        "min_balance_krw": round(min(krw), 2) if krw else None,
        "negative_balance_events": negative,
        "inventory_blocked_s": round(blocked_s, 3),
        "inventory_blocked_pct": round(100 * blocked_s / run_s, 6) if run_s > 0 else None,
        "crashes": res.crashes,
        **reb,
    }


def rebalancing_figures(res: BacktestResults, arb_fills: list[FillRecord],
                        marks: dict[str, float]) -> dict[str, float | int | None]:
    """The rebalancing keys of the summary (definitions in the module docstring)."""
    of = purposes(res)
    reb_fills = [f for f in res.fills if not is_arb(f.intent_id, of)]
    arb_volume = sum((abs(f.price * f.volume) for f in arb_fills), 0.0)
    transfer_fees = sum((t.fee_krw for t in paid_transfers(res)), 0.0)
    trade_cost = sum((-signed_notional(f) + f.fee_krw for f in reb_fills), 0.0)
    trade_cost -= sum(q * marks.get(m, 0.0) for m, q in _leftover(reb_fills).items())
    cost = transfer_fees + trade_cost
    in_transit = sum((t.amount * marks.get(f"KRW-{t.coin}", 0.0) for t in res.transfers
                     if t.credited_ns == 0 and t.state not in UNSENT_STATES | {"CREDITED"}), 0.0)
    return {
        "arb_volume_krw": round(arb_volume, 2),
        "transfers": len(res.transfers),
        "transfers_credited": sum(1 for t in res.transfers
                                  if t.credited_ns > 0 or t.state == "CREDITED"),
        "transfer_fees_krw": round(transfer_fees, 2),
        "rebalance_trades": len(res.algos),
        "rebalance_trade_cost_krw": round(trade_cost, 2),
        "rebalancing_cost_krw": round(cost, 2),
        "rebalancing_cost_bps": round(1e4 * cost / arb_volume, 4) if arb_volume > 0 else None,
        "coin_in_transit_krw": round(in_transit, 2),
    }


def inventory_blocked_s(res: BacktestResults) -> float:
    by_market: dict[str, list[SignalRecord]] = defaultdict(list)
    for s in res.signals:
        by_market[s.market].append(s)
    total_ns = 0
    cap_ns = int(res.blocked_cap_s * 1e9)
    for signals in by_market.values():
        signals.sort(key=lambda s: s.ts_ns)
        for s, nxt in zip(signals, signals[1:] + [None]):
            if s.inventory_blocked:
                end = nxt.ts_ns if nxt is not None else res.ended_ns
                total_ns += min(cap_ns, max(0, end - s.ts_ns))
    return total_ns / 1e9


def halted_s(res: BacktestResults) -> float:
    """Market-seconds spent halted (a halt not lifted lasts to the end of the run; a market
    halted again while halted counts once)."""
    total = 0.0
    by_market: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for h in res.halts:
        by_market[h.market].append((h.ts_ns, h.unhalted_ns or res.ended_ns))
    for spans in by_market.values():
        end = 0
        for start, stop in sorted(spans):
            start = max(start, end)
            if stop > start:
                total += (stop - start) / 1e9
                end = stop
    return total
