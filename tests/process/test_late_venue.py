"""Venues that answer late, lose answers, hide new orders or are not ready: the whole pipeline
trades through each of the simulator's late-venue faults and ends with the money agreeing three
ways (venue orders, venue balances, journal). One pipeline serves every fault, in order."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.process.pipeline import Venues, assert_money_agrees, pipeline_config, quiesce, rows
from tests.support import SupervisorProc, eventually, short_tmp_dir

MARKETS = ["KRW-ETH", "KRW-XRP"]


@pytest.fixture(scope="module")
def live() -> Iterator[tuple[SupervisorProc, Venues, dict[str, Any]]]:
    import shutil
    workdir = short_tmp_dir()
    execution = {"settle_ms": 1000, "leg_deadline_ms": 8000, "reconcile_interval_s": 1.0}
    try:
        with SupervisorProc(pipeline_config(workdir, MARKETS, execution=execution)) as sup:
            sup.wait_running(30)
            venues = Venues(sup)
            yield sup, venues, venues.balances()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def leg_events(sup: SupervisorProc, kind: str) -> list[dict[str, Any]]:
    return [dict(r) for r in rows(sup, "SELECT * FROM events WHERE kind=? ORDER BY id", kind)]


def trade_through(sup: SupervisorProc, venues: Venues, fault: str, body: dict[str, Any],
                  seen: str, market: str = "KRW-ETH") -> None:
    """Inject ``fault`` on Bithumb (the selling venue while it is dear), open a window, and
    wait until a leg has met it (a journal event of kind ``seen`` newer than the fault) and
    nothing is open any more."""
    (sup.run_dir / "KILL").unlink(missing_ok=True)
    last = rows(sup, "SELECT COALESCE(MAX(id), 0) AS id FROM events")
    since = last[0]["id"] if last else 0
    venues.post("bithumb", f"/_sim/faults/{fault}", body)
    venues.dislocate("bithumb", market, 80, 2500)
    eventually(lambda: rows(sup, "SELECT 1 FROM events WHERE kind=? AND id>?", seen, since),
               20, what=f"a leg meeting {fault}")


def settled_without_loss(sup: SupervisorProc, venues: Venues, start: dict[str, Any]) -> None:
    quiesce(sup)
    venues.post("bithumb", "/_sim/faults/clear")
    assert_money_agrees(sup, venues, start)
    assert not rows(sup, "SELECT * FROM halts"), [dict(r) for r in rows(sup, "SELECT * FROM halts")]


def test_an_order_executed_after_its_post_timed_out_is_booked(live: Any) -> None:
    sup, venues, start = live
    # held 1.4 s: the client gives up at 1.0 s (order_timeout_ms), the order lands 0.4 s later
    trade_through(sup, venues, "delay_execution", {"ms": 1400, "count": 1, "answer": "hold"},
                  "found")
    unknown = leg_events(sup, "unknown")
    assert unknown, "no leg went UNKNOWN"
    found = {e["client_id"] for e in leg_events(sup, "found")}
    assert unknown[0]["client_id"] in found  # looked up, found, followed — never resent
    settled_without_loss(sup, venues, start)


def test_an_order_answered_504_and_executed_later_is_booked(live: Any) -> None:
    sup, venues, start = live
    trade_through(sup, venues, "delay_execution", {"ms": 500, "count": 1, "answer": "504"},
                  "found")
    assert len(leg_events(sup, "unknown")) >= 2
    settled_without_loss(sup, venues, start)


def test_an_order_missing_from_lookups_for_a_while_is_still_found(live: Any) -> None:
    sup, venues, start = live
    venues.post("bithumb", "/_sim/faults/invisible", {"ms": 600})
    # the answer is lost too, so the leg is UNKNOWN and must be found by a lookup that at
    # first says "not found"
    trade_through(sup, venues, "lose_response", {"count": 1}, "found")
    unknown = leg_events(sup, "unknown")[-1]
    leg = rows(sup, "SELECT * FROM legs WHERE client_id=?", unknown["client_id"])[0]
    assert leg["state"] in ("DONE", "CANCELLED") and leg["executed_volume"] > 0, dict(leg)
    settled_without_loss(sup, venues, start)


def test_bithumb_order_not_ready_is_asked_again(live: Any) -> None:
    sup, venues, start = live
    # Bithumb answers an order POST with less than an order: the leg is looked up at once,
    # and the first lookups meet 422 order_not_ready
    trade_through(sup, venues, "order_not_ready", {"count": 3}, "final")
    assert "order_not_ready" in sup.log()
    settled_without_loss(sup, venues, start)
    journal_detail = [json.loads(r["detail"]) for r in rows(
        sup, "SELECT detail FROM events WHERE kind='final'")]
    assert journal_detail  # every leg reached a final state with its fills
