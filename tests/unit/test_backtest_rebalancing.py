"""The rebalancer inside a backtest (issue 12): with KRW out of band from the first instant and
coins in a tight band, simulated hours on virtual time run KRW pair trades by the execution
algorithms (children hedged intents through the executor) and coin transfers to the credit; the
venues' accounts move by exactly the fills and the transfers; without rebalancing none of it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import msgspec
import pytest

from karb import clock
from karb.backtest.operator import unhalt_after
from karb.backtest.results import BacktestResults, halted_s, summarise
from karb.backtest.run import Backtest, Options, run_backtest
from karb.config import Config, load_config
from karb.execution.algos import ALGOS
from tests.unit.execution_kit import intent

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "backtest.yaml"
MARKETS = ["KRW-XRP", "KRW-SOL"]


def skewed(cfg: Config) -> Config:
    """Two markets; KRW wanted 80 % on upbit (so bithumb is KRW-heavy at once); coins in a
    2 % band; everything acted on after 60 s; fast transfers."""
    rb = msgspec.structs.replace(
        cfg.rebalance, out_of_band_s=60.0,
        krw=msgspec.structs.replace(cfg.rebalance.krw, target={"upbit": 0.8}, band=0.05),
        default=msgspec.structs.replace(cfg.rebalance.default, band=0.02))
    assert cfg.sim is not None
    sim = msgspec.structs.replace(cfg.sim, transfers=msgspec.structs.replace(
        cfg.sim.transfers, processing_s=5.0))
    actors = []
    for spec in cfg.actors:
        if spec.kind == "rebalancer":
            params = dict(spec.params) | {"krw_trade_krw": 6_000_000, "krw_horizon_s": 60,
                                          "krw_slice_s": 10, "krw_max_cost_bps": 40,
                                          "optimizer": {"explore_every": 2, "min_samples": 1}}
            spec = msgspec.structs.replace(spec, params=params)
        actors.append(spec)
    return msgspec.structs.replace(cfg, markets=MARKETS, rebalance=rb, sim=sim, actors=actors)


def test_hours_with_rebalancing_trade_krw_back_and_move_coins(tmp_path: Path) -> None:
    cfg = skewed(load_config(CONFIG))
    res, _ = run_backtest(cfg, Options(days=1 / 24, seed=7), tmp_path)
    s: dict[str, Any] = dict(summarise(res))
    assert res.rebalancing and s["crashes"] == 0
    # KRW: pair trades by the algorithms, buying on bithumb (KRW-heavy) and selling on upbit
    assert res.algos, "no KRW rebalancing trade"
    # the first one buys on bithumb (KRW-heavy from the start) and sells on upbit (later ones
    # may go the other way: the premium's trades carry KRW to upbit)
    assert (res.algos[0].buy_venue, res.algos[0].sell_venue) == ("bithumb", "upbit")
    assert {a.algo for a in res.algos} <= set(ALGOS)
    assert any(a.source == "explore" for a in res.algos)
    assert sum(a.filled for a in res.algos) > 0
    children = [i for i in res.intents if i.purpose == "rebalance"]
    assert children and children[0].buy_venue == "bithumb"
    # coins: transfers requested, every one credited or still on its way
    assert res.transfers and any(t.state == "CREDITED" for t in res.transfers)
    assert all(t.state in ("CREDITED", "ACCEPTED", "SENT") for t in res.transfers)
    assert s["transfer_fees_krw"] > 0 and s["rebalancing_cost_krw"] >= s["transfer_fees_krw"]
    # the accounts moved by exactly the fills and the transfers (amount + fee from the source,
    # amount to the destination once credited; in flight counts at the destination)
    first, last = res.balances[0].balances, res.balances[-1].balances
    for venue in first:
        for cur in ("KRW", "XRP", "SOL"):
            moved = last[venue].get(cur, 0.0) - first[venue].get(cur, 0.0)
            market = f"KRW-{cur}"
            expected = 0.0
            for f in res.fills:
                if f.venue != venue:
                    continue
                if cur == "KRW":
                    expected += f.price * f.volume * (1 if f.side == "ask" else -1) - f.fee_krw
                elif f.market == market:
                    expected += f.volume if f.side == "bid" else -f.volume
            for t in res.transfers:
                if t.coin == cur and t.state in ("SENT", "CREDITED"):
                    expected += t.amount if t.to_venue == venue else 0.0
                    expected -= t.amount + t.fee if t.from_venue == venue else 0.0
            assert moved == pytest.approx(expected, abs=1e-6 * max(1.0, abs(expected))), \
                (venue, cur)


def test_without_rebalancing_nothing_moves_but_trades(tmp_path: Path) -> None:
    cfg = skewed(load_config(CONFIG))
    res, _ = run_backtest(cfg, Options(days=0.2 / 24, seed=7, rebalancing=False), tmp_path)
    assert not res.rebalancing and res.transfers == [] and res.algos == []
    assert all(i.purpose == "arb" for i in res.intents)


def test_the_operator_unhalts_a_market_once_nothing_of_it_is_open(tmp_path: Path) -> None:
    """A halt (execution failing closed) lasts until the backtest's operator lifts it:
    ``operator_unhalt_s`` after it, and not while an intent of that market is open."""
    cfg = skewed(load_config(CONFIG))
    vclock = clock.VirtualClock()
    previous = clock.set_clock(vclock)

    async def main() -> BacktestResults:
        bt = Backtest(cfg, Options(days=1, rebalancing=False, operator_unhalt_s=300), tmp_path)
        bt._build()
        start = clock.time_ns()
        bt.ex.halt("KRW-XRP", "a leg unresolved by its deadline (test)")
        assert [h.market for h in bt.halts] == ["KRW-XRP"]
        bt.ex.open["i-open"] = msgspec.structs.replace(intent(), market="KRW-XRP")
        operator = asyncio.create_task(unhalt_after(bt, 300))
        await asyncio.sleep(400)  # past 300 s, but an intent of the market is open
        assert "KRW-XRP" in bt.ex.halted and bt.halts[0].unhalted_ns == 0
        del bt.ex.open["i-open"]
        await asyncio.sleep(61)
        assert "KRW-XRP" not in bt.ex.halted and bt.halts[0].unhalted_ns > 0
        assert "KRW-XRP" not in bt.journal.halted()
        operator.cancel()
        bt.journal.close()
        return BacktestResults(started_ns=start, ended_ns=clock.time_ns(), wall_s=0.0,
                               markets=MARKETS, fee_bps={}, start_equity_krw=0.0,
                               halts=bt.halts)

    try:
        res = vclock.run(main())
    finally:
        clock.set_clock(previous)
    assert 400 <= halted_s(res) <= 470
