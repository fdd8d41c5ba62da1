"""The leg runner alone resolves an order whose answer was lost, branch by branch, against a
scripted stub venue: a POST that times out and lands late, one that never lands, a reused-id
refusal, a never-final order, a cancel racing a fill, an order invisible to lookups for a while,
Bithumb's 422 — and every intent ends flat or with its market halted."""

from __future__ import annotations

import json
from pathlib import Path

from karb.exchanges.errors import OrderNotReady, VenueUnavailable
from karb.trading.orders import LegState
from tests.unit.execution_kit import intent, make_kit, trade
from tests.unit.stub_venue import Post

ID = "i" + "a" * 20


def events(kit, client_id: str) -> list[tuple[str, dict]]:
    rows = kit.journal.db.execute("SELECT kind, detail FROM events WHERE client_id=? ORDER BY id",
                                  (client_id,))
    return [(kind, json.loads(detail)) for kind, detail in rows]


async def test_a_post_that_times_out_and_lands_later_is_found_and_booked(tmp_path: Path) -> None:
    kit = make_kit(tmp_path)
    kit.upbit.posts.append(Post("timeout_lands", land_after_s=0.08))
    await trade(kit, intent())
    buy = kit.journal.leg(ID + "-b")
    assert buy is not None and buy.state == LegState.DONE and buy.executed_volume == 0.1
    assert [k for k, _ in events(kit, ID + "-b")][:2] == ["unknown", "found"]
    assert kit.upbit.calls.count(f"post {ID}-b") == 1  # never resent
    assert not any(leg.role == "hedge" for leg in kit.journal.legs(ID))
    assert kit.net_coin() == 0 and not kit.ex.halted
    assert kit.journal.intent_state(ID) == ("DONE", "")


async def test_not_found_is_not_sent_only_after_the_settle_window_then_hedged(tmp_path: Path) -> None:
    kit = make_kit(tmp_path)
    kit.upbit.posts.append(Post("timeout_lost"))
    await trade(kit, intent())
    buy = kit.journal.leg(ID + "-b")
    assert buy is not None and buy.state == LegState.NOT_SENT and buy.gave_up_ns > 0
    settled = [d for k, d in events(kit, ID + "-b") if k == "reconciled"][0]
    assert settled["settled_ms"] >= kit.ex.limits.settle_ms
    hedges = [leg for leg in kit.journal.legs(ID) if leg.role == "hedge"]
    # the sell filled on bithumb: bought back on the cheaper venue, from shared-memory prices
    assert [(h.client_id, h.side, h.venue, h.state) for h in hedges] == [
        (ID + "-h1", "buy", "upbit", LegState.DONE)]
    assert kit.net_coin() == 0 and not kit.ex.halted
    assert (kit.journal.intent_state(ID) or ("", ""))[0] == "FAILED"


async def test_a_reused_id_refusal_means_it_exists_never_rejected(tmp_path: Path) -> None:
    kit = make_kit(tmp_path)
    # The first POST reached the engine (a crash lost its answer): the resend is refused.
    kit.upbit.posts.append(Post("timeout_lands", land_after_s=0.0))
    kit.upbit.posts.append(Post("duplicate"))
    await kit.ex.refresh_balances()
    accepted = kit.ex.accept(intent())
    assert accepted.ack.accepted, accepted.ack.reason
    first = await kit.ex.legs.run(accepted.legs[0], 0, deadline=10**9)
    assert first.state == LegState.DONE
    first.state = LegState.PENDING  # as a successor that never saw the answer would send it
    again = await kit.ex.legs.run(first, 0, deadline=10**9)
    assert again.state == LegState.DONE and again.executed_volume == 0.1
    assert len(kit.upbit.orders) == 1


async def test_a_never_final_order_halts_by_the_deadline_and_reconciliation_finishes_it(
        tmp_path: Path) -> None:
    kit = make_kit(tmp_path)
    kit.bithumb.posts.append(Post("open"))
    kit.bithumb.cancel_errors.extend([VenueUnavailable("bithumb", "http_503", "down", 503)] * 1000)
    await trade(kit, intent())
    sell = kit.journal.leg(ID + "-s")
    assert sell is not None and sell.state == LegState.SENT  # not final, but owned and journaled
    assert "KRW-ETH" in kit.ex.halted
    assert any(a.level == "critical" and "unresolved" in a.text for a in kit.alerts())
    assert (kit.journal.intent_state(ID) or ("", ""))[0] == "RECONCILING"
    assert not kit.ex.open and kit.ex.reservations.in_flight == 0  # nothing held forever
    # the venue recovers: the next sweep cancels it and settles the intent
    kit.bithumb.cancel_errors.clear()
    await kit.reconciler.sweep()
    sell = kit.journal.leg(ID + "-s")
    assert sell is not None and sell.state == LegState.CANCELLED
    assert kit.net_coin() == 0  # the buy was hedged once the sell was known empty
    assert (kit.journal.intent_state(ID) or ("", ""))[0] == "DONE"


