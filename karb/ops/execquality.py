"""Execution quality: each leg measured against the signal that opened its intent.

Fed the bus's ``sig`` (signals sent as intents), ``ord`` (leg states) and nothing else, the
tracker returns one :class:`~karb.messages.LegQuality` per leg that reaches a final state:

- **slippage** in bps of the leg's average fill price against the signal's price for that side
  (a buy against the best ask it saw, a sell against the best bid), positive when worse for us;
- **fill ratio**: executed / ordered volume;
- **latency**: when the leg was sent (its ``SENT`` event's ``sent_mono``) to when its final
  state arrived here, on the host's one monotonic clock;
- **hedge cost** of a hedge leg: what it paid against the signal's price, plus its fee.

A state is final when it is one of :data:`FINAL`; any other state (``PENDING``, ``SENT``,
``OPEN``, ``UNKNOWN`` or a new one) is treated as in progress, so new leg states need no change here.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import TypeVar

from karb.messages import LegQuality, OrderEvent, Signal

FINAL = frozenset({"DONE", "CANCELLED", "REJECTED", "NOT_SENT", "DRY_RUN"})
# Intents and legs remembered; older ones are forgotten (a leg that ends after that has no
# reference price and reports slippage 0).
KEEP = 4096
V = TypeVar("V")


@dataclass(frozen=True)
class SignalPrices:
    market: str
    buy_venue: str
    sell_venue: str
    best_ask: float
    best_bid: float


class ExecQualityTracker:
    def __init__(self) -> None:
        self.signals: OrderedDict[str, SignalPrices] = OrderedDict()
        self.sent_mono: OrderedDict[str, int] = OrderedDict()
        self.finished: OrderedDict[str, None] = OrderedDict()

    def on_signal(self, sig: Signal) -> None:
        if sig.intent_id:
            _put(self.signals, sig.intent_id, SignalPrices(sig.market, sig.buy_venue,
                                                           sig.sell_venue, sig.best_ask, sig.best_bid))

    def on_order(self, ev: OrderEvent, now_mono: int) -> LegQuality | None:
        """The leg's quality if ``ev`` is its first final state, else None."""
        if ev.sent_mono:
            _put(self.sent_mono, ev.client_id, ev.sent_mono)
        if ev.state not in FINAL or ev.client_id in self.finished:
            return None
        _put(self.finished, ev.client_id, None)
        sig = self.signals.get(ev.intent_id)
        ref = 0.0
        if sig is not None:
            ref = sig.best_ask if ev.side == "buy" else sig.best_bid
        avg = ev.executed_funds / ev.executed_volume if ev.executed_volume > 0 else 0.0
        slip = 0.0
        if ref > 0 and avg > 0:
            slip = (avg - ref) / ref * 1e4 if ev.side == "buy" else (ref - avg) / ref * 1e4
        sent = self.sent_mono.pop(ev.client_id, 0)
        latency = (now_mono - sent) / 1e9 if sent else -1.0
        cost = 0.0
        if ev.role == "hedge" and ev.executed_volume > 0:
            worse = (avg - ref) if ev.side == "buy" else (ref - avg)
            cost = (worse * ev.executed_volume if ref > 0 else 0.0) + ev.fee
        return LegQuality(
            intent_id=ev.intent_id, client_id=ev.client_id, role=ev.role, venue=ev.venue,
            market=ev.market, side=ev.side, state=ev.state, reference_px=ref, avg_px=avg,
            slippage_bps=round(slip, 4),
            fill_ratio=round(ev.executed_volume / ev.volume, 6) if ev.volume > 0 else 0.0,
            latency_s=round(latency, 6), hedge_cost_krw=round(cost, 2))


def _put(d: OrderedDict[str, V], key: str, value: V) -> None:
    d[key] = value
    d.move_to_end(key)
    while len(d) > KEEP:
        d.popitem(last=False)
