from __future__ import annotations

import pytest

from karb.config import SimConfig
from karb.sim.engine import Account, Balance, Exchange, OrderFault, VenueError
from karb.sim.market import MarketModel

FEE = 0.0005


def make(venue: str = "upbit") -> tuple[Exchange, Account, MarketModel]:
    model = MarketModel(["KRW-BTC"], SimConfig(seed=1, noise_bps=0.0, volatility_bps=0.0), 0)
    book = model.book(venue, "KRW-BTC")
    book.asks[:] = [[100_000_000.0, 0.01], [100_001_000.0, 0.02], [100_005_000.0, 1.0]]
    book.bids[:] = [[99_999_000.0, 0.01], [99_990_000.0, 1.0]]
    account = Account("k", "s", {"KRW": Balance(free=10_000_000.0), "BTC": Balance(free=1.0)})
    return Exchange(venue, model, FEE, 5000.0, [account], lambda: 1), account, model


def test_crossing_limit_bid_walks_levels_at_book_prices_and_pays_the_fee() -> None:
    ex, acct, _ = make()
    order = ex.place(acct, "KRW-BTC", "bid", "limit", 100_001_000.0, 0.025, None, "c1")
    assert order.state == "done" and order.remaining_volume == pytest.approx(0.0)
    funds = 100_000_000 * 0.01 + 100_001_000 * 0.015
    assert [(f.price, f.volume) for f in order.fills] == [(100_000_000.0, 0.01), (100_001_000.0, 0.015)]
    assert order.executed_funds == pytest.approx(funds)
    assert acct.balance("KRW").free == pytest.approx(10_000_000 - funds * (1 + FEE))
    assert acct.balance("KRW").locked == pytest.approx(0.0)
    assert acct.balance("BTC").free == pytest.approx(1.025)


def test_resting_bid_locks_funds_then_fills_at_its_price_when_the_market_crosses() -> None:
    ex, acct, model = make()
    order = ex.place(acct, "KRW-BTC", "bid", "limit", 99_000_000.0, 0.01, None, None)
    assert order.state == "wait" and not order.fills
    assert acct.balance("KRW").locked == pytest.approx(990_000 * (1 + FEE))
    model.book("upbit", "KRW-BTC").asks[0][0] = 98_900_000.0
    ex.on_step()
    assert order.state == "done" and order.fills[0].price == 99_000_000.0 and order.fills[0].is_maker
    assert acct.balance("KRW").locked == pytest.approx(0.0)


def test_ioc_remainder_is_cancelled_upbit_and_done_bithumb() -> None:
    for venue, final in (("upbit", "cancel"), ("bithumb", "done")):
        ex, acct, _ = make(venue)
        order = ex.place(acct, "KRW-BTC", "ask", "limit", 99_999_000.0, 0.05, "ioc", None)
        assert order.executed_volume == pytest.approx(0.01)
        assert order.state == final
        assert acct.balance("BTC").locked == pytest.approx(0.0)
        assert acct.balance("BTC").free == pytest.approx(0.99)


def test_fok_fills_all_or_nothing() -> None:
    ex, acct, _ = make()
    none = ex.place(acct, "KRW-BTC", "bid", "limit", 100_001_000.0, 0.05, "fok", None)
    assert none.state == "cancel" and not none.fills
    assert acct.balance("KRW").free == pytest.approx(10_000_000.0)
    full = ex.place(acct, "KRW-BTC", "bid", "limit", 100_001_000.0, 0.03, "fok", None)
    assert full.state == "done" and full.executed_volume == pytest.approx(0.03)


def test_market_buy_spends_krw_and_market_sell_sells_volume() -> None:
    ex, acct, _ = make()
    buy = ex.place(acct, "KRW-BTC", "bid", "price", 1_000_000.0, None, None, None)
    assert buy.executed_funds == pytest.approx(1_000_000.0, rel=1e-6)
    assert buy.state == "done"
    sell = ex.place(acct, "KRW-BTC", "ask", "market", None, 0.02, None, None)
    assert sell.state == "done" and sell.executed_volume == pytest.approx(0.02)


def test_validation_names_the_venue_error() -> None:
    ex, acct, _ = make()
    cases = [
        (("KRW-BTC", "bid", "limit", 100_000_500.0, 0.01), "invalid_price_bid"),
        (("KRW-BTC", "bid", "limit", 1_000_000.0, 0.001), "under_min_total_bid"),
        (("KRW-BTC", "bid", "limit", 100_000_000.0, 1.0), "insufficient_funds_bid"),
        (("KRW-BTC", "ask", "limit", 100_000_000.0, 2.0), "insufficient_funds_ask"),
        (("KRW-ETH", "bid", "limit", 100_000_000.0, 0.01), "validation_error"),
        (("KRW-BTC", "bid", "market", None, 0.01), "validation_error"),
    ]
    for args, name in cases:
        with pytest.raises(VenueError) as err:
            ex.place(acct, *args, None, None)
        assert err.value.name == name and err.value.status == 400


def test_client_ids_are_unique_forever_even_after_a_failed_order() -> None:
    ex, acct, _ = make()
    with pytest.raises(VenueError):
        ex.place(acct, "KRW-BTC", "bid", "limit", 100_000_000.0, 1.0, None, "x")  # no funds
    with pytest.raises(VenueError) as err:
        ex.place(acct, "KRW-BTC", "bid", "limit", 99_000_000.0, 0.01, None, "x")
    assert "already" in err.value.message
    order = ex.place(acct, "KRW-BTC", "bid", "limit", 99_000_000.0, 0.01, None, "y")
    assert ex.find(acct, client_id="y") is order
    ex.cancel(acct, order)
    with pytest.raises(VenueError):
        ex.place(acct, "KRW-BTC", "bid", "limit", 99_000_000.0, 0.01, None, "y")


def test_order_faults_reject_or_partially_fill() -> None:
    ex, acct, _ = make()
    ex.next_order_faults += [OrderFault("reject"), OrderFault("partial", 0.5)]
    with pytest.raises(VenueError) as err:
        ex.place(acct, "KRW-BTC", "bid", "limit", 100_001_000.0, 0.02, "ioc", None)
    assert err.value.name == "create_bid_error"
    part = ex.place(acct, "KRW-BTC", "bid", "limit", 100_001_000.0, 0.02, "ioc", None)
    assert part.executed_volume == pytest.approx(0.01) and part.state == "cancel"


def test_the_simulator_keeps_its_own_venue_rules() -> None:
    """The simulator validates with its own table (exchanges.md §1.7), never the client's, so a
    wrong client table fails a test; and it loads without karb.exchanges at all."""
    import subprocess
    import sys
    from decimal import Decimal

    from karb.sim.rules import DIALECTS, on_tick, tick
    assert [tick(p) for p in (2_000_000, 700_000, 150_000, 60_000, 20_000, 7_000, 3_000)] == \
        [1000, 500, 100, 50, 10, 5, 1]
    assert on_tick(Decimal("140001000")) and not on_tick(Decimal("140000500"))
    assert DIALECTS["bithumb"].ioc_partial_state == "done" and DIALECTS["upbit"].ioc_partial_state == "cancel"
    code = ("import sys, karb.sim.server\n"
            "assert not [m for m in sys.modules if m.startswith('karb.exchanges')], 'client loaded'\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