async def test_a_cancel_that_races_a_fill_is_a_final_answer(tmp_path: Path) -> None:
    kit = make_kit(tmp_path, cancel_races_fill=True)
    kit.bithumb.posts.append(Post("open"))
    await trade(kit, intent())
    sell = kit.journal.leg(ID + "-s")
    assert sell is not None and sell.state == LegState.DONE and sell.executed_volume == 0.1
    assert kit.net_coin() == 0 and not kit.ex.halted
    assert kit.journal.intent_state(ID) == ("DONE", "")


async def test_an_order_invisible_to_lookups_for_a_while_is_still_found(tmp_path: Path) -> None:
    kit = make_kit(tmp_path, invisible_s=0.1)  # under the settle window
    kit.upbit.posts.append(Post("timeout_lands", land_after_s=0.0))
    await trade(kit, intent())
    buy = kit.journal.leg(ID + "-b")
    assert buy is not None and buy.state == LegState.DONE
    assert kit.net_coin() == 0 and kit.journal.intent_state(ID) == ("DONE", "")


async def test_bithumb_422_order_not_ready_is_asked_again(tmp_path: Path) -> None:
    kit = make_kit(tmp_path)
    kit.bithumb.posts.append(Post("timeout_lands", land_after_s=0.0))
    kit.bithumb.lookup_errors.extend(
        [OrderNotReady("bithumb", "order_not_ready", "not ready", 422)] * 3)
    await trade(kit, intent())
    sell = kit.journal.leg(ID + "-s")
    assert sell is not None and sell.state == LegState.DONE
    assert kit.net_coin() == 0


async def test_a_rate_limited_post_is_refused_not_unknown(tmp_path: Path) -> None:
    kit = make_kit(tmp_path)
    kit.upbit.posts.append(Post("rate_limited"))
    await trade(kit, intent())
    buy = kit.journal.leg(ID + "-b")
    assert buy is not None and buy.state == LegState.REJECTED
    assert kit.net_coin() == 0  # the sell was hedged back


def test_venue_errors_map_to_what_they_mean_for_an_order() -> None:
    from karb.exchanges.errors import (AlreadyFinal, DuplicateClientId, InvalidOrder,
                                       OrderNotReady, classify)
    assert isinstance(classify("upbit", 400, "validation_error",
                               "identifier i1-b is already used"), DuplicateClientId)
    assert isinstance(classify("bithumb", 400, "invalid_parameter",
                               "client_order_id i1-b already exists"), DuplicateClientId)
    assert isinstance(classify("bithumb", 400, "order_not_ready",
                               "order C01 is already done"), AlreadyFinal)
    assert isinstance(classify("bithumb", 422, "order_not_ready", "not ready"), OrderNotReady)
    plain = classify("upbit", 400, "invalid_price_bid", "price off tick")
    assert type(plain) is InvalidOrder


def test_only_our_client_ids_are_parsed() -> None:
    from karb.trading.orders import leg_client_id, parse_client_id
    intent_id = "i" + "0123456789abcdef0123"
    for role, attempt in (("buy", 1), ("sell", 1), ("hedge", 1), ("hedge", 12)):
        cid = leg_client_id(intent_id, role, attempt)
        assert parse_client_id(cid) == (intent_id, role)
    for other in (None, "", "by-hand-1", "i" + "z" * 20 + "-b", intent_id + "-x", intent_id + "-hx"):
        assert parse_client_id(other) is None


async def test_a_leg_the_venue_acknowledged_is_never_not_sent_after_a_restart(tmp_path: Path) -> None:
    # the venue's read path lags longer than the settle window (orders invisible 0.4 s)
    kit = make_kit(tmp_path, invisible_s=0.4)
    await kit.ex.refresh_balances()
    accepted = kit.ex.accept(intent())
    order = await kit.upbit.place_limit_order("KRW-ETH", "buy", 100_000.0, 0.1, ID + "-b", "ioc")
    buy = accepted.legs[0]
    buy.state, buy.order_id = LegState.SENT, order.order_id  # journaled SENT, then we died
    kit.journal.update_leg(buy, "sent")
    kit.ex.open.clear()  # a new incarnation owns nothing yet
    await kit.ex.legs.recover(kit.journal.leg(ID + "-b"), deadline=10**9, not_before_ns=0)  # type: ignore[arg-type]
    leg = kit.journal.leg(ID + "-b")
    assert leg is not None and leg.state == LegState.DONE and leg.executed_volume == 0.1
