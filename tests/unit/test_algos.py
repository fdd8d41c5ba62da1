"""Execution algorithms: each schedule against a stub clock (pure ``next`` calls at chosen
times), and the runner against the stub venue — children journaled with their own client ids,
recovered by the LegRunner, settled without a hedge by reconciliation."""

from __future__ import annotations

from pathlib import Path

import pytest

from karb.clock import VirtualClock
from karb.execution.algos import AlgoOrder, Child, MarketView, Progress, make_algo
from karb.execution.algos.runner import AlgoRunner
from karb.execution.algos.schedules import Adaptive, profile_weights
from karb.trading.orders import leg_client_id, parse_client_id
from tests.unit.execution_kit import MARKET, Kit, make_kit
from tests.unit.stub_venue import Post

VIEW = MarketView(bid=99_950.0, ask=100_000.0)
ORDER = AlgoOrder("upbit", MARKET, "buy", 1.0, 100_100.0, horizon_s=40.0, slice_s=10.0,
                  cross_bps=5.0)


def drive(name: str, order: AlgoOrder = ORDER, view: MarketView | None = VIEW,
          fill: float = 1.0, until_s: float = 100.0) -> list[tuple[float, Child]]:
    """Run a schedule on a stub clock: each child fills ``fill`` of itself at once."""
    algo, p, now, sent = make_algo(name), Progress(started_s=0.0), 0.0, []
    for _ in range(200):
        step = algo.next(order, p, now, view)
        if step is None or now > until_s:
            break
        if isinstance(step, Child):
            sent.append((now, step))
            p.children += 1
            got = step.volume * fill
            p.filled += got
            p.empty_children = p.empty_children + 1 if got == 0 else 0
        else:
            now += step
    return sent


def test_market_is_one_child_at_the_limit() -> None:
    assert drive("market") == [(0.0, Child(1.0, 100_100.0))]
    # a partial fill is followed by the rest; an empty one ends it
    half = drive("market", fill=0.5)
    assert [c.volume for _, c in half][:2] == [1.0, 0.5]
    assert len(drive("market", fill=0.0)) == 1


def test_limit_retries_every_slice_until_the_horizon() -> None:
    sent = drive("limit", fill=0.0)
    assert [t for t, _ in sent] == [0.0, 10.0, 20.0, 30.0]
    assert all(c.price == 100_100.0 for _, c in sent)


def test_twap_slices_evenly_and_catches_up() -> None:
    sent = drive("twap")
    assert [t for t, _ in sent] == [0.0, 10.0, 20.0, 30.0]
    assert [c.volume for _, c in sent] == pytest.approx([0.25] * 4)
    assert sent[0][1].price == pytest.approx(100_000.0 * 1.0005)  # touch + cross_bps
    half = drive("twap", fill=0.5)  # each slice tops the fill up to its target
    assert [c.volume for _, c in half][:2] == pytest.approx([0.25, 0.375])


def test_twap_never_prices_past_the_limit() -> None:
    tight = AlgoOrder("upbit", MARKET, "sell", 1.0, 99_990.0, horizon_s=20, slice_s=10)
    assert all(c.price == 99_990.0 for _, c in drive("twap", tight))


def test_vwap_follows_the_volume_profile() -> None:
    view = MarketView(99_950.0, 100_000.0, volume_profile=(9.0, 1.0, 3.0, 1.0, 5.0))
    sent = drive("vwap", view=view)
    assert [c.volume for _, c in sent] == pytest.approx([0.1, 0.3, 0.1, 0.5])
    assert profile_weights((), 4) == [1.0] * 4  # no trades seen: twap's


def test_iceberg_shows_only_its_display_size_and_refills() -> None:
    order = AlgoOrder("upbit", MARKET, "buy", 1.0, 100_100.0, display_volume=0.3)
    sent = drive("iceberg", order)
    assert [c.volume for _, c in sent] == pytest.approx([0.3, 0.3, 0.3, 0.1])
    assert {t for t, _ in sent} == {0.0}  # refilled at once as each is taken


def test_adaptive_crosses_deeper_when_behind_or_volatile() -> None:
    a = Adaptive()
    p = Progress(started_s=0.0)
    calm = a.aggression(ORDER, p, 0.0, "normal")
    assert a.aggression(ORDER, p, 30.0, "normal") > calm  # 75 % due, nothing done
    assert a.aggression(ORDER, p, 0.0, "volatile") > calm
    assert a.aggression(ORDER, p, 0.0, "ranging") == 0.0
    illiquid = drive("adaptive", view=MarketView(99_950.0, 100_000.0, state="illiquid"))
    assert illiquid[0][1].volume == pytest.approx(0.125)  # half-size slices


