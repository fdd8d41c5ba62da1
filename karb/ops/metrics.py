"""``GET /metrics``: Prometheus text format, built at scrape time from the hub (bus-fed state,
the supervisor's status, shared memory) plus three histograms the hub observes as messages
arrive. Names follow Prometheus conventions: ``karb_`` prefix, base units in the name
(``_seconds``, ``_bytes``, ``_krw``, ``_bps``), ``_total`` on counters, labels ``actor``,
``venue``, ``market``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from karb.ops.hub import OpsHub

ACTOR_STATES = ("DOWN", "STARTING", "RUNNING", "STOPPING", "EXITED", "FAILED", "HUNG")
MARKET_STATES = ("normal", "volatile", "trending", "illiquid", "ranging")


def _g(name: str, doc: str, labels: list[str]) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=labels)


def _c(name: str, doc: str, labels: list[str]) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, labels=labels)


class OpsCollector(Collector):
    def __init__(self, hub: OpsHub) -> None:
        self.hub = hub

    def collect(self) -> Iterator[Metric]:
        yield from self._actors()
        yield from self._markets()
        yield from self._trading()
        yield from self._alerts()

    def _actors(self) -> Iterator[Metric]:
        status = self.hub.status()
        up = _g("karb_actor_up", "1 when the actor is RUNNING", ["actor"])
        state = _g("karb_actor_state", "The actor's state (1 for the current one)", ["actor", "state"])
        restarts = _c("karb_actor_restarts", "Restarts by the supervisor", ["actor"])
        age = _g("karb_actor_heartbeat_age_seconds", "Time since the last heartbeat", ["actor"])
        rss = _g("karb_actor_resident_memory_bytes", "Resident set size", ["actor"])
        cpu = _g("karb_actor_cpu_ratio", "CPU use over the last second (1 = one core)", ["actor"])
        lag = _g("karb_actor_loop_lag_seconds", "Event-loop lag at the last heartbeat", ["actor"])
        msgs_in = _c("karb_bus_messages_received", "Bus messages received (this incarnation)", ["actor"])
        msgs_out = _c("karb_bus_messages_sent", "Bus messages published (this incarnation)", ["actor"])
        gaps = _c("karb_bus_gaps", "Bus messages missed (seq gaps, this incarnation)", ["actor"])
        connects = _c("karb_ws_connects", "WebSocket connects of a feed (reconnects + 1)", ["venue"])
        data_age = _g("karb_market_data_age_seconds", "Age of the feed's last book", ["venue", "market"])
        breaker = _g("karb_circuit_breaker_open", "1 while execution's circuit breaker is not CLOSED", [])
        kill = _g("karb_kill_switch_engaged", "1 while the kill switch is engaged", [])
        asked = _c("karb_strategy_intents", "Intents the strategy sent and execution accepted "
                   "(this incarnation; refused = sent - accepted - in flight)", ["actor", "answer"])
        for a in status["actors"]:
            name = a["name"]
            up.add_metric([name], 1.0 if a["state"] == "RUNNING" else 0.0)
            states = ACTOR_STATES if a["state"] in ACTOR_STATES else (*ACTOR_STATES, a["state"])
            for s in states:
                state.add_metric([name, s], 1.0 if a["state"] == s else 0.0)
            restarts.add_metric([name], a["restarts"])
            if a["heartbeat_age_ms"] is not None:
                age.add_metric([name], a["heartbeat_age_ms"] / 1000)
            rss.add_metric([name], a["rss_bytes"])
            cpu.add_metric([name], a["cpu_percent"] / 100)
            if a["loop_lag_us"] is not None:
                lag.add_metric([name], a["loop_lag_us"] / 1e6)
            msgs_in.add_metric([name], a["msgs_in"])
            msgs_out.add_metric([name], a["msgs_out"])
            gaps.add_metric([name], a["gaps"])
            extra = a["extra"]
            venue = self.hub.feed_venue.get(name)
            if venue:
                if "connects" in extra:
                    connects.add_metric([venue], extra["connects"])
                for key, ms in extra.items():
                    if key.startswith("age_ms.") and ms >= 0:
                        data_age.add_metric([venue, key[7:]], ms / 1000)
            if "intents_sent" in extra:
                asked.add_metric([name, "sent"], extra["intents_sent"])
                asked.add_metric([name, "accepted"], extra.get("intents_accepted", 0.0))
            if name == self.hub.execution and extra:
                breaker.add_metric([], extra.get("breaker_open", 0.0))
                kill.add_metric([], extra.get("kill_switch", 0.0))
        yield from (up, state, restarts, age, rss, cpu, lag, msgs_in, msgs_out, gaps, connects,
                    data_age, breaker, kill, asked)

    def _markets(self) -> Iterator[Metric]:
        px = _g("karb_top_of_book_price_krw", "Best price from shared memory", ["venue", "market", "side"])
        size = _g("karb_top_of_book_size", "Size at the best price (coin)", ["venue", "market", "side"])
        spread = _g("karb_spread_bps", "Ask minus bid over the mid", ["venue", "market"])
        book_age = _g("karb_book_age_seconds", "Age of the shared-memory top", ["venue", "market"])
        edge = _g("karb_net_edge_bps", "Buy at one venue's ask, sell at the other's bid, after "
                  "taker fees", ["market", "buy_venue", "sell_venue"])
        mstate = _g("karb_market_state", "The market-state monitor's verdict (1 for the current)",
                    ["market", "state"])
        vol = _g("karb_market_volatility_bps", "Stdev of sample-to-sample mid returns", ["market"])
        if self.hub.books is not None:
            for m in self.hub.books.snapshot():
                market = m["market"]
                for venue, t in m["venues"].items():
                    if t["state"] != "valid":
                        continue
                    px.add_metric([venue, market, "bid"], t["bid"])
                    px.add_metric([venue, market, "ask"], t["ask"])
                    size.add_metric([venue, market, "bid"], t["bid_size"])
                    size.add_metric([venue, market, "ask"], t["ask_size"])
                    mid = (t["bid"] + t["ask"]) / 2
                    spread.add_metric([venue, market], (t["ask"] - t["bid"]) / mid * 1e4)
                    if t["age_s"] is not None:
                        book_age.add_metric([venue, market], t["age_s"])
                for direction, bps in m["edges"].items():
                    buy, sell = direction.split(">")
                    edge.add_metric([market, buy, sell], bps)
        for market, ms in self.hub.state.market_state.items():
            for s in MARKET_STATES:
                mstate.add_metric([market, s], 1.0 if ms.state == s else 0.0)
            vol.add_metric([market], ms.volatility_bps)
        yield from (px, size, spread, book_age, edge, mstate, vol)

    def _trading(self) -> Iterator[Metric]:
        st = self.hub.state
        bal = _g("karb_balance", "Free balance per venue and currency (KRW or coin)", ["venue", "currency"])
        inv = _g("karb_inventory", "Coin held per venue (free + locked)", ["venue", "market"])
        transit = _g("karb_in_transit", "Coin withdrawn and not yet credited, by destination",
                     ["venue", "coin"])
        pnl = _g("karb_realised_pnl_krw", "Realised PnL net of fees", ["market"])
        pnl_total = _g("karb_realised_pnl_total_krw", "Realised PnL net of fees, all markets", [])
        halted = _g("karb_market_halted", "1 while a market is halted", ["market"])
        open_i = _g("karb_open_intents", "Intents in flight at execution", [])
        floor = _g("karb_balance_floor", "alerts.balance_floors: the balance_low rule's floor",
                   ["venue", "currency"])
        for venue, floors in self.hub.cfg.alerts.balance_floors.items():
            for currency, amount in floors.items():
                floor.add_metric([venue, currency], amount)
        if st.position is not None:
            p = st.position
            for venue, currencies in p.balances.items():
                for currency, amount in currencies.items():
                    bal.add_metric([venue, currency], amount)
            for market, venues in p.inventory.items():
                for venue, amount in venues.items():
                    inv.add_metric([venue, market], amount)
            for coin, per in p.in_transit.items():
                for venue, amount in per.items():
                    transit.add_metric([venue, coin], amount)
            for market, value in p.pnl_krw.items():
                pnl.add_metric([market], value)
            pnl_total.add_metric([], p.pnl_total_krw)
            for market in self.hub.config.markets:
                halted.add_metric([market], 1.0 if market in p.halted else 0.0)
            open_i.add_metric([], len(p.open_intents))
        intents = _c("karb_intents", "Intents by outcome (done/failed from leg states)", ["outcome"])
        for outcome in ("done", "failed"):
            intents.add_metric([outcome], st.intents_total.get(outcome, 0))
        legs = _c("karb_legs", "Leg state changes, by the state entered", ["venue", "state"])
        for (venue, state), n in sorted(st.legs_total.items()):
            legs.add_metric([venue, state], n)
        fills = _c("karb_fills", "Fills", ["venue", "market"])
        for (venue, market), n in sorted(st.fills_total.items()):
            fills.add_metric([venue, market], n)
        signals = _c("karb_signals", "Signals by the strategy's decision", ["market", "decision"])
        for (market, decision), n in sorted(st.signals_total.items()):
            signals.add_metric([market, decision], n)
        hedges = _c("karb_hedges", "Hedge legs", ["venue"])
        for venue, n in sorted(st.hedges_total.items()):
            hedges.add_metric([venue], n)
        fill_ratio = _g("karb_fill_ratio", "Mean executed / ordered volume of final legs", ["venue", "market"])
        hedge_cost = _c("karb_hedge_cost_krw", "What hedges cost against the signal's prices, fees in",
                        ["venue", "market"])
        for (venue, market), agg in sorted(st.quality.items()):
            fill_ratio.add_metric([venue, market], agg.fill_ratio_sum / (agg.legs or 1))
            hedge_cost.add_metric([venue, market], agg.hedge_cost_krw)
        failed = _g("karb_consecutive_failed_intents", "Failed intents in a row", [])
        failed.add_metric([], st.consecutive_failed)
        yield from (bal, floor, inv, transit, pnl, pnl_total, halted, open_i, intents, legs, fills, signals,
                    hedges, fill_ratio, hedge_cost, failed)

    def _alerts(self) -> Iterator[Metric]:
        hub = self.hub
        bus_alerts = _c("karb_bus_alerts", "Alerts published on the bus", ["level"])
        for level, n in sorted(hub.state.bus_alerts_total.items()):
            bus_alerts.add_metric([level], n)
        firing = _g("karb_alert_firing", "1 while an alert rule holds", ["rule", "subject"])
        for rule, subject in sorted(hub.rules.active):
            firing.add_metric([rule, subject], 1.0)
        notices = _c("karb_alert_notices", "Notices sent to the notifier", ["rule", "status"])
        for (rule, status), n in sorted(hub.notifier.notices.items()):
            notices.add_metric([rule, status], n)
        suppressed = _c("karb_alert_suppressed", "Notices held back by the rate limit", [])
        suppressed.add_metric([], hub.rules.suppressed)
        sent = _c("karb_notifier_sent", "Notices a sink accepted", ["sink"])
        failed = _c("karb_notifier_failed", "Notices a sink refused or did not answer", ["sink"])
        dropped = _c("karb_notifier_dropped", "Notices dropped on a full sink queue", ["sink"])
        for sink in hub.notifier.sinks:
            sent.add_metric([sink.name], hub.notifier.sent[sink.name])
            failed.add_metric([sink.name], hub.notifier.failed[sink.name])
            dropped.add_metric([sink.name], hub.notifier.dropped[sink.name])
        yield from (bus_alerts, firing, notices, suppressed, sent, failed, dropped)


def add_metrics_route(app: web.Application, registry: CollectorRegistry) -> None:
    async def metrics(request: web.Request) -> web.Response:
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app.router.add_get("/metrics", metrics)
