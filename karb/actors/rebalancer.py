"""``rebalancer``: keeps each coin's inventory per venue inside its band (``rebalance:`` in the
config) by transfers between the venues, and a KRW skew by a hedged trade plus a transfer.

Every ``check_interval_ms`` it follows the open transfers (:class:`karb.execution.rebalance.
TransferManager`: journal, lookups after a crash, stuck alerts) and computes each coin's skew
from execution's ``pos`` (free balances after reservations) plus coin in transit. A coin out of
band for ``rebalance.out_of_band_s`` without pause (no transfer of it open meanwhile) is moved
from its heavy venue to its light one, the amount chosen to bring the light one back to target.

KRW cannot move between the venues quickly: a KRW skew held ``out_of_band_s`` is fixed (when
``krw_trade_krw`` > 0) by one intent to execution that buys coin on the KRW-heavy venue and
sells it on the other *at the same time* (the position never stands open), when that costs at
most ``krw_max_cost_bps``; once that intent is done, the coin it bought is transferred back
to the venue it was sold on (purpose ``krw``). The pending send-back is held in memory: after a
restart in between, the coin's own skew moves it instead. Off by default (krw_trade_krw: 0).

``out_of_band_s`` should exceed execution's ``balance_refresh_s`` (``pos`` is that old at
most): a skew is judged on balances that already show the last transfer's credit.

Command ``rebal``: targets, skew, transfers in flight, counters (one JSON line); ``tools/tap.py
--rebal`` prints it.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterable
from typing import Any

import msgspec

from karb import bus, topics
from karb.actors.base import Actor
from karb.config import Config, ConfigError
from karb.exchanges.credentials import resolve
from karb.exchanges.transfers import TransferClient
from karb.execution.rebalance import TransferManager, floor_amount
from karb.execution.transfer_journal import TransferJournal
from karb.messages import Alert, BusMessage, Intent, IntentAck, Position
from karb.shm import VALID, TopOfBookTable, segment_path
from karb.trading import skew


class RebalancerParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    execution: str = "execution"  # the actor whose pos we read and who takes KRW intents
    check_interval_ms: int = 500
    # A withdrawal whose answer was lost is "never sent" when not found this long after.
    settle_s: float = 10.0
    # KRW skew: one hedged trade of this notional (0: off) costing at most krw_max_cost_bps.
    krw_trade_krw: float = 0.0
    krw_max_cost_bps: float = 30.0
    request_timeout_ms: int = 2000


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
        return [(self.params.execution, topics.POSITION)]

    async def on_start(self) -> None:
        cfg = self.config
        self.venues: list[str] = [v.name for v in cfg.venues]
        self.coins = [m.split("-", 1)[1] for m in cfg.markets]
        self.clients: dict[str, TransferClient] = {v.name: TransferClient(v.name, v.rest_url, resolve(cfg, v),
                                               v.request_timeout_ms) for v in cfg.venues}
        self.journal = TransferJournal(cfg.run_dir / "journal.sqlite")
        self.manager = TransferManager(self.journal, self.clients, cfg.rebalance, self._alert,
                                       self.params.settle_s)
        self.position: Position | None = None
        self.since: dict[str, float] = {}  # currency → monotonic s it went out of band
        self.skews: dict[str, skew.Skew] = {}
        self.last_note: dict[str, str] = {}  # currency → why nothing was done
        self.krw_intents = 0
        # KRW intents accepted whose coin is still to be sent back: intent id → (coin, from, to)
        self.krw_pending: dict[str, tuple[str, str, str]] = {}
        self.fees: dict[str, float] = {v.name: v.fee for v in cfg.venues}
        self.table = TopOfBookTable.attach(segment_path(cfg.run_dir), len(cfg.venues),
                                           len(cfg.markets))
        assert self.actx is not None
        self.client = bus.LazyPirateClient(self.actx, bus.service_endpoint(cfg, self.params.execution),
                                           self.params.request_timeout_ms, attempts=3, bus=cfg.bus)
        # Recovery first: every transfer a previous incarnation left open is looked up.
        await self.manager.advance()
        self.spawn(self._loop(), name="rebalance")

    def on_message(self, topic: bytes, msg: BusMessage) -> None:
        if isinstance(msg, Position):
            self.position = msg

    def _alert(self, level: str, coin: str, text: str, kind: str) -> None:
        (self.log.error if level == "critical" else self.log.warning)("%s", text)
        now = time.time_ns()
        self.publish(topics.ALERT, Alert(level=level, market=f"KRW-{coin}",  # type: ignore[arg-type]  # level is warning|critical by construction
                                         text=text, kind=kind, ts_event=now, ts_init=now))

    async def _loop(self) -> None:
        while True:
            await self.manager.advance()
            await self.check_once()
            await asyncio.sleep(self.params.check_interval_ms / 1000)

    # -- deciding ---------------------------------------------------------------------------------

    def compute(self) -> dict[str, skew.Skew]:
        pos = self.position
        if pos is None:
            return {}
        transit = self.manager.in_transit()
        out = {}
        for coin in self.coins:
            free: dict[str, float] = {v: pos.balances.get(v, {}).get(coin, 0.0) for v in self.venues}
            out[coin] = skew.coin_skew(self.config.rebalance, coin,
                                       skew.usable(free, in_transit=transit.get(coin)), self.venues)
        krw: dict[str, float] = {v: pos.balances.get(v, {}).get("KRW", 0.0) for v in self.venues}
        out["KRW"] = skew.krw_skew(self.config.rebalance, krw, self.venues)
        return out

    async def check_once(self) -> None:
        await self._krw_transfers()
        self.skews = self.compute()
        now = time.monotonic()
        wait = self.config.rebalance.out_of_band_s
        for currency, s in self.skews.items():
            busy = currency != "KRW" and self.manager.open_for(currency) is not None
            if not s.out_of_band or busy:
                self.since.pop(currency, None)
                continue
            since = self.since.setdefault(currency, now)
            if now - since < wait:
                continue
            self.since.pop(currency, None)  # acted (or noted why not): the clock starts again
            if currency == "KRW":
                await self._fix_krw(s)
            else:
                await self._transfer(currency, s)

    async def _transfer(self, coin: str, s: skew.Skew) -> None:
        amount, fee, why = await self.manager.plan(coin, s)
        if why:
            self.last_note[coin] = why
            self.log.warning("%s out of band (%.0f %% off target) but not moved: %s", coin,
                             s.worst * 100, why)
            return
        rec = await self.manager.start(coin, s.heavy, s.light, amount, fee)
        self.last_note[coin] = (f"transfer {rec.transfer_id} {rec.state}" if rec is not None
                                else "no transfer started (address missing or one open)")

    async def _fix_krw(self, s: skew.Skew) -> None:
        """Buy on the KRW-heavy venue and sell on the light one in one hedged intent."""
        p = self.params
        if p.krw_trade_krw <= 0:
            self.last_note["KRW"] = "out of band; krw_trade_krw is 0 (KRW rebalancing off)"
            return
        buy, sell = s.heavy, s.light
        best: tuple[float, str, float, float] | None = None  # cost, market, ask, bid
        for market in self.config.markets:
            ask, bid = self._top(buy, market, "ask"), self._top(sell, market, "bid")
            if ask is None or bid is None:
                continue
            cost = (ask - bid) / ask * 1e4 + (self.fees[buy] + self.fees[sell]) * 1e4
            if best is None or cost < best[0]:
                best = (cost, market, ask, bid)
        if best is None or best[0] > p.krw_max_cost_bps:
            self.last_note["KRW"] = (f"no market within krw_max_cost_bps ({best[0]:.1f} bps)"
                                     if best else "no prices")
            return
        cost, market, ask, bid = best
        volume = float(f"{min(p.krw_trade_krw, s.to_target(buy)) / ask:.6f}")
        intent = Intent(intent_id="i" + uuid.uuid4().hex[:20], market=market, buy_venue=buy,
                        sell_venue=sell, volume=volume, buy_limit=ask, sell_limit=bid,
                        net_bps=-cost, ts_event=time.time_ns(), ts_init=time.time_ns())
        try:
            ack = await self.client.request(intent, intent.intent_id, id_field="intent_id")
        except bus.PeerUnavailable as exc:
            self.last_note["KRW"] = f"execution did not answer ({exc})"
            return
        ok = isinstance(ack, IntentAck) and ack.accepted
        self.krw_intents += ok
        if ok:
            self.krw_pending[intent.intent_id] = (market.split("-", 1)[1], buy, sell)
        self.last_note["KRW"] = (f"intent {intent.intent_id} {market} buy {buy} sell {sell} "
                                 f"{volume:g} at {cost:.1f} bps: "
                                 f"{'accepted' if ok else getattr(ack, 'reason', '?')}")
        self.log.info("KRW rebalancing: %s", self.last_note["KRW"])

    async def _krw_transfers(self) -> None:
        """A KRW intent done: send the coin it bought back to the venue it was sold on."""
        for intent_id, (coin, buy, sell) in list(self.krw_pending.items()):
            row = self.journal.db.execute("SELECT state FROM intents WHERE intent_id=?",
                                          (intent_id,)).fetchone()
            if row is None or row[0] in ("ACCEPTED", "RECONCILING"):
                continue
            del self.krw_pending[intent_id]
            got = self.journal.db.execute(
                "SELECT SUM(executed_volume) FROM legs WHERE intent_id=? AND venue=? AND "
                "side='buy'", (intent_id, buy)).fetchone()[0] or 0.0
            if row[0] != "DONE" or got <= 0 or self.manager.open_for(coin) is not None:
                self.last_note["KRW"] = f"intent {intent_id} {row[0]}: no coin to send back"
                continue
            chance = await self.clients[buy].withdraw_chance(coin)
            amount = floor_amount(min(got, chance.free - chance.fee))
            if amount < chance.minimum or not chance.can_withdraw:
                self.last_note["KRW"] = f"{got:g} {coin} under {buy}'s minimum: left to the skew"
                continue
            rec = await self.manager.start(coin, buy, sell, amount, chance.fee, purpose="krw")
            self.last_note["KRW"] = (f"intent {intent_id} done; transfer "
                                     f"{rec.transfer_id if rec else 'not started'}")

    def _top(self, venue: str, market: str, side: str) -> float | None:
        n = len(self.config.markets)
        top = self.table.read(self.venues.index(venue) * n + self.config.markets.index(market))
        if top is None or top.flags != VALID:
            return None
        return top.ask_px if side == "ask" else top.bid_px

    # -- visible ------------------------------------------------------------------------------------

    def report(self) -> dict[str, Any]:
        now = time.monotonic()
        return {
            "skew": {c: {"amounts": s.amounts, "shares": s.shares, "targets": s.targets,
                         "band": s.band, "out_of_band": s.out_of_band,
                         "out_for_s": round(now - self.since[c], 1) if c in self.since else 0.0}
                     for c, s in self.skews.items()},
            "transfers": [{"id": t.transfer_id, "coin": t.coin, "from": t.from_venue,
                           "to": t.to_venue, "amount": t.amount, "state": str(t.state),
                           "age_s": round((time.time_ns() - t.requested_ns) / 1e9, 1),
                           "stuck": bool(t.alerted)} for t in self.manager.open()],
            "counts": {"sent": self.manager.sent, "credited": self.manager.credited,
                       "failed": self.manager.failed, "krw_intents": self.krw_intents},
            "notes": self.last_note,
        }

    def on_command(self, cmd: str) -> str:
        if cmd == "rebal":
            return json.dumps(self.report(), separators=(",", ":"))
        raise ValueError(f"unknown command {cmd!r} (rebalancer: rebal)")

    def heartbeat_extra(self) -> dict[str, float]:
        worst = max((s.worst for c, s in self.skews.items() if c != "KRW"), default=0.0)
        return {"transfers_open": float(len(self.manager.open())),
                "transfers_sent": float(self.manager.sent),
                "transfers_credited": float(self.manager.credited),
                "worst_coin_skew": worst}

    async def on_stop(self) -> None:
        for c in self.clients.values():
            await c.close()
        self.journal.close()
        self.table.close()
