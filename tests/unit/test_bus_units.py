from __future__ import annotations

import asyncio
import random
import time

import msgspec
import pytest
import zmq

from karb.bus import GapTracker, Publisher, ReplyCache, Subscriber
from karb.config import BusConfig, SupervisorConfig
from karb.messages import BusMessage, Heartbeat, Probe, decode, encode
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
    policy = RestartPolicy(cfg, 1000, random.Random(1))
    delays = []
    for i in range(5):
        policy.record("a", float(i))
        delays.append(policy.backoff_s("a"))
    for got, base in zip(delays, [0.010, 0.020, 0.040, 0.050, 0.050]):
        assert base * 0.8 <= got <= base * 1.2


def test_intensity_limit_counts_each_actor_within_the_period() -> None:
    policy = RestartPolicy(SupervisorConfig(max_restarts=2, period_s=10), backstop=100)
    assert policy.record("a", 0.0) is None and policy.record("b", 1.0) is None
    assert policy.record("a", 2.0) is None  # a's second: others' restarts do not count for a
    exceeded = policy.record("a", 3.0)  # a's third within 10 s
    assert exceeded is not None and "actor a" in exceeded and "supervisor.max_restarts" in exceeded
    policy2 = RestartPolicy(SupervisorConfig(max_restarts=2, period_s=10), backstop=100)
    assert all(policy2.record("a", t) is None for t in (0.0, 1.0, 11.5))


def test_one_crash_of_every_actor_fits_but_the_backstop_still_trips() -> None:
    actors = [f"actor{i}" for i in range(6)]
    cfg = SupervisorConfig(max_restarts=5, period_s=30)
    policy = RestartPolicy(cfg, backstop=cfg.max_restarts + len(actors))  # the default: 11
    assert all(policy.record(name, float(i)) is None for i, name in enumerate(actors))
    for i, name in enumerate(actors[:5]):  # a second crash of five of them: 11 in all
        assert policy.record(name, 6.0 + i) is None
    exceeded = policy.record("actor5", 12.0)  # 12th: no actor past its own limit of 5
    assert exceeded is not None and "max_restarts_total" in exceeded and "actor5" in exceeded


async def test_a_failing_handler_detaches_the_subscriber_and_is_reported_once() -> None:
    """Not left to the loop's exception handler (which would log it and leave the socket deaf):
    the subscriber stops delivering and hands the exception over, once."""
    ctx = zmq.Context()
    cfg = BusConfig()
    pub = Publisher(ctx, "inproc://failing-handler", "src", 1, cfg)
    seen: list[BusMessage] = []
    errors: list[BaseException] = []

    def handler(topic: bytes, msg: BusMessage) -> None:
        seen.append(msg)
        raise RuntimeError("handler failed")

    sub = Subscriber(ctx, cfg, handler, on_error=errors.append)
    try:
        sub.connect(["inproc://failing-handler"])
        sub.subscribe([b"probe."])
        sub.attach(asyncio.get_running_loop())
        deadline = time.monotonic() + 5
        while not errors:  # the first messages may go before the subscription lands
            assert time.monotonic() < deadline, "the handler never ran"
            pub.publish(b"probe.src", Probe(n=len(seen)))
            await asyncio.sleep(0.005)
        for n in range(3):
            pub.publish(b"probe.src", Probe(n=100 + n))
        sub.drain()  # as the loop would on a readable socket: nothing more is handed over
        assert len(seen) == 1 and len(errors) == 1
        assert str(errors[0]) == "handler failed"
    finally:
        sub.close()
        pub.close()
        ctx.destroy(linger=0)
