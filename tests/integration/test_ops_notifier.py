"""The notifier against small local servers standing in for Telegram's bot API, a Slack/Discord
webhook and a JSON webhook (plus one that fails and one that hangs); and the hub's /metrics
families, which the Grafana dashboard's queries must name."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from aiohttp import web
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from karb.config import Config
from karb.messages import LegQuality, MarketStateUpdate, OrderEvent, Position
from karb.ops.alerts import Facts
from karb.ops.hub import OpsHub

REPO = Path(__file__).resolve().parents[2]
TG_TOKEN = "123456:tg-secret-token"
HOOK_TOKEN = "hook-secret-token"
SLACK_SECRET = "T000/B000/slack-secret-path"


class FakeSinks:
    def __init__(self) -> None:
        self.got: dict[str, list[tuple[dict[str, Any], dict[str, str]]]] = {}
        self.base = ""

    def app(self) -> web.Application:
        async def record(request: web.Request) -> web.Response:
            name = request.match_info["name"]
            self.got.setdefault(name, []).append((await request.json(), dict(request.headers)))
            if name == "fail":
                return web.json_response({"ok": False}, status=500)
            if name == "hang":
                await asyncio.sleep(0.6)  # past the sink's 300 ms timeout
            return web.json_response({"ok": True})

        async def telegram(request: web.Request) -> web.Response:
            assert request.match_info["token"] == TG_TOKEN
            self.got.setdefault("telegram", []).append((await request.json(), dict(request.headers)))
            return web.json_response({"ok": True, "result": {}})

        app = web.Application()
        app.router.add_post("/bot{token}/sendMessage", telegram)
        app.router.add_post("/hooks/{name}", record)
        app.router.add_post("/slack/{path:.*}", self.slack)
        return app

    async def slack(self, request: web.Request) -> web.Response:
        assert request.match_info["path"] == SLACK_SECRET
        self.got.setdefault("slack", []).append((await request.json(), dict(request.headers)))
        return web.Response(text="ok")


@pytest.fixture
async def sinks() -> AsyncIterator[FakeSinks]:
    fake = FakeSinks()
    runner = web.AppRunner(fake.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    fake.base = f"http://127.0.0.1:{port}"
    yield fake
    await runner.cleanup()


def make_config(alerts: dict[str, Any] | None = None) -> Config:
    return msgspec.convert({
        "markets": ["KRW-BTC", "KRW-ETH"],
        "venues": [{"name": "upbit"}, {"name": "bithumb"}],
        "actors": [{"name": "feed.upbit", "kind": "feed", "params": {"venue": "upbit"}},
                   {"name": "execution", "kind": "execution"}],
        "ops": {"alerts": alerts or {}}}, Config)


def status() -> dict[str, Any]:
    return {"actors": [{"name": "feed.upbit", "pid": 1, "state": "RUNNING", "restarts": 1,
                        "heartbeat_age_ms": 50.0, "rss_bytes": 1000, "cpu_percent": 2.0,
                        "loop_lag_us": 30, "msgs_in": 5, "msgs_out": 9, "gaps": 0,
                        "extra": {"age_ms.KRW-BTC": 12.0, "connects": 1.0}},
                       {"name": "execution", "pid": 2, "state": "RUNNING", "restarts": 0,
                        "heartbeat_age_ms": 50.0, "rss_bytes": 1000, "cpu_percent": 2.0,
                        "loop_lag_us": 30, "msgs_in": 5, "msgs_out": 9, "gaps": 0,
                        "extra": {"kill_switch": 0.0, "breaker_open": 0.0}}]}


async def wait_for(check: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_each_sink_gets_firing_and_resolved_once(
        sinks: FakeSinks, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("TEST_TG_TOKEN", TG_TOKEN)
    monkeypatch.setenv("TEST_SLACK_URL", f"{sinks.base}/slack/{SLACK_SECRET}")
    monkeypatch.setenv("TEST_HOOK_TOKEN", HOOK_TOKEN)
    hub = OpsHub(make_config({"queue_size": 2, "min_interval_s": 300, "sinks": [
        {"kind": "telegram", "api_url": sinks.base, "token_env": "TEST_TG_TOKEN", "chat_id": "42"},
        {"kind": "slack", "url_env": "TEST_SLACK_URL"},
        {"kind": "webhook", "url": f"{sinks.base}/hooks/json", "token_env": "TEST_HOOK_TOKEN"},
        {"kind": "webhook", "url": f"{sinks.base}/hooks/fail"},
        {"kind": "webhook", "url": f"{sinks.base}/hooks/hang", "timeout_ms": 300},
        {"kind": "telegram", "token_env": "TEST_UNSET_TOKEN", "chat_id": "1"}]}), status)
    assert len(hub.notifier.sinks) == 5  # the one without its variable is disabled, not fatal
    runner = asyncio.create_task(hub.notifier.run())
    try:
        hub.check_alerts(Facts(now=0.0, kill_switch=True))
        hub.check_alerts(Facts(now=1.0, kill_switch=True))  # still holding: nothing new
        hub.check_alerts(Facts(now=2.0))
        hub.check_alerts(Facts(now=3.0, kill_switch=True))  # flapping: rate-limited
        hub.check_alerts(Facts(now=4.0))

        def delivered() -> bool:
            return all(len(sinks.got.get(n, [])) >= 2 for n in ("telegram", "slack", "json", "fail"))
        await wait_for(delivered)
        await asyncio.sleep(0.1)  # nothing more arrives
        for name in ("telegram", "slack", "json", "fail"):
            assert len(sinks.got[name]) == 2, (name, sinks.got[name])
        (tg1, _), (tg2, _) = sinks.got["telegram"]
        assert tg1["chat_id"] == "42" and "kill_switch" in tg1["text"] and "RESOLVED" in tg2["text"]
        assert "kill_switch" in sinks.got["slack"][0][0]["content"]
        body, headers = sinks.got["json"][0]
        assert body["rule"] == "kill_switch" and body["status"] == "firing"
        assert headers["Authorization"] == f"Bearer {HOOK_TOKEN}"
        assert sinks.got["json"][1][0]["status"] == "resolved"
        await wait_for(lambda: hub.notifier.failed["webhook[3]"] == 2)

        # A burst past the queue (2) drops and counts, and never waits; a hanging sink does
        # not hold up the others.
        started = time.perf_counter()
        hub.check_alerts(Facts(now=10.0, halted=[f"KRW-C{i}" for i in range(8)]))
        assert time.perf_counter() - started < 0.05
        assert hub.notifier.dropped["webhook[4]"] >= 5 and hub.notifier.dropped["webhook[2]"] >= 5
        await wait_for(lambda: len(sinks.got.get("json", [])) == 2 + 8 - hub.notifier.dropped["webhook[2]"], 1.0)
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "ALERT [K-Arb CRITICAL] kill_switch" in text and "TEST_UNSET_TOKEN" in text
    for secret in (TG_TOKEN, HOOK_TOKEN, SLACK_SECRET):
        assert secret not in text
    assert TG_TOKEN not in repr(hub.notifier.sinks)


def scrape(hub: OpsHub) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(generate_latest(hub.registry).decode())}


def test_metrics_from_bus_messages_and_grafana_queries_name_them() -> None:
    hub = OpsHub(make_config(), status)
    hub.on_message(b"pos", Position(balances={"upbit": {"KRW": 5e6}}, inventory={
        "KRW-BTC": {"upbit": 1.0}}, pnl_krw={"KRW-BTC": 12.5}, pnl_total_krw=12.5,
        intents_done=1, fills=2, halted=["KRW-ETH"]))
    for state in ("PENDING", "SENT", "DONE"):
        hub.on_message(b"ord.upbit", OrderEvent(
            intent_id="i1", role="buy", venue="upbit", market="KRW-BTC", side="buy",
            client_id="i1-b", order_id="", state=state, price=1.0, volume=1.0,
            recv_mono=1_000_000, sent_mono=3_000_000 if state == "SENT" else 0))
    hub.on_message(b"xq.upbit.KRW-BTC", LegQuality(
        intent_id="i1", client_id="i1-b", role="buy", venue="upbit", market="KRW-BTC", side="buy",
        state="DONE", reference_px=100.0, avg_px=100.1, slippage_bps=10.0, fill_ratio=1.0,
        latency_s=0.02))
    hub.on_message(b"mstate.KRW-BTC", MarketStateUpdate(
        market="KRW-BTC", state="ranging", volatility_bps=1.0, trend_bps=0.0, efficiency=0.1,
        range_bps=3.0, spread_bps=2.0, depth_krw=1e7, samples=30))
    fams = scrape(hub)
    assert fams["karb_balance"].type == "gauge"
    assert [s.value for s in fams["karb_balance"].samples] == [5e6]
    assert fams["karb_actor_restarts"].type == "counter"
    assert {s.labels["state"]: s.value for s in fams["karb_legs"].samples} == {
        "PENDING": 1, "SENT": 1, "DONE": 1}
    ttt = fams["karb_tick_to_trade_seconds"]
    assert ttt.type == "histogram"
    assert [s.value for s in ttt.samples if s.name.endswith("_sum")] == [0.002]
    assert {s.labels["market"]: s.value for s in fams["karb_market_halted"].samples} == {
        "KRW-BTC": 0.0, "KRW-ETH": 1.0}
    assert {s.labels["state"] for s in fams["karb_market_state"].samples if s.value} == {"ranging"}
    series = set()
    for fam in fams.values():
        series.add(fam.name)
        series.update(s.name for s in fam.samples)
        if fam.type == "counter":
            series.add(fam.name + "_total")
        if fam.type == "histogram":
            series.update(fam.name + x for x in ("_bucket", "_sum", "_count"))
    dashboard = json.loads((REPO / "deploy/grafana/karb.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 12
    for expr in exprs:
        names = re.findall(r"\bkarb_[a-z_]+", expr)
        assert names, expr
        for name in names:
            assert name in series, f"{name} in {expr!r} is not a metric /metrics serves"
    rules = (REPO / "deploy/prometheus-rules.yml").read_text()
    for name in re.findall(r"\bkarb_[a-z_]+", rules):
        assert name in series, f"alerting rule uses unknown metric {name}"
