"""Continuous reconciliation and the risk numbers, against scripted stub venues: an order that
lands after it was called NOT_SENT is booked and hedged; one the journal never knew is ingested;
balances that disagree with the journal stop trading until acknowledged; stale balances and
concurrent intents cannot pass the limits; a resent intent id is answered once."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from karb.exchanges.errors import VenueUnavailable
from karb.exchanges.types import Balance
from karb.execution.journal import Journal
from karb.trading.orders import LegRecord, LegState
from tests.support import eventually_async
from tests.unit.execution_kit import LIMITS, MARKET, intent, make_kit, trade
from tests.unit.stub_venue import Post

ID = "i" + "a" * 20


async def test_an_order_landing_after_not_sent_is_booked_and_hedged_by_the_sweep(
        tmp_path: Path) -> None:
    kit = make_kit(tmp_path)
    kit.upbit.posts.append(Post("timeout_lands", land_after_s=0.4))  # past the 150 ms window
    await trade(kit, intent())
    assert kit.journal.leg(ID + "-b").state == LegState.NOT_SENT  # type: ignore[union-attr]
    assert kit.net_coin() == 0  # the sell was hedged by a buy (-h1)
    await eventually_async(lambda: kit.upbit.landed(ID + "-b"), what="the late landing")
    assert kit.net_coin() == 0.1  # a real position nobody booked: exactly the bug
    await kit.reconciler.sweep()
    buy = kit.journal.leg(ID + "-b")
    assert buy is not None and buy.state == LegState.DONE and buy.executed_volume == 0.1
    hedges = [leg.client_id for leg in kit.journal.legs(ID) if leg.role == "hedge"]
    assert hedges == [ID + "-h1", ID + "-h2"]  # a fresh client id per attempt
    assert kit.net_coin() == 0 and kit.reconciler.stats.corrected == 1
    assert any(a.level == "critical" and "the journal said NOT_SENT" in a.text for a in kit.alerts())
    assert (kit.journal.intent_state(ID) or ("", ""))[0] in ("DONE", "FAILED")


async def test_an_order_landing_after_not_sent_is_caught_by_the_watch_without_a_sweep(
        tmp_path: Path) -> None:
    kit = make_kit(tmp_path)
    reconciler = kit.reconciler  # watches every leg called NOT_SENT
    kit.upbit.posts.append(Post("timeout_lands", land_after_s=0.4))
    await trade(kit, intent())
    assert kit.journal.leg(ID + "-b").state == LegState.NOT_SENT  # type: ignore[union-attr]
    await eventually_async(lambda: kit.journal.leg(ID + "-b").state == LegState.DONE  # type: ignore[union-attr]
                           and kit.net_coin() == 0, what="the late buy booked and hedged")
    assert reconciler.stats.sweeps == 0 and reconciler.stats.corrected == 1
    await reconciler.close()


async def test_an_order_unknown_to_the_journal_is_ingested_and_hedged(tmp_path: Path) -> None:
    kit = make_kit(tmp_path)
    await kit.ex.refresh_balances()
    lost = "i" + "b" * 20
    # placed by a predecessor that died before its journal write reached the disk
    await kit.bithumb.place_limit_order(MARKET, "sell", 100_300.0, 0.2, lost + "-s", "ioc")
    await kit.reconciler.sweep()
    legs = kit.journal.legs(lost)
    assert [(leg.role, leg.state) for leg in legs][0] == ("sell", LegState.DONE)
    assert kit.reconciler.stats.ingested == 1 and kit.net_coin() == 0
    # something on the account that is not ours is left alone
    await kit.upbit.place_limit_order(MARKET, "buy", 100_000.0, 0.1, "by-hand-1", "ioc")
    await kit.reconciler.sweep()
    assert kit.journal.leg("by-hand-1") is None


async def test_balances_that_disagree_stop_trading_until_acknowledged(tmp_path: Path) -> None:
    kit = make_kit(tmp_path)
    await kit.reconciler.sweep()  # baseline
    await trade(kit, intent())
    assert await kit.reconciler.check_balances() == []  # the venue moved as the journal says
    # the stub's balances move with nothing journaled (a transfer by hand, a lost fill)
    kit.upbit.cash["KRW"] = Balance("KRW", 9_000_000.0, 0.0)
    problems = await kit.reconciler.check_balances()
    assert problems and "upbit KRW" in problems[0]
    refused = kit.ex.accept(intent("i" + "c" * 20))
    assert not refused.ack.accepted and "ack-balances" in refused.ack.reason
    assert any(a.level == "critical" and "disagree" in a.text for a in kit.alerts())
    kit.reconciler.acknowledge()
    await kit.reconciler.check_balances()  # new baseline
    assert kit.ex.accept(intent("i" + "d" * 20)).ack.accepted


async def test_stale_balances_are_refused(tmp_path: Path) -> None:
    kit = make_kit(tmp_path)
    kit.bithumb.balances_fail = True
    assert not await kit.ex.refresh_balances()
    refused = kit.ex.accept(intent())
    assert not refused.ack.accepted and "balances of bithumb are stale" in refused.ack.reason
    kit.bithumb.balances_fail = False
    assert await kit.ex.refresh_balances()
    assert kit.ex.accept(intent("i" + "e" * 20)).ack.accepted


async def test_inventory_reservations_stop_concurrent_intents_passing_the_cap(tmp_path: Path) -> None:
    # 10 ETH held on upbit at 100,000: room for 0.4 ETH more under a 1,040,000 KRW cap
    kit = make_kit(tmp_path, dataclasses.replace(LIMITS, max_inventory_krw=10.4 * 100_000.0))
    await kit.ex.refresh_balances()
    first = kit.ex.accept(intent("i" + "1" * 20, volume=0.3))
    assert first.ack.accepted
    second = kit.ex.accept(intent("i" + "2" * 20, volume=0.3))  # 10 + 0.3 + 0.3 > 10.4
    assert not second.ack.accepted and "max_inventory_krw" in second.ack.reason
    # pos shows what is available after the reservation
    kit.ex.publish_position()
    pos = kit.published[-1]
    assert abs(pos.balances["bithumb"]["ETH"] - 9.7) < 1e-9
    assert abs(pos.inventory[MARKET]["upbit"] - 10.3) < 1e-9


async def test_a_hedge_journaled_but_never_sent_does_not_block_the_next(tmp_path: Path) -> None:
    kit = make_kit(tmp_path)
    await kit.ex.refresh_balances()
    accepted = kit.ex.accept(intent())
    sell = await kit.ex.legs.run(accepted.legs[1], 0, deadline=10**9)  # sold 0.1; buy never sent
    kit.ex.open.clear()
    kit.ex.reservations.release(ID)
    buy = accepted.legs[0]
    buy.state = LegState.NOT_SENT
    kit.journal.update_leg(buy, "reconciled")
    # a predecessor journaled hedge -h1 and died before sending it
    kit.journal.add_leg(LegRecord(ID + "-h1", ID, "hedge", "upbit", MARKET, "buy", 100_300.0,
                                  0.1, LegState.PENDING))
    assert sell.state == LegState.DONE and kit.net_coin() == -0.1
    await kit.ex.recover_open(not_before_ns=0)
    states = {leg.client_id: leg.state for leg in kit.journal.legs(ID)}
    assert states[ID + "-h1"] == LegState.NOT_SENT and states[ID + "-h2"] == LegState.DONE
    assert kit.net_coin() == 0


async def test_a_resent_intent_gets_the_first_answer_and_no_second_legs(tmp_path: Path) -> None:
    kit = make_kit(tmp_path)
    await kit.ex.refresh_balances()
    first = kit.ex.accept(intent())
    assert first.ack.accepted and len(first.legs) == 2
    again = kit.ex.accept(intent())
    assert again.ack == first.ack and again.legs == []
    kit.journal.close()
    # execution restarts: a new executor on the same journal answers from it
    kit2 = make_kit(tmp_path)
    kit2.journal = Journal(tmp_path / "journal.sqlite")
    await kit2.ex.refresh_balances()
    third = kit2.ex.accept(intent())
    assert third.ack.accepted and third.legs == []


async def test_reservations_refuse_what_concurrent_intents_would_overspend(tmp_path: Path) -> None:
    kit = make_kit(tmp_path)
    await kit.ex.refresh_balances()
    kit.ex.free[("bithumb", "ETH")] = 0.15  # well under the notional cap: only coin binds
    assert kit.ex.accept(intent("i" + "1" * 20)).ack.accepted
    second = kit.ex.accept(intent("i" + "2" * 20))
    assert not second.ack.accepted and "insufficient ETH on bithumb" in second.ack.reason


async def test_the_leg_deadline_bounds_following_even_when_the_venue_never_answers(
        tmp_path: Path) -> None:
    kit = make_kit(tmp_path)
    kit.upbit.posts.append(Post("timeout_lost"))
    kit.upbit.lookup_errors.extend([VenueUnavailable("upbit", "http_503", "down", 503)] * 10_000)
    await trade(kit, intent())
    buy = kit.journal.leg(ID + "-b")
    assert buy is not None and buy.state == LegState.UNKNOWN  # never guessed
    assert MARKET in kit.ex.halted and (kit.journal.intent_state(ID) or ("", ""))[0] == "RECONCILING"


async def test_balances_are_checked_while_a_transfer_is_open_either_side_of_its_step(
        tmp_path: Path) -> None:
    """An open transfer may be a step ahead at the venue of what the journal followed: the
    check accepts the balance on either side of that step, and still catches anything else."""
    from karb.execution.transfer_journal import TransferJournal, TransferRecord, TransferState

    kit = make_kit(tmp_path)
    transfers = TransferJournal(kit.journal.path)
    await kit.reconciler.sweep()  # baseline
    coin = MARKET.split("-")[1]
    rec = TransferRecord("t1", coin, "upbit", "bithumb", 0.5, 0.001, coin, "addr", "coin",
                         TransferState.REQUESTED)
    transfers.request(rec)
    rec.state = TransferState.ACCEPTED
    transfers.update(rec, "accepted")
    assert await kit.reconciler.check_balances() == []  # not withdrawn at the venue yet
    up = kit.upbit.cash[coin]
    kit.upbit.cash[coin] = Balance(coin, up.free - 0.501, up.locked)  # withdrawn: journal behind
    assert await kit.reconciler.check_balances() == []
    down = kit.bithumb.cash[coin]
    kit.bithumb.cash[coin] = Balance(coin, down.free + 0.5, down.locked)  # and credited
    assert await kit.reconciler.check_balances() == []
    kit.bithumb.cash[coin] = Balance(coin, down.free + 0.7, down.locked)  # more than the step
    problems = await kit.reconciler.check_balances()
    assert problems and f"bithumb {coin}" in problems[0]
    transfers.close()
