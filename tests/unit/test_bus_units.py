from __future__ import annotations

import random

import msgspec
import pytest

from karb.bus import GapTracker, ReplyCache
from karb.config import SupervisorConfig
from karb.messages import Heartbeat, decode, encode
from karb.supervision.restart import RestartPolicy, should_restart
from karb import topics


def test_gap_tracker_counts_gaps_per_publisher_and_topic() -> None:
    t = GapTracker()
    assert t.observe("a", b"x", 1, 5) == 0  # first sight: a slow joiner, not a gap
    assert t.observe("a", b"x", 1, 6) == 0
    assert t.observe("a", b"y", 1, 1) == 0  # another topic has its own sequence
    assert t.observe("a", b"x", 1, 9) == 2
    assert t.observe("b", b"x", 1, 1) == 0
    assert (t.gaps, t.restarts) == (2, 0)


def test_gap_tracker_sees_restarts_by_incarnation_or_seq_going_back() -> None:
    t = GapTracker()
    t.observe("a", b"x", 1, 10)
    assert t.observe("a", b"x", 2, 1) == 0
    assert t.observe("a", b"x", 2, 2) == 0
    assert t.observe("a", b"x", 2, 1) == 0  # same inc but seq went back: also a restart
    assert (t.gaps, t.restarts) == (0, 2)


def test_messages_round_trip_with_envelope() -> None:
    hb = Heartbeat(state="RUNNING", pid=7, rss_bytes=1, extra={"age_ms": 1.5}, src="a", inc=2,
                   seq=3, ts_event=4, ts_init=5)
    assert decode(encode(hb)) == hb
    with pytest.raises(msgspec.DecodeError):
        decode(b"\x93garbage")


def test_topics_refuse_malformed_parts() -> None:
    assert topics.heartbeat("feed.upbit") == b"hb.feed.upbit"
    with pytest.raises(ValueError):
        topics.heartbeat("bad topic")
    with pytest.raises(ValueError):
        topics.probe("")


def test_reply_cache_is_bounded() -> None:
    cache = ReplyCache(size=2)
    for i in range(3):
        cache.put(str(i), str(i).encode())
    assert cache.get("0") is None and cache.get("2") == b"2"


def test_restart_types() -> None:
    assert should_restart("permanent", 0) and should_restart("permanent", -9)
    assert should_restart("transient", 1) and not should_restart("transient", 0)
    assert not should_restart("temporary", -9)


def test_backoff_doubles_with_jitter_and_is_capped() -> None:
    cfg = SupervisorConfig(backoff_initial_ms=10, backoff_max_ms=50, max_restarts=100)
    policy = RestartPolicy(cfg, random.Random(1))
    delays = []
    for i in range(5):
        policy.record("a", float(i))
        delays.append(policy.backoff_s("a"))
    for got, base in zip(delays, [0.010, 0.020, 0.040, 0.050, 0.050]):
        assert base * 0.8 <= got <= base * 1.2


def test_intensity_limit_counts_only_within_the_period() -> None:
    policy = RestartPolicy(SupervisorConfig(max_restarts=2, period_s=10))
    assert policy.record("a", 0.0) and policy.record("b", 1.0)
    assert not policy.record("a", 2.0)  # third within 10 s
    policy2 = RestartPolicy(SupervisorConfig(max_restarts=2, period_s=10))
    assert policy2.record("a", 0.0) and policy2.record("a", 1.0) and policy2.record("a", 11.5)
