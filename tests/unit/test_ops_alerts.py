"""Alert rules: each fires once while it holds, resolves once, and is rate-limited."""

from __future__ import annotations

from pathlib import Path

import pytest

from karb.config import AlertsConfig, Config, ConfigError, load_config
from karb.ops.alerts import AlertRules, Facts

CFG = AlertsConfig(balance_floors={"upbit": {"KRW": 1_000_000.0}}, failed_intents=5,
                   stream_down_s=60.0, restarts=3, restarts_window_s=600.0, event_hold_s=30.0,
                   min_interval_s=300.0)


def firing(rules: AlertRules, f: Facts) -> list[tuple[str, str, str]]:
    return [(n.rule, n.subject, n.status) for n in rules.check(f)]


def test_every_rule_fires_once_and_resolves() -> None:
    rules = AlertRules(CFG)
    quiet = Facts(now=0.0, balances={"upbit": {"KRW": 5e6}}, feed_age_s={"upbit": 0.1},
                  feed_running={"upbit": True}, restarts={"book": 0})
    assert firing(rules, quiet) == []
    bad = Facts(now=1.0, balances={"upbit": {"KRW": 10.0}}, consecutive_failed=5,
                feed_age_s={"upbit": 61.0}, feed_running={"upbit": True}, halted=["KRW-BTC"],
                kill_switch=True, restarts={"book": 3},
                events=[("reconcile_mismatch", "KRW-ETH", "x"), ("fee_check", "", "fee")])
    got = firing(rules, bad)
    assert sorted(got) == sorted([
        ("balance_low", "upbit/KRW", "firing"), ("intent_failures", "all", "firing"),
        ("stream_down", "upbit", "firing"), ("halt", "KRW-BTC", "firing"),
        ("kill_switch", "all", "firing"), ("actor_restarts", "book", "firing"),
        ("mismatch", "KRW-ETH", "firing"), ("fee_check", "all", "firing")])
    bad.now, bad.events = 2.0, []
    assert firing(rules, bad) == []  # still holding: deduplicated
    ok = Facts(now=700.0, balances={"upbit": {"KRW": 5e6}}, feed_age_s={"upbit": 0.1},
               feed_running={"upbit": True}, restarts={"book": 3})
    assert sorted(firing(rules, ok)) == sorted([(r, s, "resolved") for r, s, _ in got])


def test_a_flapping_rule_is_rate_limited() -> None:
    rules = AlertRules(CFG)
    on, off = Facts(now=0.0, kill_switch=True), Facts(now=1.0)
    assert firing(rules, on) == [("kill_switch", "all", "firing")]
    assert firing(rules, off) == [("kill_switch", "all", "resolved")]
    on.now, off.now = 2.0, 3.0
    assert firing(rules, on) == [] and firing(rules, off) == []  # inside min_interval_s
    assert rules.suppressed == 2
    on.now = 400.0
    assert firing(rules, on) == [("kill_switch", "all", "firing")]


def test_feed_not_running_long_enough_is_stream_down() -> None:
    rules = AlertRules(CFG)
    assert firing(rules, Facts(now=0.0, feed_running={"bithumb": False})) == []
    assert firing(rules, Facts(now=59.0, feed_running={"bithumb": False})) == []
    assert firing(rules, Facts(now=61.0, feed_running={"bithumb": False})) == [
        ("stream_down", "bithumb", "firing")]
    assert firing(rules, Facts(now=62.0, feed_running={"bithumb": True},
                               feed_age_s={"bithumb": 0.2})) == [("stream_down", "bithumb", "resolved")]


def test_restarts_count_only_inside_the_window() -> None:
    rules = AlertRules(CFG)
    for t, n in ((0.0, 0), (1.0, 1), (2.0, 2)):
        assert firing(rules, Facts(now=t, restarts={"feed.upbit": n})) == []
    assert firing(rules, Facts(now=700.0, restarts={"feed.upbit": 3})) == []  # two are old


def test_ops_config_errors_name_the_key(tmp_path: Path) -> None:
    def load(ops: str) -> Config:
        path = tmp_path / "c.yaml"
        path.write_text(f"ops: {ops}\nactors:\n  - {{name: a, kind: probe_source}}\n")
        return load_config(path)

    assert load("{}").ops.dashboard.token_env == "KARB_DASHBOARD_TOKEN"
    with pytest.raises(ConfigError, match=r"ops\.alerts\.failed_intnets: unknown key \(allowed here: "
                       r"enabled, balance_floors, failed_intents"):
        load("{alerts: {failed_intnets: 3}}")
    with pytest.raises(ConfigError, match=r"ops\.alerts\.sinks\[0\]: a telegram sink needs token_env"):
        load("{alerts: {sinks: [{kind: telegram, chat_id: '1'}]}}")
    with pytest.raises(ConfigError, match=r"ops\.alerts\.sinks\[0\]\.kind"):
        load("{alerts: {sinks: [{kind: pager}]}}")
