"""What the supervisor knows of trading, built only from bus messages (``pos``, ``ord``,
``fill``, ``sig``, ``alert``, ``mstate``, ``xq``): the one source of the metrics, the page and the
alert rules.

Intent outcomes are derived from leg states: an intent is *done* when its buy and sell legs are
final and neither was refused (``REJECTED``/``NOT_SENT``), *failed* when one was. A state this
module does not know (``UNKNOWN``, or one added later) counts as in progress.
"""

from __future__ import annotations

import time
from collections import Counter, OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any, Literal

from karb.messages import (
    Alert,
    BusMessage,
    FillEvent,
    LegQuality,
    MarketStateUpdate,
    OrderEvent,
    Position,
    Signal,
)
from karb.ops.execquality import FINAL

IntentOutcome = Literal["open", "done", "failed"]
FAILED_STATES = frozenset({"REJECTED", "NOT_SENT"})
INTENTS_KEPT = 200
ALERTS_KEPT = 100


@dataclass
class LegView:
    client_id: str
    role: str
    venue: str
    side: str
    state: str
    price: float
    volume: float
    executed_volume: float = 0.0
    reason: str = ""


@dataclass
class IntentView:
    intent_id: str
    market: str
    buy_venue: str = ""
    sell_venue: str = ""
    net_bps: float = 0.0
    volume: float = 0.0
    ts_ns: int = 0
    outcome: IntentOutcome = "open"
    legs: dict[str, LegView] = field(default_factory=dict)


@dataclass
class QualityAgg:
    """Running execution-quality figures of one (venue, market)."""

    legs: int = 0
    slippage_bps_sum: float = 0.0
    fill_ratio_sum: float = 0.0
    latency_s_sum: float = 0.0
    latency_n: int = 0
    hedges: int = 0
    hedge_cost_krw: float = 0.0

    def as_dict(self) -> dict[str, float]:
        n = self.legs or 1
        return {"legs": self.legs, "slippage_bps_avg": round(self.slippage_bps_sum / n, 3),
                "fill_ratio_avg": round(self.fill_ratio_sum / n, 4),
                "latency_ms_avg": round(self.latency_s_sum / (self.latency_n or 1) * 1000, 1),
                "hedges": self.hedges, "hedge_cost_krw": round(self.hedge_cost_krw, 0)}


class OpsState:
    def __init__(self) -> None:
        self.position: Position | None = None
        self.intents: OrderedDict[str, IntentView] = OrderedDict()
        self.leg_state: OrderedDict[str, str] = OrderedDict()
        self.intents_total: Counter[str] = Counter()  # outcome → count
        self.legs_total: Counter[tuple[str, str]] = Counter()  # (venue, state) → transitions
        self.fills_total: Counter[tuple[str, str]] = Counter()  # (venue, market)
        self.signals_total: Counter[tuple[str, str]] = Counter()  # (market, decision)
        self.hedges_total: Counter[str] = Counter()  # venue
        self.bus_alerts_total: Counter[str] = Counter()  # level
        self.consecutive_failed = 0
        self.market_state: dict[str, MarketStateUpdate] = {}
        self.quality: dict[tuple[str, str], QualityAgg] = {}
        self.alerts: deque[dict[str, Any]] = deque(maxlen=ALERTS_KEPT)
        self.bus_alerts: deque[Alert] = deque(maxlen=ALERTS_KEPT)
        self.version = 0  # +1 on every change the page shows

    def on_message(self, msg: BusMessage) -> None:
        match msg:
            case Position():
                self.position = msg
            case Signal():
                self.signals_total[(msg.market, msg.decision)] += 1
                if msg.intent_id:
                    self._intent(msg.intent_id, msg.market, msg.ts_event).__dict__.update(
                        buy_venue=msg.buy_venue, sell_venue=msg.sell_venue, net_bps=msg.net_bps,
                        volume=msg.volume)
            case OrderEvent():
                self._order(msg)
            case FillEvent():
                self.fills_total[(msg.venue, msg.market)] += 1
            case Alert():
                self.bus_alerts_total[msg.level] += 1
                self.bus_alerts.append(msg)
                self.note_alert({"ts": msg.ts_event / 1e9 or time.time(), "level": msg.level,
                                 "rule": msg.kind or "bus", "market": msg.market, "text": msg.text,
                                 "src": msg.src})
            case MarketStateUpdate():
                self.market_state[msg.market] = msg
            case LegQuality():
                agg = self.quality.setdefault((msg.venue, msg.market), QualityAgg())
                agg.legs += 1
                agg.slippage_bps_sum += msg.slippage_bps
                agg.fill_ratio_sum += msg.fill_ratio
                if msg.latency_s >= 0:
                    agg.latency_s_sum += msg.latency_s
                    agg.latency_n += 1
                if msg.role == "hedge":
                    agg.hedges += 1
                    agg.hedge_cost_krw += msg.hedge_cost_krw
            case _:
                return
        self.version += 1

    def note_alert(self, entry: dict[str, Any]) -> None:
        self.alerts.append(entry)
        self.version += 1

    def _intent(self, intent_id: str, market: str, ts_ns: int) -> IntentView:
        view = self.intents.get(intent_id)
        if view is None:
            view = self.intents[intent_id] = IntentView(intent_id, market, ts_ns=ts_ns or time.time_ns())
            while len(self.intents) > INTENTS_KEPT:
                self.intents.popitem(last=False)
        return view

    def _order(self, ev: OrderEvent) -> None:
        if self.leg_state.get(ev.client_id) != ev.state:
            self.legs_total[(ev.venue, ev.state)] += 1
            if ev.role == "hedge" and ev.client_id not in self.leg_state:
                self.hedges_total[ev.venue] += 1
        self.leg_state[ev.client_id] = ev.state
        self.leg_state.move_to_end(ev.client_id)
        while len(self.leg_state) > 4 * INTENTS_KEPT:
            self.leg_state.popitem(last=False)
        view = self._intent(ev.intent_id, ev.market, ev.ts_event)
        view.legs[ev.client_id] = LegView(ev.client_id, ev.role, ev.venue, ev.side, ev.state,
                                          ev.price, ev.volume, ev.executed_volume, ev.reason)
        if view.outcome != "open":
            return
        main = [leg for leg in view.legs.values() if leg.role in ("buy", "sell")]
        if len(main) < 2 or any(leg.state not in FINAL for leg in main):
            return
        view.outcome = "failed" if any(leg.state in FAILED_STATES for leg in main) else "done"
        self.intents_total[view.outcome] += 1
        self.consecutive_failed = self.consecutive_failed + 1 if view.outcome == "failed" else 0

    # -- views for the page ------------------------------------------------------------------

    def recent_intents(self, n: int = 20) -> list[dict[str, Any]]:
        out = []
        for view in list(self.intents.values())[-n:][::-1]:
            out.append({"id": view.intent_id, "market": view.market, "buy": view.buy_venue,
                        "sell": view.sell_venue, "net_bps": round(view.net_bps, 1),
                        "volume": view.volume, "ts": view.ts_ns / 1e9, "outcome": view.outcome,
                        "legs": [{"role": leg.role, "venue": leg.venue, "state": leg.state,
                                  "executed": leg.executed_volume, "volume": leg.volume,
                                  "reason": leg.reason} for leg in view.legs.values()]})
        return out
