"""The pieces a backtest joins, on virtual time: the market model stepped by a VirtualClock, the
matching engine reading the clock, and a leg that waits its latency before its IOC lands —
slower than the competitor, it finds the gap taken. Nothing waits in real time."""

from __future__ import annotations

import asyncio

from karb.clock import VirtualClock
from karb.config import CompetitorConfig, DislocationConfig, SimConfig
from karb.sim.engine import Account, Balance, Exchange
from karb.sim.market import MarketModel

STEP_S = 0.1


def filled_after(latency_s: float) -> tuple[float, float, int]:
    """Sell into Bithumb's dislocated bids ``latency_s`` after the book showed the gap; a
    competitor acts 50 ms after it. Returns (filled, asked, virtual ms the run took)."""
    clock = VirtualClock()
    cfg = SimConfig(seed=9, noise_bps=0.0, volatility_bps=0.0,
                    dislocation=DislocationConfig(rate_per_min=0.0),
                    competitors=CompetitorConfig(count=1, latency_ms=50.0, latency_sigma=0.0,
                                                 notional_krw=1e12, notional_sigma=0.0))
    model = MarketModel(["KRW-XRP"], cfg, clock.time_ns() // 1_000_000)
    account = Account("k", "s", {"KRW": Balance(free=1e9), "XRP": Balance(free=1e6)})
    venue = Exchange("bithumb", model, 0.0004, 5000.0, [account], clock.time_ns)
    start_ms = clock.monotonic_ns() // 1_000_000

    async def market() -> None:
        while True:
            await clock.sleep(STEP_S)
            model.step(clock.time_ns() // 1_000_000)

    async def leg() -> tuple[float, float]:
        model.dislocate("bithumb", "KRW-XRP", 100.0, 10_000)
        await clock.sleep(STEP_S)  # the next step's book shows the gap (the market ticks first)
        await asyncio.sleep(0)
        # Upbit's best ask made deep: the competitor buying it does not move it, so what it
        # leaves on Bithumb is exactly what no longer pays it (nor us).
        model.book("upbit", "KRW-XRP").asks[0][1] = 1e9
        upbit_ask = model.book("upbit", "KRW-XRP").best_ask()
        limit = float(round(upbit_ask * 1.002))
        asked = round(sum(s for p, s in model.book("bithumb", "KRW-XRP").bids if p >= limit), 4)
        await clock.sleep(latency_s)
        order = venue.place(account, "KRW-XRP", "ask", "limit", limit, asked, "ioc", None)
        return order.executed_volume, asked

    async def main() -> tuple[float, float]:
        ticker = asyncio.create_task(market())
        try:
            async with clock.timeout(5.0):  # virtual: a leg timeout, as the executor has
                return await leg()
        finally:
            ticker.cancel()

    filled, asked = clock.run(main())
    return filled, asked, clock.monotonic_ns() // 1_000_000 - start_ms


def test_a_leg_faster_than_the_competitor_fills_and_a_slower_one_does_not() -> None:
    fast, asked, took_ms = filled_after(0.02)
    assert asked > 0 and fast == asked
    assert took_ms == 120  # one step, then our 20 ms: virtual, not waited
    slow, asked, took_ms = filled_after(0.08)
    assert asked > 0 and slow == 0.0
    assert took_ms == 180