def test_unknown_algorithm_is_one_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown execution algorithm 'foo'"):
        make_algo("foo")


def test_algo_children_have_their_own_client_ids() -> None:
    algo_id = "i" + "c" * 20
    assert leg_client_id(algo_id, "algo", 3) == f"{algo_id}-a3"
    assert parse_client_id(f"{algo_id}-a3") == (algo_id, "algo")
    assert parse_client_id(f"{algo_id}-a") is None
    assert parse_client_id(f"{algo_id}-ax") is None
    assert parse_client_id(f"{algo_id}-b") == (algo_id, "buy")  # the others unchanged


def _runner(kit: Kit, clock: VirtualClock | None = None) -> AlgoRunner:
    return AlgoRunner(kit.ex.legs, kit.journal, lambda v, m: VIEW, clock=clock,
                      child_deadline_s=1.5)


def test_runner_journals_every_child_and_measures_shortfall(tmp_path: Path) -> None:
    kit = make_kit(tmp_path)
    clock = VirtualClock()
    order = AlgoOrder("upbit", MARKET, "buy", 0.4, 100_100.0, horizon_s=30, slice_s=10)

    async def main() -> None:
        kit.upbit.posts.extend([Post("partial", fill=0.5), Post("fill"), Post("fill")])
        result = await _runner(kit, clock).run(make_algo("twap"), order, "i" + "d" * 20)
        assert result.complete and result.filled == pytest.approx(0.4)
        assert result.duration_s == pytest.approx(20.0)  # virtual time: three slices
        assert result.shortfall_bps > 0  # paid above the arrival mid, fees in
        assert result.fill_rate == pytest.approx(1.0)

    clock.run(main())
    legs = kit.journal.legs("i" + "d" * 20)
    assert [leg.client_id[-3:] for leg in legs] == ["-a1", "-a2", "-a3"]
    assert [leg.state for leg in legs] == ["CANCELLED", "DONE", "DONE"]  # IOC: a partial ends
    assert all(leg.role == "algo" for leg in legs)
    assert kit.journal.intent_state("i" + "d" * 20)[0] == "DONE"  # type: ignore[index]


def test_a_child_executions_checks_refuse_stops_the_algorithm(tmp_path: Path) -> None:
    """Children pass execution's checks for one leg: the notional cap (a child over it is not
    sent) and, between children, the kill switch or a halt."""
    kit = make_kit(tmp_path)
    clock = VirtualClock()
    algo_id = "i" + "e" * 20

    async def main() -> None:
        await kit.ex.refresh_balances()
        cap = kit.ex.notional_cap()
        big = AlgoOrder("upbit", MARKET, "buy", cap / 100_000.0 * 2, 100_100.0)
        runner = AlgoRunner(kit.ex.legs, kit.journal, lambda v, m: VIEW, clock=clock,
                            child_deadline_s=1.5, guard=kit.ex.child_refusal)
        result = await runner.run(make_algo("market"), big, algo_id)
        assert result.children == 0 and result.filled == 0  # over the cap: nothing sent
        kit.upbit.posts.extend([Post("fill"), Post("fill")])
        twap = AlgoOrder("upbit", MARKET, "buy", 0.2, 100_100.0, horizon_s=20, slice_s=10)
        halting = [0]

        def guard(venue: str, market: str, side: str, volume: float, price: float) -> str | None:
            halting[0] += 1
            if halting[0] == 2:
                kit.ex.halt(MARKET, "test")  # halted between the first and second child
            return kit.ex.child_refusal(venue, market, side, volume, price)

        runner.guard = guard
        result = await runner.run(make_algo("twap"), twap, "i" + "f" * 20)
        assert result.children == 1 and result.filled == pytest.approx(0.1)

    clock.run(main())
    state = kit.journal.intent_state("i" + "f" * 20)
    assert state is not None and f"stopped: {MARKET} is halted" in state[1]


