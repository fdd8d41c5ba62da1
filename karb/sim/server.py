"""The simulator as a whole: one market model, one Upbit and one Bithumb server on loopback."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from aiohttp import web

from karb.config import (
    SIM_DEMO_ACCESS_KEY,
    SIM_DEMO_SECRET_KEY,
    Config,
    SimAccountConfig,
    SimConfig,
)
from karb.sim import bithumb, outages, upbit, wsfeed
from karb.sim.engine import Account, Balance, Exchange
from karb.sim.market import VENUES, MarketModel, default_price
from karb.sim.transfers import TransferNetwork
from karb.sim.venue import VenueState

log = logging.getLogger("karb.sim")

DEFAULT_MARKETS = ["KRW-BTC", "KRW-ETH", "KRW-XRP", "KRW-SOL", "KRW-DOGE", "KRW-ADA", "KRW-TRX",
                   "KRW-LINK", "KRW-AVAX", "KRW-DOT"]
DEFAULT_COIN_VALUE_KRW = 50_000_000.0


def default_account(markets: list[str], prices: dict[str, float]) -> SimAccountConfig:
    """``sim-access`` / ``sim-secret``: 50,000,000 KRW, 1 BTC and about as much of each coin."""
    balances = {"KRW": 50_000_000.0}
    for market in markets:
        coin = market.split("-", 1)[1]
        price = prices.get(market, default_price(market))
        balances[coin] = 1.0 if coin == "BTC" else round(DEFAULT_COIN_VALUE_KRW / price, 4)
    return SimAccountConfig(access_key=SIM_DEMO_ACCESS_KEY, secret_key=SIM_DEMO_SECRET_KEY,
                            balances=balances)


@dataclass
class Endpoint:
    venue: str
    rest: str
    ws: str


class SimServer:
    def __init__(self, config: Config) -> None:
        self.sim: SimConfig = config.sim or SimConfig()
        self.markets = list(config.markets) or DEFAULT_MARKETS
        self.model = MarketModel(self.markets, self.sim, time.time_ns() // 1_000_000)
        self.outages = outages.OutageSchedule(self.sim.outages, VENUES, self.sim.seed,
                                              self.model.now_ms)
        account_cfgs = self.sim.accounts or [default_account(self.markets, self.sim.prices)]
        self.venues: dict[str, VenueState] = {}
        for venue in VENUES:
            vcfg = self.sim.upbit if venue == "upbit" else self.sim.bithumb
            accounts = [Account(a.access_key, a.secret_key,
                                {cur: Balance(free=amount) for cur, amount in a.balances.items()})
                        for a in account_cfgs]
            state_ref: list[VenueState] = []

            def clock(ref: list[VenueState] = state_ref) -> int:  # this venue's, not the last one's
                return ref[0].now_ns()

            exchange = Exchange(venue, self.model, vcfg.fee_rate, vcfg.min_total_krw, accounts, clock)
            state = VenueState(venue, vcfg, self.sim, self.model, exchange)
            state_ref.append(state)
            self.venues[venue] = state
        self.transfers = TransferNetwork(self.sim.transfers, self.venues)
        for state in self.venues.values():
            state.transfers = self.transfers
        self._runners: list[web.AppRunner] = []
        # Where in each step a (venue, market) frame goes out: evenly spread, fixed per run.
        slots = [(v, m) for m in self.markets for v in VENUES]
        self._offsets = {key: i * self.sim.step_ms / 1000 / len(slots) for i, key in enumerate(slots)}
        self.endpoints: dict[str, Endpoint] = {}

    async def start(self) -> dict[str, Endpoint]:
        for venue, state in self.venues.items():
            app = upbit.build_app(state) if venue == "upbit" else bithumb.build_app(state)
            runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
            await runner.setup()
            site = web.TCPSite(runner, state.cfg.host, state.cfg.port)
            await site.start()
            self._runners.append(runner)
            port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            base = f"{state.cfg.host}:{port}"
            ws = f"ws://{base}/websocket/v1"
            self.endpoints[venue] = Endpoint(venue, f"http://{base}", ws)
        return self.endpoints

    async def run_market(self) -> None:
        """Step the model and stream what changed; carry out scheduled venue outages."""
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._step_loop())
            if self.outages.scheduled:
                tg.create_task(self._outage_loop())

    async def _outage_loop(self) -> None:
        # Apart from the step loop: closing a WebSocket waits for the client's answer, which
        # must not hold up the books.
        while True:
            await asyncio.sleep(0.1)
            for event in self.outages.due(time.time_ns() // 1_000_000):
                log.info("scheduled outage: %s %s %s", event.venue, event.kind,
                         "starts" if event.starts else "ends")
                await outages.apply(self.venues[event.venue], event, self.sim.outages.rest_status)

    async def _step_loop(self) -> None:
        """Step the model every ``step_ms``; never drifts or bursts."""
        loop = asyncio.get_running_loop()
        period = self.sim.step_ms / 1000
        next_at = loop.time()
        while True:
            next_at += period
            delay = next_at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                next_at = loop.time()  # fell behind: skip, do not catch up in a burst
                await asyncio.sleep(0)
            self.step()

    def step(self) -> None:
        changed = self.model.step(time.time_ns() // 1_000_000)
        by_venue: dict[str, set[str]] = {v: set() for v in VENUES}
        for venue, market in changed:
            by_venue[venue].add(market)
        for venue, state in self.venues.items():
            state.exchange.on_step()
            if not self.sim.stagger_markets:
                wsfeed.publish_step(state, by_venue[venue])
                continue
            loop = asyncio.get_running_loop()
            for market in by_venue[venue]:
                delay = self._offsets[(venue, market)]
                if delay == 0:
                    wsfeed.publish_step(state, {market})
                else:
                    loop.call_later(delay, wsfeed.publish_step, state, {market})

    async def stop(self) -> None:
        for state in self.venues.values():
            await state.stop_background()  # delayed order executions not yet carried out
            for session in list(state.sockets):
                await session.drop()
        for runner in self._runners:
            await runner.cleanup()
        self._runners.clear()
