"""An intent id is answered once: a resend — even to a restarted execution — gets the first
answer and never a second pair of legs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from karb.messages import Intent
from karb.trading.executor import Executor
from karb.trading.journal import Journal
from karb.trading.limits import ExecutionLimits
from karb.trading.risk import CircuitBreaker, KillSwitch

LIMITS = ExecutionLimits(max_notional_krw=2_000_000, max_inventory_krw=1e12, stale_after_ms=2000,
                         hedge_loss_bps=30, leg_timeout_ms=1000, poll_interval_ms=10)


def executor(journal: Journal, published: list[Any], tmp: Path) -> Executor:
    ex = Executor(clients={"upbit": object(), "bithumb": object()},  # type: ignore[dict-item]
                  journal=journal, limits=LIMITS, fees={"upbit": 0.0005, "bithumb": 0.0004},
                  publish=lambda topic, msg: published.append(msg),
                  top=lambda venue, market: (100_000.0, 100_000.0, 5.0),
                  breaker=CircuitBreaker(3, 30.0), kill=KillSwitch(tmp / "KILL"),
                  markets=["KRW-ETH"])
    ex.free = {("upbit", "KRW"): 10_000_000.0, ("bithumb", "ETH"): 10.0}
    return ex


def intent(intent_id: str, volume: float = 1.0) -> Intent:
    return Intent(intent_id=intent_id, market="KRW-ETH", buy_venue="upbit", sell_venue="bithumb",
                  volume=volume, buy_limit=100_000.0, sell_limit=100_000.0, net_bps=20.0)


def test_a_resent_intent_gets_the_first_answer_and_no_second_legs(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.sqlite")
    ex = executor(journal, [], tmp_path)
    first = ex.accept(intent("i1"))
    assert first.accepted
    assert ex.accept(intent("i1")) == first
    assert [leg.client_id for leg in journal.legs("i1")] == ["i1-b", "i1-s"]
    # the reservation holds the KRW: a second intent that would need it too is refused
    greedy = ex.accept(intent("i2", volume=99.0))
    assert not greedy.accepted and "notional" in greedy.reason
    journal.close()

    # execution restarts: a new executor on the same journal
    journal = Journal(tmp_path / "journal.sqlite")
    again = executor(journal, [], tmp_path).accept(intent("i1"))
    assert again.accepted and again.intent_id == "i1"
    assert len(journal.legs("i1")) == 2
    refused = executor(journal, [], tmp_path).accept(intent("i2", volume=99.0))
    assert not refused.accepted and refused.reason == greedy.reason  # the first refusal, again


def test_reservations_refuse_what_concurrent_intents_would_overspend(tmp_path: Path) -> None:
    ex = executor(Journal(tmp_path / "journal.sqlite"), [], tmp_path)
    ex.free[("bithumb", "ETH")] = 1.5
    assert ex.accept(intent("a", volume=1.0)).accepted
    second = ex.accept(intent("b", volume=1.0))
    assert not second.accepted and "insufficient ETH on bithumb" in second.reason