def test_child_lost_at_the_venue_is_recovered_not_resent(tmp_path: Path) -> None:
    kit = make_kit(tmp_path)
    order = AlgoOrder("upbit", MARKET, "buy", 0.2, 100_100.0)

    async def main() -> None:
        kit.upbit.posts.append(Post("timeout_lands", land_after_s=0.05))
        result = await _runner(kit).run(make_algo("market"), order, "i" + "e" * 20)
        assert result.filled == pytest.approx(0.2) and result.children == 1

    import asyncio
    asyncio.run(main())
    assert kit.upbit.calls.count(f"post {'i' + 'e' * 20}-a1") == 1
    assert kit.net_coin() == pytest.approx(0.2)  # one-sided on purpose: no hedge


async def test_reconciliation_settles_an_algo_intent_without_hedging(tmp_path: Path) -> None:
    kit = make_kit(tmp_path)
    algo_id = "i" + "f" * 20
    kit.journal.open_algo(algo_id, "twap", "upbit", MARKET, "buy", 0.3, 100_100.0)
    # a child the journal never saw (a crash before its write landed) is found at the venue
    kit.upbit._create(f"{algo_id}-a1", MARKET, "buy", 100_000.0, 0.3, 1.0, False)
    await kit.reconciler.sweep()
    assert kit.journal.intent_state(algo_id)[0] == "DONE"  # type: ignore[index]
    assert kit.net_coin() == pytest.approx(0.3)
    assert len(kit.bithumb.orders) == 0 and len(kit.upbit.orders) == 1  # nothing hedged


async def test_an_algo_killed_before_its_first_child_is_closed_after_restart(tmp_path: Path) -> None:
    kit = make_kit(tmp_path)
    algo_id = "i" + "9" * 20
    kit.journal.open_algo(algo_id, "twap", "upbit", MARKET, "buy", 0.3, 100_100.0)
    await kit.ex.recover_open()
    assert kit.journal.intent_state(algo_id)[0] == "DONE"  # type: ignore[index]
    assert kit.upbit.orders == {} and kit.bithumb.orders == {}


async def test_a_running_algo_is_not_settled_by_the_sweep_between_children(tmp_path: Path) -> None:
    kit = make_kit(tmp_path)
    runner = AlgoRunner(kit.ex.legs, kit.journal, lambda v, m: VIEW, child_deadline_s=1.5,
                        busy=kit.ex.settling)
    order = AlgoOrder("upbit", MARKET, "buy", 0.2, 100_100.0, horizon_s=0.4, slice_s=0.2)
    import asyncio
    task = asyncio.create_task(runner.run(make_algo("twap"), order, "i" + "8" * 20))
    await asyncio.sleep(0.1)  # between the two slices
    assert "i" + "8" * 20 in kit.ex.settling
    await kit.reconciler.sweep()
    assert kit.journal.intent_state("i" + "8" * 20)[0] == "ACCEPTED"  # type: ignore[index]
    result = await task
    assert result.children == 2 and kit.journal.intent_state("i" + "8" * 20)[0] == "DONE"  # type: ignore[index]
    assert "i" + "8" * 20 not in kit.ex.settling


async def test_execution_dying_mid_algorithm_sends_nothing_twice(tmp_path: Path) -> None:
    import asyncio
    kit = make_kit(tmp_path)
    algo_id = "i" + "7" * 20
    runner = AlgoRunner(kit.ex.legs, kit.journal, lambda v, m: VIEW, child_deadline_s=5.0,
                        busy=kit.ex.settling)
    kit.upbit.posts.append(Post("timeout_lands", land_after_s=0.3))  # the answer is lost
    order = AlgoOrder("upbit", MARKET, "buy", 0.2, 100_100.0, horizon_s=10, slice_s=5)
    task = asyncio.create_task(runner.run(make_algo("twap"), order, algo_id))
    for _ in range(100):  # until the first child is journaled UNKNOWN
        legs = kit.journal.legs(algo_id)
        if legs and legs[0].state == "UNKNOWN":
            break
        await asyncio.sleep(0.01)
    task.cancel()  # the process dies: nothing of the runner goes on
    await asyncio.gather(task, return_exceptions=True)
    kit.ex.settling.discard(algo_id)  # a new incarnation starts with nothing settling
    await asyncio.sleep(0.4)  # the lost order lands at the venue meanwhile
    await kit.ex.recover_open()  # the restart: journal replay, lookup by client id
    assert kit.upbit.calls.count(f"post {algo_id}-a1") == 1
    assert kit.journal.legs(algo_id)[0].executed_volume > 0
    assert kit.journal.intent_state(algo_id)[0] == "DONE"  # type: ignore[index]
    assert kit.bithumb.orders == {}  # one-sided on purpose: nothing hedged
