"""The supervisor's operations hub: one object the supervisor feeds bus messages to, which serves
``/metrics``, the live page and its controls, runs the alert rules and the notifier, and speaks
sd_notify. Everything here is built from the bus and the supervisor's own status; nothing
scrapes the actors.

The supervisor's hooks: ``prefixes()`` to subscribe to, ``on_message()`` for each message,
``add_routes()`` on its HTTP app, ``run()`` in its TaskGroup, ``ready()`` once every actor is
RUNNING and ``stopping()`` when a stop begins.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from collections.abc import Callable
from typing import Any

import zmq.asyncio
from aiohttp import web
from prometheus_client import CollectorRegistry, Histogram

from karb import bus, topics
from karb.config import Config
from karb.messages import (
    BusMessage,
    ControlReply,
    ControlRequest,
    LegQuality,
    OrderEvent,
    Position,
)
from karb.ops import sdnotify
from karb.ops.alerts import AlertRules, Facts
from karb.ops.books import BookReader
from karb.ops.notifier import Notifier
from karb.ops.state import OpsState
from karb.shm import TopOfBookTable

log = logging.getLogger("karb.ops")

StatusFn = Callable[[], dict[str, Any]]
LATENCY_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                     2.5, 5.0, 10.0)
SLIPPAGE_BUCKETS_BPS = (-50.0, -20.0, -10.0, -5.0, -2.0, 0.0, 2.0, 5.0, 10.0, 20.0, 50.0)


class OpsHub:
    def __init__(self, config: Config, status: StatusFn) -> None:
        self.config = config
        self.cfg = config.ops
        self.status = status
        self.state = OpsState()
        self.books: BookReader | None = None
        self.rules = AlertRules(self.cfg.alerts)
        self.notifier = Notifier(self.cfg.alerts.sinks if self.cfg.alerts.enabled else [],
                                 self.cfg.alerts.queue_size)
        self.registry = CollectorRegistry(auto_describe=False)
        self.tick_to_trade = Histogram(
            "karb_tick_to_trade_seconds", "Feed receipt of the frame that opened a window to the "
            "leg's request leaving for the venue", buckets=LATENCY_BUCKETS_S, registry=self.registry)
        self.leg_latency = Histogram(
            "karb_leg_latency_seconds", "A leg sent to its final state", ["venue"],
            buckets=LATENCY_BUCKETS_S, registry=self.registry)
        self.slippage = Histogram(
            "karb_leg_slippage_bps", "A filled leg's average price against the signal's, in bps "
            "(positive: worse)", ["venue"], buckets=SLIPPAGE_BUCKETS_BPS, registry=self.registry)
        self.feed_venue = {a.name: str(a.params.get("venue", "")) for a in config.actors
                           if a.kind == "feed"}
        self.execution = next((a.name for a in config.actors if a.kind == "execution"), None)
        self.ready_sent = False
        self._ready = asyncio.Event()
        self.pnl_day: tuple[str, float] | None = None  # (local date, total PnL at its first look)
        self._actx: zmq.asyncio.Context | None = None
        self._control_lock = asyncio.Lock()
        from karb.ops.metrics import OpsCollector  # the collector reads this hub
        self.registry.register(OpsCollector(self))

    # -- supervisor hooks -----------------------------------------------------------------------

    def prefixes(self) -> list[bytes]:
        return [topics.POSITION, topics.ALERT, topics.ORDER, topics.FILL, topics.SIGNAL,
                topics.MARKET_STATE, topics.LEG_QUALITY]

    def attach_table(self, table: TopOfBookTable) -> None:
        self.books = BookReader(self.config, table)

    def on_message(self, topic: bytes, msg: BusMessage) -> None:
        self.state.on_message(msg)
        if isinstance(msg, Position):
            today = time.strftime("%Y-%m-%d")
            if self.pnl_day is None or self.pnl_day[0] != today:
                # The first PnL of the day (or of this supervisor) is the base of "today".
                self.pnl_day = (today, msg.pnl_total_krw)
        elif isinstance(msg, OrderEvent):
            if msg.state == "SENT" and msg.sent_mono and msg.recv_mono and msg.role != "hedge":
                self.tick_to_trade.observe(max(0, msg.sent_mono - msg.recv_mono) / 1e9)
        elif isinstance(msg, LegQuality):
            if msg.latency_s >= 0:
                self.leg_latency.labels(msg.venue).observe(msg.latency_s)
            if msg.avg_px > 0 and msg.reference_px > 0:
                self.slippage.labels(msg.venue).observe(msg.slippage_bps)

    def add_routes(self, app: web.Application) -> None:
        from karb.ops.dashboard import add_dashboard_routes
        from karb.ops.metrics import add_metrics_route
        if self.cfg.metrics:
            add_metrics_route(app, self.registry)
        add_dashboard_routes(app, self)

    def ready(self) -> None:
        if not self.ready_sent:
            self.ready_sent = True
            sdnotify.notify("READY=1\nSTATUS=all actors running")
            self._ready.set()

    def stopping(self) -> None:
        sdnotify.notify("STOPPING=1")

    async def run(self) -> None:
        """Alert checks, the notifier and the systemd watchdog, until cancelled."""
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self.notifier.run())
                if self.cfg.alerts.enabled:
                    tg.create_task(self._check_loop())
                interval = sdnotify.watchdog_interval_s()
                if interval is not None:
                    tg.create_task(self._watchdog(interval))
        finally:
            if self._actx is not None:
                self._actx.destroy(linger=0)
                self._actx = None

    # -- alerts ---------------------------------------------------------------------------------

    async def _check_loop(self) -> None:
        interval = self.cfg.alerts.check_interval_ms / 1000
        seen_alerts = 0
        while True:
            await asyncio.sleep(interval)
            new = [a for a in list(self.state.bus_alerts)[seen_alerts:]] if seen_alerts < len(
                self.state.bus_alerts) else []
            seen_alerts = len(self.state.bus_alerts)
            self.check_alerts(self.facts([(a.kind, a.market, a.text) for a in new]))

    def check_alerts(self, facts: Facts) -> None:
        for notice in self.rules.check(facts):
            self.notifier.notify(notice)
            self.state.note_alert({"ts": notice.ts, "level": notice.level, "rule": notice.rule,
                                   "market": notice.subject, "status": notice.status,
                                   "text": notice.text, "src": "supervisor"})

    def facts(self, events: list[tuple[str, str, str]]) -> Facts:
        status = self.status()
        f = Facts(now=time.monotonic(), events=events,
                  consecutive_failed=self.state.consecutive_failed)
        pos = self.state.position
        if pos is not None:
            f.balances = pos.balances
            f.halted = list(pos.halted)
        for actor in status["actors"]:
            f.restarts[actor["name"]] = actor["restarts"]
            venue = self.feed_venue.get(actor["name"])
            if venue:
                f.feed_running[venue] = actor["state"] == "RUNNING"
                ages = [v for k, v in actor["extra"].items() if k.startswith("age_ms.") and v >= 0]
                if ages and actor["state"] == "RUNNING":
                    f.feed_age_s[venue] = min(ages) / 1000
            if actor["name"] == self.execution:
                f.kill_switch = actor["extra"].get("kill_switch", 0.0) > 0
        return f

    async def _watchdog(self, interval: float) -> None:
        """``WATCHDOG=1`` while the supervisor's loop runs and no actor is hung past twice the
        heartbeat timeout (the supervisor kills hung actors sooner than that when it is well)."""
        limit_ms = 2 * self.config.supervisor.heartbeat_timeout_ms
        await self._ready.wait()  # systemd's start timeout covers the start, not the watchdog
        while True:
            actors = self.status()["actors"]
            if all(a["state"] != "RUNNING" or (a["heartbeat_age_ms"] or 0) < limit_ms
                   for a in actors):
                sdnotify.notify("WATCHDOG=1")
            await asyncio.sleep(interval)

    # -- controls ---------------------------------------------------------------------------------

    def token(self) -> str:
        return os.environ.get(self.cfg.dashboard.token_env, "")

    async def control(self, cmd: str) -> tuple[bool, str]:
        """Send a control command (kill, resume, unhalt MARKET) to the execution actor."""
        if self.execution is None:
            return False, "no execution actor in this config"
        if self._actx is None:
            self._actx = zmq.asyncio.Context()
        async with self._control_lock:
            client = bus.LazyPirateClient(self._actx, bus.control_endpoint(self.config, self.execution),
                                          timeout_ms=1500, attempts=2)
            req_id = uuid.uuid4().hex
            try:
                reply = await client.request(ControlRequest(req_id=req_id, cmd=cmd), req_id)
            except bus.PeerUnavailable as exc:
                return False, str(exc)
            finally:
                client.close()
        if not isinstance(reply, ControlReply):
            return False, "unexpected reply"
        return reply.ok, reply.detail if reply.ok else reply.error
