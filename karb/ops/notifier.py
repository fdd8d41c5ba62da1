"""The notifier: every alert notice to the log, and to each configured sink through its own
bounded queue, so a slow or failing sink never blocks the supervisor (a full queue drops the
notice and counts it).

Sinks: Telegram (bot API ``sendMessage``), a Slack- or Discord-compatible webhook (``text`` and
``content`` in one JSON body: each reads its own), a generic JSON webhook (the notice as JSON,
with ``Authorization: Bearer`` when a token is configured). Tokens and secret URLs are read from
the environment once; no log line carries them (errors name the sink and the HTTP status only).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import Counter
from dataclasses import asdict
from typing import Any

import aiohttp

from karb.config import SinkConfig
from karb.ops.alerts import Notice

log = logging.getLogger("karb.alerts")


class SinkUnusable(Exception):
    """A sink whose environment variable is missing; the message names the variable only."""


class Sink:
    def __init__(self, cfg: SinkConfig, index: int) -> None:
        self.cfg = cfg
        self.name = f"{cfg.kind}[{index}]"
        self.token = _env(cfg.token_env) if cfg.token_env else ""
        self.url = _env(cfg.url_env) if cfg.url_env else cfg.url
        if cfg.kind == "telegram":
            self.url = f"{cfg.api_url.rstrip('/')}/bot{self.token}/sendMessage"

    def request(self, n: Notice) -> tuple[dict[str, Any], dict[str, str]]:
        """The JSON body and headers for one notice."""
        line = _line(n)
        if self.cfg.kind == "telegram":
            return {"chat_id": self.cfg.chat_id, "text": line}, {}
        if self.cfg.kind == "slack":
            return {"text": line, "content": line}, {}
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return asdict(n), headers

    def __repr__(self) -> str:  # never the token or URL
        return f"Sink({self.name})"


class Notifier:
    def __init__(self, sinks: list[SinkConfig], queue_size: int) -> None:
        self.sinks: list[Sink] = []
        for i, cfg in enumerate(sinks):
            try:
                self.sinks.append(Sink(cfg, i))
            except SinkUnusable as exc:
                log.error("alert sink %s[%d] disabled: %s", cfg.kind, i, exc)
        self.queues: dict[str, asyncio.Queue[Notice]] = {
            s.name: asyncio.Queue(queue_size) for s in self.sinks}
        self.sent: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()
        self.dropped: Counter[str] = Counter()
        self.notices: Counter[tuple[str, str]] = Counter()  # (rule, status)

    def notify(self, n: Notice) -> None:
        """Log the notice and queue it for every sink; never waits."""
        self.notices[(n.rule, n.status)] += 1
        logger = log.critical if n.level == "critical" and n.status == "firing" else log.warning
        logger("ALERT %s", _line(n))
        for sink in self.sinks:
            try:
                self.queues[sink.name].put_nowait(n)
            except asyncio.QueueFull:
                self.dropped[sink.name] += 1

    async def run(self) -> None:
        """Deliver queued notices until cancelled (one worker per sink)."""
        if not self.sinks:
            return
        async with aiohttp.ClientSession() as session, asyncio.TaskGroup() as tg:
            for sink in self.sinks:
                tg.create_task(self._worker(session, sink))

    async def _worker(self, session: aiohttp.ClientSession, sink: Sink) -> None:
        queue = self.queues[sink.name]
        timeout = aiohttp.ClientTimeout(total=sink.cfg.timeout_ms / 1000)
        while True:
            n = await queue.get()
            body, headers = sink.request(n)
            try:
                async with session.post(sink.url, json=body, headers=headers,
                                        timeout=timeout) as resp:
                    await resp.read()
                    ok = resp.status < 300
                    status = str(resp.status)
            except (aiohttp.ClientError, TimeoutError) as exc:
                ok, status = False, type(exc).__name__  # str(exc) may carry the URL
            if ok:
                self.sent[sink.name] += 1
            else:
                self.failed[sink.name] += 1
                log.warning("alert sink %s failed (%s); %s %s not delivered there", sink.name,
                            status, n.rule, n.status)


def _line(n: Notice) -> str:
    mark = "RESOLVED" if n.status == "resolved" else n.level.upper()
    return f"[K-Arb {mark}] {n.rule} {n.subject}: {n.text}"


def _env(name: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        raise SinkUnusable(f"environment variable {name} is not set")
    return value
