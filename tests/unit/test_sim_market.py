from __future__ import annotations

from decimal import Decimal

from karb.config import DislocationConfig, SimConfig
from karb.exchanges.ticks import on_tick
from karb.sim.market import LEVELS, MarketModel

MARKETS = ["KRW-BTC", "KRW-XRP", "KRW-DOGE"]


def run(seed: int, steps: int = 200, **cfg: object) -> MarketModel:
    model = MarketModel(MARKETS, SimConfig(seed=seed, **cfg), 0)  # type: ignore[arg-type]
    for i in range(1, steps + 1):
        model.step(i * 100)
    return model


def test_same_seed_same_market_different_seed_different_market() -> None:
    a, b, c = run(1), run(1), run(2)
    assert a.fair == b.fair
    assert a.book("upbit", "KRW-BTC") == b.book("upbit", "KRW-BTC")
    assert a.fair != c.fair


def test_books_are_30_levels_on_ticks_and_never_crossed() -> None:
    model = run(3)
    for venue in ("upbit", "bithumb"):
        for market in MARKETS:
            book = model.book(venue, market)
            assert len(book.asks) == LEVELS
            assert book.best_bid() < book.best_ask()
            assert [p for p, _ in book.bids] == sorted((p for p, _ in book.bids), reverse=True)
            assert [p for p, _ in book.asks] == sorted(p for p, _ in book.asks)
            assert all(on_tick(Decimal(repr(p))) for p, _ in book.bids + book.asks)
            if venue == "bithumb":  # Bithumb prints sizes with 4 decimals
                assert all(round(s, 4) == s for _, s in book.asks)


def test_venues_share_one_fair_value_within_noise() -> None:
    model = run(4, noise_bps=3.0)
    for market in MARKETS:
        up = model.book("upbit", market).best_bid()
        bt = model.book("bithumb", market).best_bid()
        assert abs(up / bt - 1) < 0.005


def test_dislocation_moves_one_venue_away_then_ends() -> None:
    model = run(5, steps=10, noise_bps=0.0, volatility_bps=0.0)
    before = model.book("upbit", "KRW-XRP").best_bid() / model.book("bithumb", "KRW-XRP").best_bid()
    model.dislocate("bithumb", "KRW-XRP", 100.0, 500)
    model.step(1_100)
    during = model.book("bithumb", "KRW-XRP").best_bid() / model.book("upbit", "KRW-XRP").best_bid()
    assert during > 1.008  # ~100 bps higher on Bithumb
    model.step(1_700)
    after = model.book("upbit", "KRW-XRP").best_bid() / model.book("bithumb", "KRW-XRP").best_bid()
    assert abs(after - before) < 0.002


def test_random_dislocations_happen_at_the_configured_rate() -> None:
    cfg = SimConfig(seed=6, step_ms=100, dislocation=DislocationConfig(rate_per_min=60.0))
    model = MarketModel(MARKETS, cfg, 0)
    seen = 0
    for i in range(1, 601):  # one minute
        before = len(model.dislocations)
        model.step(i * 100)
        seen += len(model.dislocations) > before
    assert 30 <= seen <= 100
