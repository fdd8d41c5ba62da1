from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from karb.trading.arb import Caps, edge_bps, limit_prices, size_trade
from karb.execution.journal import Journal
from karb.trading.orders import LegRecord, LegState
from karb.trading.ledger import coin_imbalance, intent_pnl
from karb.trading.risk import CircuitBreaker, KillSwitch, Reservations

FB, FS = 0.0005, 0.0004
ASKS = [(100.0, 1.0), (100.5, 2.0), (101.0, 5.0)]
BIDS = [(101.5, 0.5), (101.2, 1.0), (100.8, 5.0)]
BIG = Caps(1e12, 1e12, 1e12)


def test_edge_is_net_of_both_fees() -> None:
    assert edge_bps(100.0, 100.0, 0.0, 0.0) == 0.0
    assert edge_bps(100.0, 101.0, FB, FS) == pytest.approx(((101 * (1 - FS)) - 100 * (1 + FB)) / (100 * (1 + FB)) * 1e4)


def test_walks_both_books_until_the_marginal_edge_is_too_small() -> None:
    opp = size_trade(ASKS, BIDS, FB, FS, 5.0, BIG)
    assert opp is not None
    assert opp.volume == pytest.approx(3.0) and opp.limited_by == "edge"
    assert (opp.buy_worst, opp.sell_worst) == (100.5, 100.8)
    assert opp.pnl_krw == pytest.approx(opp.proceeds_krw * (1 - FS) - opp.cost_krw * (1 + FB))
    assert size_trade(ASKS, BIDS, FB, FS, 200.0, BIG) is None  # top edge below the minimum


@pytest.mark.parametrize("caps,binding,volume", [
    (Caps(150.0, 1e9, 1e9), "krw", 150.0 / (1 + FB) / 100.25),
    (Caps(1e9, 0.7, 1e9), "coin", 0.7),
    (Caps(1e9, 1e9, 120.0), "notional", None),
    (Caps(1e9, 1e9, 1e9, max_volume=0.25), "volume", 0.25),
])
def test_every_cap_binds(caps: Caps, binding: str, volume: float | None) -> None:
    opp = size_trade(ASKS, BIDS, FB, FS, 5.0, caps)
    assert opp is not None and opp.limited_by == binding
    if binding == "notional":
        assert opp.cost_krw == pytest.approx(120.0)
    elif binding == "krw":
        assert opp.cost_krw * (1 + FB) == pytest.approx(150.0)
    else:
        assert opp.volume == pytest.approx(volume)


def test_limit_prices_widen_but_never_into_a_loss() -> None:
    opp = size_trade(ASKS, BIDS, FB, FS, 5.0, BIG)
    assert opp is not None
    buy, sell = limit_prices(opp, FB, FS, 5.0)
    assert buy == pytest.approx(100.5 * 1.0005) and sell == pytest.approx(100.8 * 0.9995)
    buy, sell = limit_prices(opp, FB, FS, 500.0)  # too wide: shrunk until still profitable
    assert sell * (1 - FS) > buy * (1 + FB)


def test_reservations_stop_two_intents_spending_the_same_krw() -> None:
    r = Reservations()
    free = {("upbit", "KRW"): 1000.0, ("bithumb", "BTC"): 1.0}
    assert r.try_reserve("a", free, {("upbit", "KRW"): 700.0, ("bithumb", "BTC"): 0.5}) is None
    why = r.try_reserve("b", free, {("upbit", "KRW"): 400.0})
    assert why is not None and "insufficient KRW on upbit" in why
    r.release("a")
    assert r.try_reserve("b", free, {("upbit", "KRW"): 400.0}) is None and r.in_flight == 1


def test_circuit_breaker_opens_half_opens_and_closes() -> None:
    cb = CircuitBreaker(threshold=2, open_s=10.0)
    cb.record(False, now=0.0)
    assert cb.allow(now=0.0) is None
    cb.record(False, now=1.0)
    assert cb.state == "OPEN" and "circuit open" in (cb.allow(now=5.0) or "")
    assert cb.allow(now=11.5) is None and cb.state == "HALF_OPEN"  # one probe
    assert "probe" in (cb.allow(now=11.6) or "")
    cb.record(False, now=12.0)
    assert cb.state == "OPEN"
    assert cb.allow(now=22.5) is None
    cb.record(True, now=23.0)
    assert cb.state == "CLOSED" and cb.allow(now=23.0) is None


def test_kill_switch_file_and_command(tmp_path: Path) -> None:
    kill = KillSwitch(tmp_path / "KILL")
    assert not kill.engaged(now=0.0)
    (tmp_path / "KILL").touch()
    assert kill.engaged(now=1.0)
    (tmp_path / "KILL").unlink()
    kill.commanded = True
    assert kill.engaged(now=2.0)


def test_journal_survives_reopening_and_lists_open_legs(tmp_path: Path) -> None:
    intent = SimpleNamespace(intent_id="i1", market="KRW-BTC", buy_venue="upbit",
                             sell_venue="bithumb", volume=0.01, buy_limit=100.0,
                             sell_limit=101.0, net_bps=20.0)
    legs = [LegRecord("i1-b", "i1", "buy", "upbit", "KRW-BTC", "buy", 100.0, 0.01, LegState.PENDING),
            LegRecord("i1-s", "i1", "sell", "bithumb", "KRW-BTC", "sell", 101.0, 0.01, LegState.PENDING)]
    j = Journal(tmp_path / "j.sqlite")
    j.open_intent(intent, legs)
    legs[0].state, legs[0].executed_volume, legs[0].executed_funds, legs[0].fee = LegState.DONE, 0.01, 1.0, 0.0005
    j.update_leg(legs[0], "final")
    j.close()
    again = Journal(tmp_path / "j.sqlite")
    assert [leg.client_id for leg in again.legs(only_open=True)] == ["i1-s"]
    assert again.open_intents() == ["i1"] and again.intent_state("i1") == ("ACCEPTED", "")
    assert coin_imbalance(again.legs("i1")) == 0.01
    assert intent_pnl(again.legs("i1")) == pytest.approx(-1.0005)
    events = again.db.execute("SELECT kind FROM events ORDER BY id").fetchall()
    assert [e[0] for e in events] == ["accepted", "final"]
    assert again.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
