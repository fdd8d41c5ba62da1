"""``strategy``: find cross-venue windows and send intents to execution.

After every burst of depth changes it evaluates each changed market, in both directions (buy on one venue, sell on the
other) with ``karb.trading.arb``: the edge net of both taker fees, sized by walking both books
under the caps (KRW on the buying venue, coin on the selling venue, ``max_notional_krw``,
inventory room, the 5,000 KRW minimum). Filters before anything is sent: both tops fresh and
uncrossed in shared memory, a volatility filter, a per-market cooldown, a cap on intents in
flight. Every opportunity that clears ``min_edge_bps`` is published on ``sig.<market>`` with
the numbers used and what was decided; sent ones go to execution over REQ (Lazy Pirate).
"""

from __future__ import annotations

import asyncio

from karb import bus, clock, topics
from karb.actors.base import Actor
from karb.messages import BusMessage, DepthUpdate, Intent, IntentAck, Position, Signal
from karb.shm import VALID, TopOfBookTable, segment_path
from karb.trading.decide import Decider, Sized, StrategyParams

__all__ = ["Strategy", "StrategyParams"]


class ShmTopView:
    """The decider's view of the tops: shared memory, valid slots only."""

    def __init__(self, table: TopOfBookTable, venues: list[str], markets: list[str]) -> None:
        self.table = table
        self.vindex = {v: i for i, v in enumerate(venues)}
        self.mindex = {m: i for i, m in enumerate(markets)}

    def top(self, venue: str, market: str) -> tuple[float, int] | None:
        top = self.table.read(self.table.slot(self.vindex[venue], self.mindex[market]))
        if top is None or top.flags != VALID:
            return None
        return top.ask_px, top.recv_mono


class Strategy(Actor):
    Params = StrategyParams

    def subscriptions(self) -> list[tuple[str, bytes]]:
        return [("book", topics.DEPTH), (self.params.execution, topics.POSITION)]

    async def on_start(self) -> None:
        cfg = self.config
        venues: list[str] = [v.name for v in cfg.venues]
        self.table = TopOfBookTable.attach(segment_path(cfg.run_dir), len(cfg.venues), len(cfg.markets))
        self.decider = Decider(self.params, venues, {v.name: v.fee for v in cfg.venues},
                               list(cfg.markets), ShmTopView(self.table, venues, list(cfg.markets)),
                               rebalance=cfg.rebalance)
        self.dirty: dict[str, int] = {}  # market → earliest recv_mono of its unevaluated books
        self.outbox: asyncio.Queue[Intent] = asyncio.Queue()
        self.sent = self.accepted = 0
        self.decisions: dict[str, int] = {}
        assert self.actx is not None
        self.client = bus.LazyPirateClient(self.actx, bus.service_endpoint(cfg, self.params.execution),
                                           self.params.request_timeout_ms, attempts=3, bus=cfg.bus)
        self.spawn(self._send_intents(), name="intents")
        self.spawn(self._summary(), name="summary")

    @property
    def in_flight(self) -> dict[str, int]:
        return self.decider.in_flight

    def on_message(self, topic: bytes, msg: BusMessage) -> None:
        if isinstance(msg, DepthUpdate):
            self.decider.on_depth(msg)
            # Evaluate after the burst: both venues' books of a step arrive together, and one
            # venue's new book against the other's previous one can show a window that is not.
            first = self.dirty.get(msg.market)
            self.dirty[msg.market] = min(first, msg.recv_mono) if first else msg.recv_mono
        elif isinstance(msg, Position):
            self.decider.on_position(msg)

    def on_batch(self) -> None:
        dirty, self.dirty = self.dirty, {}
        for market, recv_mono in dirty.items():
            self.evaluate(market, recv_mono)

    # -- evaluation ------------------------------------------------------------------------------

    def evaluate(self, market: str, recv_mono: int) -> None:
        for d in self.decider.evaluate(market):
            self._act(d, recv_mono)

    def _act(self, d: Sized, recv_mono: int) -> None:
        opp = d.opp
        if d.decision == "sent":
            self.outbox.put_nowait(Intent(
                intent_id=d.intent_id, market=d.market, buy_venue=d.buy_venue,
                sell_venue=d.sell_venue, volume=opp.volume, buy_limit=d.buy_limit,
                sell_limit=d.sell_limit, net_bps=opp.net_bps, recv_mono=recv_mono,
                ts_event=clock.time_ns(), ts_init=clock.time_ns()))
        counted = f"{d.decision}:{d.about}" if d.about else d.decision
        self.decisions[counted] = self.decisions.get(counted, 0) + 1
        self.publish(topics.signal(d.market), Signal(
            market=d.market, buy_venue=d.buy_venue, sell_venue=d.sell_venue,
            best_ask=d.best_ask, best_bid=d.best_bid, gross_bps=opp.gross_bps,
            net_bps=opp.net_bps, volume=opp.volume, buy_limit=d.buy_limit,
            sell_limit=d.sell_limit, expected_pnl_krw=opp.pnl_krw, decision=d.decision,
            intent_id=d.intent_id, venue=d.about, threshold_bps=d.threshold_bps,
            skew_rule=d.skew_rule, skew_pressure=d.skew_pressure, ts_event=clock.time_ns(),
            ts_init=clock.time_ns()))
        if d.decision == "sent":
            self.log.info("signal %s buy %s sell %s net %.1f bps gross %.1f bps size %.8g "
                          "(~%.0f KRW, limited by %s) exp. pnl %.0f KRW -> %s", d.market,
                          d.buy_venue, d.sell_venue, opp.net_bps, opp.gross_bps, opp.volume,
                          opp.cost_krw, opp.limited_by, opp.pnl_krw, d.intent_id)

    # -- intents ---------------------------------------------------------------------------------

    async def _send_intents(self) -> None:
        while True:
            intent = await self.outbox.get()
            self.sent += 1
            try:
                ack = await self.client.request(intent, intent.intent_id, id_field="intent_id")
            except bus.PeerUnavailable as exc:
                self.decider.done(intent.intent_id)
                self.log.error("intent %s: execution did not answer (%s)", intent.intent_id, exc)
                continue
            assert isinstance(ack, IntentAck)
            if ack.accepted:
                self.accepted += 1
                self.log.info("risk check PASS %s", intent.intent_id)
            else:
                self.decider.done(intent.intent_id)
                self.log.info("risk check FAIL %s: %s", intent.intent_id, ack.reason)

    async def _summary(self) -> None:
        while True:
            await asyncio.sleep(60)
            self.log.info("summary: intents sent %d accepted %d in flight %d; decisions %s",
                          self.sent, self.accepted, len(self.in_flight), self.decisions)

    def heartbeat_extra(self) -> dict[str, float]:
        return {"intents_sent": float(self.sent), "intents_accepted": float(self.accepted),
                "in_flight": float(len(self.in_flight))}

    async def on_stop(self) -> None:
        self.client.close()
        self.table.close()
