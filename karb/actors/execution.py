"""``execution``: the only actor that moves money (logic in ``karb.execution``).

Start: open the journal, fetch balances, reconcile every leg the journal left open — only then
bind the intent socket and report RUNNING, so no intent is accepted before the past is settled.
Intents arrive on a REP socket (answered after risk checks and the journal write, before the
legs complete). While running, a reconciliation sweep every ``reconcile_interval_s`` compares
the venues' orders and balances with the journal (karb.execution.reconcile). In live mode one
private WebSocket per venue (myOrder) is kept open: legs take their final state and fills from
it, and poll REST only while it is down or silent (``private_stream``, ``stream_wait_ms``).

Commands: ``kill`` / ``resume`` (a ``KILL`` file in the run dir works too); ``unhalt <market>``
lifts a halt (halts survive restarts); ``ack-balances`` accepts a balance difference an operator
has checked; ``reconcile`` runs a sweep now; ``algo NAME|auto VENUE MARKET buy|sell VOLUME LIMIT
[HORIZON_S [URGENCY]]`` runs an execution algorithm (karb.execution.algos; ``auto``: the
optimizer picks it from the market state on ``mstate.*``) and ``algos`` shows those running
and the measured quality per algorithm and state. Modes: ``live`` (the venues), ``paper`` (fills
against the live book with simulated balances), ``dry_run`` (real balances and books, logs the
orders it would send). Stops last, after its legs finish.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from typing import Any, Literal

import msgspec
import zmq

from karb import bus, topics
from karb.actors.base import Actor
from karb.config import Config, ConfigError
from karb.exchanges.client import VenueClient
from karb.exchanges.credentials import resolve
from karb.exchanges.private_stream import PrivateOrderStream
from karb.exchanges.registry import make_client
from karb.execution.algos import AlgoOrder, MarketView, make_algo
from karb.execution.algos.optimizer import AlgoOptimizer, size_basis
from karb.execution.algos.runner import AlgoRunner, new_algo_id
from karb.execution.algos.schedules import slice_count
from karb.execution.executor import Executor
from karb.execution.journal import Journal
from karb.execution.reconcile import Reconciler
from karb.execution.simulated import DryRunClient, PaperClient
from karb.execution.stream_book import StreamBook
from karb.execution.tops import ShmTops
from karb.messages import (BusMessage, DepthUpdate, Intent, IntentAck, MarketStateUpdate, decode,
                           encode)
from karb.shm import TopOfBookTable, segment_path
from karb.trading.limits import ExecutionLimits
from karb.trading.risk import CircuitBreaker, KillSwitch


class ExecutionParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    mode: Literal["live", "paper", "dry_run"] = "live"
    max_notional_krw: float = 2_000_000.0
    # Launch cap in BTC terms (prod: 0.01); converted at the live KRW-BTC price.
    max_notional_btc: float | None = None
    max_inventory_krw: float = 200_000_000.0
    stale_after_ms: int = 2000
    hedge_loss_bps: float = 30.0
    leg_timeout_ms: int = 5000
    poll_interval_ms: int = 50
    # "Not found" after an unanswered order POST means "never sent" only this long after the
    # last request for it gave up (see karb.execution.legs; measured in the issue note).
    settle_ms: int = 1000
    # Every leg is final (or UNKNOWN, and its market halted) this long after it is sent.
    leg_deadline_ms: int = 15_000
    hedge_attempts: int = 4
    hedge_retry_ms: int = 250
    reconcile_interval_s: float = 5.0
    balance_tolerance_krw: float = 100.0
    breaker_failures: int = 3
    breaker_open_s: float = 30.0
    balance_refresh_s: float = 5.0
    journal_sync: Literal["normal", "full"] = "normal"
    # live mode: follow legs by each venue's private WebSocket (myOrder), REST polling only
    # while it is down or silent past stream_wait_ms (karb.execution.legs). Off: REST only.
    private_stream: bool = True
    stream_wait_ms: int = 250
    # paper mode: venue → currency → starting amount
    paper_balances: dict[str, dict[str, float]] = {}


class Execution(Actor):
    Params = ExecutionParams

    @classmethod
    def preflight(cls, config: Config, params: Any) -> None:
        if params.max_notional_btc is not None and "KRW-BTC" not in config.markets:
            raise ConfigError(f"config error: {config.path}: execution.params.max_notional_btc "
                              "needs KRW-BTC in markets (its price converts the cap)")
        if params.mode in ("live", "dry_run"):  # a dry run reads balances with the real keys
            for venue in config.venues:
                resolve(config, venue)  # ConfigError naming the missing variable

    def subscriptions(self) -> list[tuple[str, bytes]]:
        subs = [("book", topics.DEPTH)] if self.params.mode == "paper" else []
        # market states for the execution algorithms' optimizer and adaptive schedule
        subs += [(a.name, topics.MARKET_STATE) for a in self.config.actors if a.kind == "monitor"]
        return subs

    async def on_start(self) -> None:
        cfg, p = self.config, self.params
        self.depth: dict[tuple[str, str], DepthUpdate] = {}
        self.table = TopOfBookTable.attach(segment_path(cfg.run_dir), len(cfg.venues), len(cfg.markets))
        self.clients: dict[str, VenueClient] = {}
        for venue in cfg.venues:
            if p.mode == "paper":
                self.clients[venue.name] = PaperClient(
                    venue.name, lambda v, m: self.depth.get((v, m)),
                    p.paper_balances.get(venue.name, {}), venue.fee)
            elif p.mode == "dry_run":
                self.clients[venue.name] = DryRunClient(make_client(cfg, venue))
            else:
                self.clients[venue.name] = make_client(cfg, venue)
        self.journal = Journal(cfg.run_dir / "journal.sqlite", p.journal_sync)
        self.executor = Executor(
            self.clients, self.journal,
            ExecutionLimits(p.max_notional_krw, p.max_inventory_krw, p.stale_after_ms,
                            p.hedge_loss_bps, p.leg_timeout_ms, p.poll_interval_ms,
                            settle_ms=p.settle_ms, leg_deadline_ms=p.leg_deadline_ms,
                            max_notional_btc=p.max_notional_btc, hedge_attempts=p.hedge_attempts,
                            hedge_retry_ms=p.hedge_retry_ms,
                            balance_tolerance_krw=p.balance_tolerance_krw,
                            stream_wait_ms=p.stream_wait_ms),
            {v.name: v.fee for v in cfg.venues}, self.publish,
            ShmTops(self.table, [v.name for v in cfg.venues], list(cfg.markets)),
            CircuitBreaker(p.breaker_failures, p.breaker_open_s),
            KillSwitch(cfg.run_dir / "KILL"), list(cfg.markets), self._private_streams())
        self.reconciler = Reconciler(self.executor)
        self.running: set[asyncio.Task[None]] = set()
        self.mstate: dict[str, MarketStateUpdate] = {}
        self.tops = ShmTops(self.table, [v.name for v in cfg.venues], list(cfg.markets))
        self.algos = AlgoRunner(self.executor.legs, self.journal, self._view,
                                child_deadline_s=p.leg_deadline_ms / 1000,
                                busy=self.executor.settling, guard=self.executor.child_refusal,
                                cap=self.executor.notional_cap)
        self.optimizer = AlgoOptimizer()
        await self.executor.refresh_balances()
        started = time.monotonic()
        # A POST in flight when the previous incarnation died may land until about now: the
        # settle window of its legs cannot start earlier. Recovery first (a position may be
        # one-sided), the fee check after: both come before any intent is accepted.
        legs = await self.executor.recover_open(not_before_ns=time.time_ns())
        self.log.info("mode %s; journal replayed: %d open legs reconciled in %.0f ms", p.mode,
                      legs, (time.monotonic() - started) * 1000)
        if p.mode != "paper" and cfg.markets:
            await self.executor.check_fees(cfg.markets[0])
        for market, reason in self.journal.halted().items():
            self.log.warning("%s stays halted (%s); 'unhalt %s' to trade it again", market,
                             reason, market)
        self.executor.publish_position()
        for stream in self.streams:
            # Reconnecting with back-off is the stream's own job; it runs until we stop.
            self.spawn(stream.run(), name=f"private-{stream.venue}")
        self.spawn(self._serve_intents(), name="intents")
        self.spawn(self._refresh(), name="balances")
        self.spawn(self._summary(), name="summary")
        self.spawn(self._watch_kill_switch(), name="kill-switch")
        if p.mode == "live":
            self.spawn(self._reconcile(), name="reconcile")

    def _private_streams(self) -> dict[str, StreamBook]:
        """One private stream per venue in live mode (paper and dry runs send no orders).
        Bithumb's legacy API has no private stream of its own: its legs are polled."""
        self.streams: list[PrivateOrderStream] = []
        books: dict[str, StreamBook] = {}
        if self.params.mode != "live" or not self.params.private_stream:
            return books
        for venue in self.config.venues:
            if venue.api == "legacy" or not venue.ws_url:
                continue
            book = books[venue.name] = StreamBook(venue.name)
            stream = PrivateOrderStream(venue.name, venue.ws_url, resolve(self.config, venue),
                                        book.on_update, markets=list(self.config.markets),
                                        on_gap=book.on_gap)
            book.connected = stream.connected  # followers poll REST while it is clear
            self.streams.append(stream)
        return books

    def on_message(self, topic: bytes, msg: BusMessage) -> None:
        if isinstance(msg, DepthUpdate):
            self.depth[(msg.venue, msg.market)] = msg
        elif isinstance(msg, MarketStateUpdate):
            self.mstate[msg.market] = msg

    def _view(self, venue: str, market: str) -> MarketView | None:
        quote = self.tops.quote(venue, market)
        if quote is None:
            return None
        m = self.mstate.get(market)
        if m is None:
            return MarketView(quote.bid, quote.ask)
        return MarketView(quote.bid, quote.ask, m.state, volume_profile=m.volume_profile)

    def _start_algo(self, args: list[str]) -> str:
        """``algo NAME|auto VENUE MARKET SIDE VOLUME LIMIT [HORIZON_S [URGENCY]]``."""
        usage = "usage: algo NAME|auto VENUE MARKET buy|sell VOLUME LIMIT [HORIZON_S [URGENCY]]"
        if len(args) < 6:
            raise ValueError(usage)
        name, venue, market, side = args[:4]
        try:
            volume, limit = float(args[4]), float(args[5])
            horizon = float(args[6]) if len(args) > 6 else 60.0
            urgency = float(args[7]) if len(args) > 7 else 0.5
        except ValueError:
            raise ValueError(usage) from None
        if venue not in self.clients or market not in self.config.markets \
                or side not in ("buy", "sell") or volume <= 0 or limit <= 0:
            raise ValueError(usage)
        ex = self.executor
        if ex.kill.engaged() or market in ex.halted or ex.balance_hold:
            raise ValueError("not now: kill switch, halt or balance hold")
        view = self._view(venue, market)
        order = AlgoOrder(venue, market, side, volume, limit, horizon_s=horizon,  # type: ignore[arg-type]  # side checked above
                          urgency=urgency, display_volume=volume / 5)
        if name == "auto":
            # Size against the recent traded volume of both venues (the monitor's, from the
            # trade streams); top-of-book depth before there is any.
            m = self.mstate.get(market)
            quote = self.tops.quote(venue, market)
            basis = size_basis(m.recent_volume if m else 0.0,
                               m.volume_profile if m else (),
                               (quote.bid_size + quote.ask_size) if quote else 0.0,
                               slice_count(order))
            choice = self.optimizer.choose(view.state if view else "normal", volume,
                                           basis.recent_volume, urgency,
                                           has_profile=basis.has_profile)
            name, why = choice.algo, f"{choice.source}: {choice.reason} ({basis.source})"
        else:
            why = "asked for"
        algo = make_algo(name)  # ValueError names the known ones
        algo_id = new_algo_id()

        async def run() -> None:
            result = await self.algos.run(algo, order, algo_id)
            self.optimizer.record(result)
            await self.executor.refresh_balances()
            self.executor.publish_position()

        task = self.spawn(run(), name=f"algo-{algo_id}")
        self.running.add(task)
        task.add_done_callback(self.running.discard)
        return f"algo {algo_id} {name} ({why}) {side} {volume:g} {market} on {venue}"

    def _algos(self) -> str:
        running = [{"id": i, "algo": n, "venue": o.venue, "market": o.market, "side": o.side,
                    "volume": o.volume, "filled": p.filled, "children": p.children}
                   for i, (n, o, p) in self.algos.progress.items()]
        quality = {state: {a: dataclasses.asdict(q) for a, q in per.items()}
                   for state, per in self.optimizer.table().items()}
        return json.dumps({"running": running, "quality": quality}, separators=(",", ":"))

    async def _serve_intents(self) -> None:
        assert self.actx is not None
        sock = self.actx.socket(zmq.REP)
        sock.setsockopt(zmq.LINGER, 0)
        bus.bind(sock, bus.service_endpoint(self.config, self.name))  # 0600 over ipc
        try:
            while True:
                payload = await sock.recv()
                try:
                    intent = decode(payload)
                except msgspec.DecodeError as exc:
                    await sock.send(encode(IntentAck(intent_id="", accepted=False,
                                                     reason=f"malformed: {exc}")))
                    continue
                if not isinstance(intent, Intent):
                    await sock.send(encode(IntentAck(intent_id="", accepted=False,
                                                     reason="expected an intent")))
                    continue
                # Risk checks and the journal write; legs only for a newly accepted intent (a
                # resent intent id gets its first answer and starts nothing).
                accepted = self.executor.accept(intent)
                if accepted.legs:
                    # The legs start while the answer is on its way: it still precedes their
                    # completion, and the journal already holds them.
                    task = self.spawn(self.executor.run(intent, accepted.legs), name=intent.intent_id)
                    self.running.add(task)
                    task.add_done_callback(self.running.discard)
                await sock.send(encode(accepted.ack))
        finally:
            sock.close(linger=0)

    async def _refresh(self) -> None:
        while True:
            await asyncio.sleep(self.params.balance_refresh_s)
            if not self.executor.open:
                self.journal.checkpoint()  # off the critical path: nothing is in flight
                await self.executor.refresh_balances()
            self.executor.publish_position()

    async def _reconcile(self) -> None:
        while True:
            await asyncio.sleep(self.params.reconcile_interval_s)
            await self.reconciler.sweep()

    async def _watch_kill_switch(self) -> None:
        """Say so in the log when the kill switch changes (KILL file or command)."""
        engaged = False
        while True:
            now = self.executor.kill.engaged()
            if now != engaged:
                engaged = now
                if engaged:
                    self.log.warning("kill switch engaged: no new intents (rm %s or 'resume')",
                                     self.executor.kill.path)
                else:
                    self.log.warning("kill switch released: trading")
            await asyncio.sleep(0.25)

    async def _summary(self) -> None:
        while True:
            await asyncio.sleep(60)
            ex = self.executor
            skew = {m: {v: round(q, 6) for v, q in inv.items()}
                    for m, inv in self._inventory().items()}
            self.log.info("summary: intents %d, fills %d, realised %+.0f KRW, open %d, halted %s, "
                          "breaker %s, inventory %s", ex.ledger.intents_done, ex.ledger.fills,
                          ex.ledger.total, len(ex.open), sorted(ex.halted) or "none",
                          ex.breaker.state, skew)

    def _inventory(self) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {}
        for market in self.config.markets:
            coin = market.split("-", 1)[1]
            out[market] = {v: self.executor.total.get((v, coin), 0.0) for v in self.clients}
        return out

    def on_subscribe(self, prefix: bytes) -> None:
        if topics.POSITION.startswith(prefix):  # a strategy (re)joined: it needs balances now
            self.executor.publish_position()

    def on_command(self, cmd: str) -> str:
        detail = self._command(cmd)
        self.executor.publish_position()  # the strategy learns halts and kills from pos: now
        return detail

    def _command(self, cmd: str) -> str:
        if cmd == "kill":
            self.executor.kill.commanded = True
            self.log.warning("kill switch engaged by command: no new intents")
            return "kill switch engaged"
        if cmd == "resume":
            self.executor.kill.commanded = False
            self.log.warning("kill switch released by command")
            return "trading resumed"
        if cmd == "ack-balances":
            return self.reconciler.acknowledge()
        if cmd == "reconcile":
            task = self.spawn(self.reconciler.sweep(), name="reconcile-now")
            self.running.add(task)
            task.add_done_callback(self.running.discard)
            return "reconciliation sweep started"
        if cmd.startswith("algo "):
            return self._start_algo(cmd.split()[1:])
        if cmd == "algos":
            return self._algos()
        if cmd.startswith("unhalt "):
            market = cmd.split(" ", 1)[1]
            self.executor.halted.discard(market)
            if not self.journal.unhalt(market):
                raise ValueError(f"{market} is not halted")
            self.log.warning("%s unhalted by command", market)
            return f"{market} unhalted"
        return super().on_command(cmd)

    def heartbeat_extra(self) -> dict[str, float]:
        ex = self.executor
        st = self.reconciler.stats
        return {"open_intents": float(len(ex.open)), "pnl_krw": round(ex.ledger.total, 2),
                "reconcile_sweeps": float(st.sweeps), "reconcile_ingested": float(st.ingested),
                "reconcile_corrected": float(st.corrected),
                "balance_hold": float(bool(ex.balance_hold)),
                "stale_venues": float(len(ex.stale_venues)),
                "intents_done": float(ex.ledger.intents_done), "halted": float(len(ex.halted)),
                "breaker_open": float(ex.breaker.state != "CLOSED"),
                "kill_switch": float(ex.kill.engaged()),
                "private_streams_up": float(sum(s.connected.is_set() for s in self.streams))}

    async def on_stop(self) -> None:
        await self.reconciler.close()
        if self.running:
            self.log.info("waiting for %d intents to finish", len(self.running))
            await asyncio.wait(self.running, timeout=self.params.leg_deadline_ms / 1000 + 2)
        for client in self.clients.values():
            await client.close()
        self.journal.close()
        self.table.close()
