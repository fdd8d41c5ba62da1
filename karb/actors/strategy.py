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
import dataclasses
import uuid
from collections import deque

import msgspec

from karb import bus, clock, topics
from karb.actors.base import Actor
from karb.exchanges.ticks import floor_lot
from karb.exchanges.types import Level
from karb.messages import BusMessage, DepthUpdate, Intent, IntentAck, Position, Signal
from karb.shm import VALID, TopOfBookTable, segment_path
from karb.trading.arb import MIN_ORDER_KRW, Caps, limit_prices, size_trade
from karb.trading.risk import notional_cap


class StrategyParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    min_edge_bps: float = 10.0
    slippage_bps: float = 5.0
    max_notional_krw: float = 2_000_000.0
    max_notional_btc: float | None = None  # launch cap in BTC terms, at the live KRW-BTC price
    max_inventory_krw: float = 100_000_000.0  # coin value per venue and market
    cooldown_ms: int = 1000
    max_in_flight: int = 2
    stale_after_ms: int = 2000
    vol_window_ms: int = 1000
    max_move_bps: float = 50.0
    request_timeout_ms: int = 2000
    execution: str = "execution"


class Strategy(Actor):
    Params = StrategyParams

    def subscriptions(self) -> list[tuple[str, bytes]]:
        return [("book", topics.DEPTH), (self.params.execution, topics.POSITION)]

    async def on_start(self) -> None:
        cfg = self.config
        self.venues = [v.name for v in cfg.venues]
        self.fees = {v.name: v.fee for v in cfg.venues}
        self.vindex = {v: i for i, v in enumerate(self.venues)}
        self.mindex = {m: i for i, m in enumerate(cfg.markets)}
        self.table = TopOfBookTable.attach(segment_path(cfg.run_dir), len(cfg.venues), len(cfg.markets))
        self.depth: dict[tuple[str, str], DepthUpdate] = {}
        self.dirty: dict[str, int] = {}  # market → earliest recv_mono of its unevaluated books
        # Each venue's own mid: the gap between venues is the opportunity, not volatility.
        self.mids: dict[tuple[str, str], deque[tuple[int, float]]] = {
            (v, m): deque() for v in self.venues for m in cfg.markets}
        self.cooldown_until: dict[str, int] = {}
        self.position: Position | None = None
        self.in_flight: dict[str, int] = {}  # intent id → when sent (monotonic ns)
        self.outbox: asyncio.Queue[Intent] = asyncio.Queue()
        self.sent = self.accepted = 0
        self.decisions: dict[str, int] = {}
        assert self.actx is not None
        self.client = bus.LazyPirateClient(self.actx, bus.service_endpoint(cfg, self.params.execution),
                                           self.params.request_timeout_ms, attempts=3, bus=cfg.bus)
        self.spawn(self._send_intents(), name="intents")
        self.spawn(self._summary(), name="summary")

    def on_message(self, topic: bytes, msg: BusMessage) -> None:
        if isinstance(msg, DepthUpdate):
            self.depth[(msg.venue, msg.market)] = msg
            self._note_mid(msg)
            # Evaluate after the burst: both venues' books of a step arrive together, and one
            # venue's new book against the other's previous one can show a window that is not.
            first = self.dirty.get(msg.market)
            self.dirty[msg.market] = min(first, msg.recv_mono) if first else msg.recv_mono
        elif isinstance(msg, Position):
            self.position = msg
            open_ids = set(msg.open_intents)
            now = clock.monotonic_ns()
            for intent_id, sent in list(self.in_flight.items()):
                # gone from execution's open list (and not merely too new to be on it)
                if intent_id not in open_ids and now - sent > 200_000_000:
                    del self.in_flight[intent_id]

    def on_batch(self) -> None:
        dirty, self.dirty = self.dirty, {}
        for market, recv_mono in dirty.items():
            self.evaluate(market, recv_mono)

    # -- evaluation ------------------------------------------------------------------------------

    def evaluate(self, market: str, recv_mono: int) -> None:
        for buy_venue in self.venues:
            for sell_venue in self.venues:
                if buy_venue != sell_venue:
                    self._direction(market, buy_venue, sell_venue, recv_mono)

    def _direction(self, market: str, buy_venue: str, sell_venue: str, recv_mono: int) -> None:
        buy_book, sell_book = self.depth.get((buy_venue, market)), self.depth.get((sell_venue, market))
        if buy_book is None or sell_book is None:
            return
        p = self.params
        fee_buy, fee_sell = self.fees[buy_venue], self.fees[sell_venue]
        caps = self._caps(market, buy_venue, sell_venue, buy_book.asks)
        opp = size_trade(buy_book.asks, sell_book.bids, fee_buy, fee_sell, p.min_edge_bps, caps)
        if opp is None:
            return
        buy_limit, sell_limit = limit_prices(opp, fee_buy, fee_sell, p.slippage_bps)
        cap = self._notional_cap()
        if opp.volume * buy_limit > cap:  # execution checks it at the limit price
            opp = dataclasses.replace(opp, volume=floor_lot(cap / buy_limit))
        decision = self._filter(market, buy_venue, sell_venue, opp.volume, buy_limit, sell_limit)
        intent_id = ""
        if decision == "sent":
            intent_id = "i" + uuid.uuid4().hex[:20]
            now = clock.monotonic_ns()
            self.in_flight[intent_id] = now
            self.cooldown_until[market] = now + p.cooldown_ms * 1_000_000
            self.outbox.put_nowait(Intent(
                intent_id=intent_id, market=market, buy_venue=buy_venue, sell_venue=sell_venue,
                volume=opp.volume, buy_limit=buy_limit, sell_limit=sell_limit,
                net_bps=opp.net_bps, recv_mono=recv_mono, ts_event=clock.time_ns(),
                ts_init=clock.time_ns()))
        self.decisions[decision] = self.decisions.get(decision, 0) + 1
        self.publish(topics.signal(market), Signal(
            market=market, buy_venue=buy_venue, sell_venue=sell_venue,
            best_ask=buy_book.asks[0][0], best_bid=sell_book.bids[0][0], gross_bps=opp.gross_bps,
            net_bps=opp.net_bps, volume=opp.volume, buy_limit=buy_limit, sell_limit=sell_limit,
            expected_pnl_krw=opp.pnl_krw, decision=decision, intent_id=intent_id,
            ts_event=clock.time_ns(), ts_init=clock.time_ns()))
        if decision == "sent":
            self.log.info("signal %s buy %s sell %s net %.1f bps gross %.1f bps size %.8g "
                          "(~%.0f KRW, limited by %s) exp. pnl %.0f KRW -> %s", market,
                          buy_venue, sell_venue, opp.net_bps, opp.gross_bps, opp.volume,
                          opp.cost_krw, opp.limited_by, opp.pnl_krw, intent_id)

    def _caps(self, market: str, buy_venue: str, sell_venue: str, asks: list[Level]) -> Caps:
        coin = market.split("-", 1)[1]
        pos = self.position
        if pos is None:
            return Caps(0.0, 0.0, 0.0)  # balances unknown: size nothing
        krw = pos.balances.get(buy_venue, {}).get("KRW", 0.0)
        coins = pos.balances.get(sell_venue, {}).get(coin, 0.0)
        held = pos.inventory.get(market, {}).get(buy_venue, 0.0)
        room = max(0.0, self.params.max_inventory_krw / asks[0][0] - held) if asks else 0.0
        return Caps(krw_buy_venue=krw * 0.99, coin_sell_venue=coins,
                    max_notional_krw=self._notional_cap(), max_volume=room)

    def _notional_cap(self) -> float:
        asks = []
        if self.params.max_notional_btc is not None and "KRW-BTC" in self.mindex:
            for venue in self.venues:
                top = self.table.read(self.table.slot(self.vindex[venue], self.mindex["KRW-BTC"]))
                if top is not None and top.flags == VALID:
                    asks.append(top.ask_px)
        return notional_cap(self.params.max_notional_krw, self.params.max_notional_btc, asks)

    def _filter(self, market: str, buy_venue: str, sell_venue: str, volume: float,
                buy_limit: float, sell_limit: float) -> str:
        p = self.params
        if volume * buy_limit < MIN_ORDER_KRW or volume * sell_limit < MIN_ORDER_KRW:
            return "below_min_order"
        for venue in (buy_venue, sell_venue):
            top = self.table.read(self.table.slot(self.vindex[venue], self.mindex[market]))
            if top is None or top.flags != VALID:
                return f"not_valid:{venue}"
            if clock.monotonic_ns() - top.recv_mono > p.stale_after_ms * 1_000_000:
                return f"stale:{venue}"
        if self.position is not None and market in self.position.halted:
            return "halted"
        now = clock.monotonic_ns()
        if now < self.cooldown_until.get(market, 0):
            return "cooldown"
        if len(self.in_flight) >= p.max_in_flight:
            return "in_flight_cap"
        if max(self._move_bps(buy_venue, market), self._move_bps(sell_venue, market)) > p.max_move_bps:
            return "volatile"
        return "sent"

    def _note_mid(self, msg: DepthUpdate) -> None:
        if not msg.bids or not msg.asks:
            return
        window = self.mids[(msg.venue, msg.market)]
        now = clock.monotonic_ns()
        window.append((now, (msg.bids[0][0] + msg.asks[0][0]) / 2))
        horizon = now - self.params.vol_window_ms * 1_000_000
        while window and window[0][0] < horizon:
            window.popleft()

    def _move_bps(self, venue: str, market: str) -> float:
        """How far this venue's mid ranged over the last ``vol_window_ms``, in bps."""
        mids = [m for _, m in self.mids[(venue, market)]]
        if len(mids) < 2:
            return 0.0
        return (max(mids) - min(mids)) / min(mids) * 1e4

    # -- intents ---------------------------------------------------------------------------------

    async def _send_intents(self) -> None:
        while True:
            intent = await self.outbox.get()
            self.sent += 1
            try:
                ack = await self.client.request(intent, intent.intent_id, id_field="intent_id")
            except bus.PeerUnavailable as exc:
                self.in_flight.pop(intent.intent_id, None)
                self.log.error("intent %s: execution did not answer (%s)", intent.intent_id, exc)
                continue
            assert isinstance(ack, IntentAck)
            if ack.accepted:
                self.accepted += 1
                self.log.info("risk check PASS %s", intent.intent_id)
            else:
                self.in_flight.pop(intent.intent_id, None)
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
