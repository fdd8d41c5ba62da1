"""``rebalancer``: keeps each coin's inventory per venue inside its band (``rebalance:`` in the
config) by transfers between the venues, and a KRW skew by a hedged pair trade run by an
execution algorithm plus a transfer. What it decides is :mod:`karb.execution.rebalance_policy`
(the backtester runs the same policy); this actor wires it to the bus: execution's ``pos``
(balances after reservations), the monitor's ``mstate.*`` (market states for the algorithm
choice), the tops in shared memory, and execution's intent service for the pair trade's
children (each followed in the journal to its end).

Every ``check_interval_ms`` it follows the open transfers (:class:`karb.execution.rebalance.
TransferManager`: journal, lookups after a crash, stuck alerts) and runs one policy check.

Command ``rebal``: targets, skew, transfers in flight, algorithms running and their measured
quality, counters (one JSON line); ``tools/tap.py --rebal`` prints it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
import uuid
from collections.abc import Iterable
from typing import Any

from karb import bus, topics
from karb.actors.base import Actor
from karb.config import Config, ConfigError
from karb.exchanges.credentials import resolve
from karb.exchanges.transfers import TransferClient
from karb.execution.algos.pair import ChildFill, MarketNow, child_fill
from karb.execution.rebalance import TransferManager
from karb.execution.rebalance_policy import Balances, RebalancePolicy, RebalancerParams
from karb.execution.tops import Quote, ShmTops
from karb.execution.transfer_journal import TransferJournal
from karb.messages import Alert, BusMessage, Intent, IntentAck, MarketStateUpdate, Position
from karb.shm import TopOfBookTable, segment_path

# A child intent is followed in the journal until it is final, at most this long: its legs'
# deadline (15 s by default) and up to four hedges with their own deadlines and pauses. One
# still open then is execution's (RECONCILING): the pair algorithm stops.
CHILD_FOLLOW_S = 90.0
OPEN_INTENT_STATES = frozenset({"ACCEPTED", "RECONCILING"})


class Rebalancer(Actor):
    Params = RebalancerParams

    @classmethod
    def preflight(cls, config: Config, params: Any) -> None:
        for venue in config.venues:
            resolve(config, venue)
        coins = {m.split("-", 1)[1] for m in config.markets}
        for to, per_coin in config.rebalance.addresses.items():
            for coin in per_coin:
                if coin not in coins:
                    raise ConfigError(f"config error: {config.path}: rebalance.addresses.{to}."
                                      f"{coin}: not a coin of markets")

    def subscriptions(self) -> Iterable[tuple[str, bytes]]:
        subs = [(self.params.execution, topics.POSITION)]
        subs += [(a.name, topics.MARKET_STATE) for a in self.config.actors if a.kind == "monitor"]
        return subs

    async def on_start(self) -> None:
        cfg = self.config
        venues: list[str] = [v.name for v in cfg.venues]
        self.clients: dict[str, TransferClient] = {v.name: TransferClient(v.name, v.rest_url, resolve(cfg, v),
                                               v.request_timeout_ms) for v in cfg.venues}
        self.journal = TransferJournal(cfg.run_dir / "journal.sqlite")
        self.manager = TransferManager(self.journal, self.clients, cfg.rebalance, self._alert,
                                       self.params.settle_s)
        self.position: Position | None = None
        self.mstate: dict[str, MarketStateUpdate] = {}
        self.table = TopOfBookTable.attach(segment_path(cfg.run_dir), len(cfg.venues),
                                           len(cfg.markets))
        self.tops = ShmTops(self.table, venues, list(cfg.markets))
        assert self.actx is not None
        self.client = bus.LazyPirateClient(self.actx, bus.service_endpoint(cfg, self.params.execution),
                                           self.params.request_timeout_ms, attempts=3, bus=cfg.bus)
        self.policy = RebalancePolicy(cfg.rebalance, self.params, venues, list(cfg.markets),
                                      {v.name: v.fee for v in cfg.venues}, self.manager,
                                      self._balances, self._quote,
                                      self._market_now, self._child,
                                      lambda: "i" + uuid.uuid4().hex[:20])
        # Recovery first: every transfer a previous incarnation left open is looked up.
        await self.manager.advance()
        self.spawn(self._loop(), name="rebalance")

    def on_message(self, topic: bytes, msg: BusMessage) -> None:
        if isinstance(msg, Position):
            self.position = msg
        elif isinstance(msg, MarketStateUpdate):
            self.mstate[msg.market] = msg

    def _balances(self) -> Balances | None:
        return None if self.position is None else self.position.balances

    def _market_now(self, market: str) -> MarketNow:
        m = self.mstate.get(market)
        if m is None:
            return MarketNow()
        return MarketNow(m.state, m.recent_volume, tuple(m.volume_profile))

    def _quote(self, venue: str, market: str) -> Quote | None:
        return self.tops.quote(venue, market)

    def _alert(self, level: str, coin: str, text: str, kind: str) -> None:
        (self.log.error if level == "critical" else self.log.warning)("%s", text)
        now = time.time_ns()
        self.publish(topics.ALERT, Alert(level=level, market=f"KRW-{coin}",  # type: ignore[arg-type]  # level is warning|critical by construction
                                         text=text, kind=kind, ts_event=now, ts_init=now))

    async def _loop(self) -> None:
        while True:
            await self.manager.advance()
            await self.policy.check_once()
            await asyncio.sleep(self.params.check_interval_ms / 1000)

    async def _child(self, intent: Intent) -> ChildFill:
        """One child of a KRW pair trade: asked of execution like any intent, then followed in
        the journal (execution writes it) until it is final."""
        db = self.journal.db
        try:
            ack = await self.client.request(intent, intent.intent_id, id_field="intent_id")
        except bus.PeerUnavailable as exc:
            # The answer is lost, not the intent: execution writes it before it answers, so
            # the journal says whether it was taken.
            row = db.execute("SELECT state FROM intents WHERE intent_id=?",
                             (intent.intent_id,)).fetchone()
            if row is None or row[0] == "REJECTED":
                return ChildFill(False, reason=f"execution did not answer ({exc})")
        else:
            if not (isinstance(ack, IntentAck) and ack.accepted):
                return ChildFill(False, reason=getattr(ack, "reason", "?"))
        deadline = time.monotonic() + CHILD_FOLLOW_S
        final = False
        while time.monotonic() < deadline:
            row = db.execute("SELECT state FROM intents WHERE intent_id=?",
                             (intent.intent_id,)).fetchone()
            if row is not None and row[0] not in OPEN_INTENT_STATES:
                final = True
                break
            await asyncio.sleep(0.1)
        rows = db.execute("SELECT venue, side, executed_volume, executed_funds, fee FROM legs "
                          "WHERE intent_id=?", (intent.intent_id,)).fetchall()
        fill = child_fill(rows, intent.buy_venue, intent.sell_venue)
        return fill if final else dataclasses.replace(fill, reason="still open", final=False)

    # -- visible ------------------------------------------------------------------------------------

    def report(self) -> dict[str, Any]:
        return self.policy.report()

    def on_command(self, cmd: str) -> str:
        if cmd == "rebal":
            return json.dumps(self.report(), separators=(",", ":"))
        raise ValueError(f"unknown command {cmd!r} (rebalancer: rebal)")

    def heartbeat_extra(self) -> dict[str, float]:
        skews = self.policy.skews if hasattr(self, "policy") else {}
        worst = max((s.worst for c, s in skews.items() if c != "KRW"), default=0.0)
        return {"transfers_open": float(len(self.manager.open())),
                "transfers_sent": float(self.manager.sent),
                "transfers_credited": float(self.manager.credited),
                "worst_coin_skew": worst}

    async def on_stop(self) -> None:
        await self.policy.stop()
        for c in self.clients.values():
            await c.close()
        self.journal.close()
        self.table.close()
