"""Coin transfers inside the backtest (karb/backtest/transfers.py): the simulator's transfer
network over the backtest's engine exchanges, on virtual time, behind the HTTP client's calls,
answers and typed errors — and the rebalancer's money path (TransferManager) running on it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from karb import clock
from karb.backtest.transfers import (
    InProcessTransferClient,
    in_flight,
    sim_rebalance,
    transfer_clients,
)
from karb.backtest.venue import InProcessVenue
from karb.config import Config, RebalanceConfig, SimConfig, load_config
from karb.exchanges.errors import (
    InsufficientFunds,
    InvalidOrder,
    OrderNotFound,
    VenueUnavailable,
)
from karb.exchanges.transfers import LOOKUP_DEADLINE_S, TransferApi, TravelRule
from karb.execution.rebalance import TransferManager
from karb.execution.transfer_journal import TransferJournal, TransferRecord, TransferState
from karb.sim import engine
from karb.sim.market import MarketModel
from karb.sim.server import default_account
from karb.sim.transfers import TransferNetwork
from karb.trading import skew

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "backtest.yaml"
V = ["upbit", "bithumb"]
ACCESS = "sim-access"
T = TypeVar("T")


@pytest.fixture(scope="module")
def cfg() -> Config:
    return load_config(CONFIG)


@pytest.fixture
def run() -> Iterator[Callable[[Coroutine[Any, Any, T]], T]]:
    """Run a coroutine on a fresh virtual clock (installed as karb.clock's), in well under a
    second of real time."""
    vclock = clock.VirtualClock()
    previous = clock.set_clock(vclock)

    def go(main: Coroutine[Any, Any, T]) -> T:
        real = time.perf_counter()
        try:
            return vclock.run(main)
        finally:
            assert time.perf_counter() - real < 1.5

    yield go
    clock.set_clock(previous)


class World:
    """Both venues as a backtest builds them (run.py Backtest._build), plus their transfers."""

    def __init__(self, cfg: Config) -> None:
        sim = cfg.sim or SimConfig()
        self.sim = sim
        markets = list(cfg.markets)
        model = MarketModel(markets, sim, clock.time_ns() // 1_000_000)
        acct = default_account(markets, sim.prices)
        self.venues: dict[str, InProcessVenue] = {}
        for venue in V:
            account = engine.Account(acct.access_key, acct.secret_key,
                                     {c: engine.Balance(free=a) for c, a in acct.balances.items()})
            exchange = engine.Exchange(venue, model, 0.0005, 5000, [account], clock.time_ns)
            self.venues[venue] = InProcessVenue(exchange, account, rtt_ms=10.0)
        self.clients = transfer_clients(sim, self.venues)
        self.net = self.clients["upbit"].net

    def balance(self, venue: str, coin: str) -> engine.Balance:
        return self.venues[venue].account.balance(coin)

    def down(self, venue: str, for_s: float) -> int:
        until = clock.time_ns() // 1_000_000 + int(for_s * 1000)
        self.venues[venue].down_until_ms = until
        return until


def test_a_withdrawal_is_done_and_credited_after_processing_and_confirmation(
        cfg: Config, run: Callable[[Coroutine[Any, Any, float]], float]) -> None:
    async def main() -> float:
        w = World(cfg)
        bt, up = w.clients["bithumb"], w.clients["upbit"]
        processing = w.sim.transfers.processing_s
        xrp = w.sim.transfers.coins["XRP"]
        bt0, up0 = w.balance("bithumb", "XRP").free, w.balance("upbit", "XRP").free
        start = clock.monotonic()
        chance = await bt.withdraw_chance("XRP")
        assert (chance.fee, chance.minimum, chance.free, chance.can_withdraw) == (
            xrp.fee, xrp.minimum, bt0, True)
        dest = next(a for a in await bt.withdraw_addresses() if a.currency == "XRP")
        assert dest.address == TransferNetwork.address("upbit", "XRP", ACCESS)
        assert dest.address == cfg.rebalance.addresses["upbit"]["XRP"].address

        sent = await bt.withdraw("XRP", dest.net_type, 100.0, dest.address)
        assert (sent.venue, sent.state, sent.is_cancelable, sent.amount, sent.fee) == (
            "bithumb", "WAITING", True, 100.0, xrp.fee)
        assert abs(sent.created_ms - clock.time_ns() // 1_000_000) < 1000  # virtual wall time
        held = w.balance("bithumb", "XRP")
        assert held.free == pytest.approx(bt0 - 100 - xrp.fee)  # amount + fee locked
        assert held.locked == pytest.approx(100 + xrp.fee)

        await asyncio.sleep(processing)
        got = await bt.get_withdrawal(sent.uuid)
        assert got.state == "PROCESSING" and got.txid and not got.is_cancelable
        assert held.locked == pytest.approx(100 + xrp.fee)

        await asyncio.sleep(processing)
        got = await bt.get_withdrawal(txid=got.txid)
        assert got.state == "DONE" and got.done_ms is not None
        assert held.locked == pytest.approx(0) and held.free == pytest.approx(bt0 - 100 - xrp.fee)
        assert in_flight(w.net, ACCESS) == {"upbit": {"XRP": 100.0}}  # in no account now
        (deposit,) = await up.deposits("XRP")
        assert (deposit.state, deposit.txid, deposit.amount) == ("PROCESSING", got.txid, 100.0)
        assert w.balance("upbit", "XRP").free == up0

        await asyncio.sleep(xrp.confirm_s)
        deposit = await up.get_deposit(txid=got.txid)
        assert deposit.state == "ACCEPTED" and deposit.final
        assert w.balance("upbit", "XRP").free == pytest.approx(up0 + 100)
        assert in_flight(w.net, ACCESS) == {}
        return clock.monotonic() - start

    elapsed = run(main())
    assert 2 * 60 + 60 <= elapsed < 2 * 60 + 60 + 1  # processing twice, then confirmation


def test_a_withdrawal_during_an_outage_is_never_sent_and_lookups_retry_on_virtual_time(
        cfg: Config, run: Callable[[Coroutine[Any, Any, None]], None]) -> None:
    async def main() -> None:
        w = World(cfg)
        bt, up = w.clients["bithumb"], w.clients["upbit"]
        before = w.balance("bithumb", "XRP").free
        w.down("bithumb", 60)
        address = TransferNetwork.address("upbit", "XRP", ACCESS)
        with pytest.raises(VenueUnavailable):
            await bt.withdraw("XRP", "XRP", 100.0, address)
        assert w.net.withdrawals == {}  # not sent: the answer was lost before the venue
        assert w.balance("bithumb", "XRP").free == before
        assert w.balance("bithumb", "XRP").locked == 0
        t = clock.monotonic()
        with pytest.raises(VenueUnavailable):
            await bt.withdrawals("XRP")
        # the HTTP client's back-off until its deadline, on virtual time
        assert LOOKUP_DEADLINE_S - 2.1 <= clock.monotonic() - t <= LOOKUP_DEADLINE_S + 0.1
        assert await up.withdrawals() == []  # the other venue is up
        w.down("bithumb", 3)  # ends within the retries: the lookup answers
        assert await bt.withdrawals("XRP") == []
        # a failure the venue answers before carrying out (fail_next): a lookup retries it
        bt.state.faults.fail_next = 1
        assert (await bt.withdraw_chance("XRP")).free == before

    run(main())


def test_refusals_are_the_http_clients_typed_errors(
        cfg: Config, run: Callable[[Coroutine[Any, Any, None]], None]) -> None:
    async def main() -> None:
        w = World(cfg)
        bt, up = w.clients["bithumb"], w.clients["upbit"]
        to_up = TransferNetwork.address("upbit", "XRP", ACCESS)
        before = w.balance("bithumb", "XRP").free
        for address in ("sim-upbit-XRP-someone-else", TransferNetwork.address("bithumb", "XRP", ACCESS)):
            with pytest.raises(InvalidOrder, match="withdraw_address_not_registered"):
                await bt.withdraw("XRP", "XRP", 100.0, address)
        with pytest.raises(InvalidOrder, match="under_min_amount"):
            await bt.withdraw("XRP", "XRP", 5.0, to_up)
        with pytest.raises(InvalidOrder, match="invalid_parameter"):
            await bt.withdraw("XRP", "ERC20", 100.0, to_up)
        rule = TravelRule("upbit", "individual", "김카브", "Kim Karb")
        with pytest.raises(InsufficientFunds):
            await bt.withdraw("XRP", "XRP", before * 2, to_up, travel_rule=rule)
        # Bithumb asks for the receiver from 1,000,000 KRW (0.1 BTC is ~14,000,000); Upbit does not
        btc_to_up = TransferNetwork.address("upbit", "BTC", ACCESS)
        with pytest.raises(InvalidOrder, match="travel_rule_required"):
            await bt.withdraw("BTC", "BTC", 0.1, btc_to_up)
        assert (await bt.withdraw("BTC", "BTC", 0.1, btc_to_up, travel_rule=rule)).state == "WAITING"
        btc_to_bt = TransferNetwork.address("bithumb", "BTC", ACCESS)
        assert (await up.withdraw("BTC", "BTC", 0.1, btc_to_bt)).state == "WAITING"
        with pytest.raises(OrderNotFound):
            await bt.get_withdrawal("no-such-uuid")
        with pytest.raises(OrderNotFound):
            await up.get_deposit(txid="no-such-txid")
        assert w.balance("bithumb", "XRP").free == before  # nothing refused left the account
        # a WAITING withdrawal cancels, its coin comes back; only once
        sent = await bt.withdraw("XRP", "XRP", 100.0, to_up)
        assert (await bt.cancel_withdrawal(sent.uuid)).state == "CANCELLED"
        assert w.balance("bithumb", "XRP").free == pytest.approx(before)
        with pytest.raises(InvalidOrder):
            await bt.cancel_withdrawal(sent.uuid)

    run(main())


async def advance_until(mgr: TransferManager, rec: TransferRecord, state: TransferState,
                        within_s: float, every_s: float = 10.0) -> TransferRecord:
    deadline = clock.monotonic() + within_s
    while True:
        await mgr.advance()
        got = mgr.journal.get(rec.transfer_id)
        assert got is not None
        if got.state == state:
            return got
        assert clock.monotonic() < deadline, f"{rec.transfer_id} stayed {got.state}"
        await asyncio.sleep(every_s)


def manager(tmp_path: Path, clients: dict[str, InProcessTransferClient], cfg: RebalanceConfig,
            alerts: list[tuple[str, ...]]) -> TransferManager:
    typed: dict[str, TransferApi] = dict(clients)  # the protocol the rebalancer needs
    return TransferManager(TransferJournal(tmp_path / "journal.sqlite"), typed, cfg,
                           lambda *a: alerts.append(a), settle_s=10.0)


def test_transfer_manager_moves_a_coin_to_the_credit_on_virtual_time(
        cfg: Config, tmp_path: Path, run: Callable[[Coroutine[Any, Any, float]], float]) -> None:
    """The rebalancer's money path as configured in configs/backtest.yaml (its addresses and
    travel-rule fields): BTC from Bithumb to Upbit, requested → accepted → sent → credited."""
    fee = cfg.sim.transfers.coins["BTC"].fee if cfg.sim else 0.0

    async def main() -> float:
        w = World(cfg)
        alerts: list[tuple[str, ...]] = []
        mgr = manager(tmp_path, w.clients, cfg.rebalance, alerts)
        s = skew.coin_skew(cfg.rebalance, "BTC", {"upbit": 0.2, "bithumb": 1.0}, V)
        assert s.out_of_band and s.heavy == "bithumb"
        amount, planned_fee, why = await mgr.plan("BTC", s)
        assert why == "" and planned_fee == fee and amount == pytest.approx(0.4)
        start = clock.monotonic()
        rec = await mgr.start("BTC", "bithumb", "upbit", amount, planned_fee)
        assert rec is not None and rec.state == TransferState.ACCEPTED
        assert mgr.in_transit() == {"BTC": {"upbit": amount}}
        done = await advance_until(mgr, rec, TransferState.CREDITED, within_s=3 * 3600, every_s=30)
        assert mgr.journal.events(done.transfer_id) == ["requested", "accepted", "sent", "credited"]
        assert w.balance("bithumb", "BTC").free == pytest.approx(1.0 - amount - fee)
        assert w.balance("upbit", "BTC").free == pytest.approx(1.0 + amount)
        assert alerts == [] and mgr.in_transit() == {}
        mgr.journal.close()
        return clock.monotonic() - start

    elapsed = run(main())
    btc = cfg.sim.transfers.coins["BTC"].confirm_s if cfg.sim else 0.0
    assert 2 * 60 + btc <= elapsed <= 2 * 60 + btc + 60


def test_a_lost_answer_is_found_and_a_withdrawal_never_sent_is_not_sent(
        cfg: Config, tmp_path: Path, run: Callable[[Coroutine[Any, Any, None]], None]) -> None:
    async def main() -> None:
        w = World(cfg)
        alerts: list[tuple[str, ...]] = []
        mgr = manager(tmp_path, w.clients, cfg.rebalance, alerts)
        xrp_fee = w.sim.transfers.coins["XRP"].fee
        # Carried out, answer lost (a gateway's 504): REQUESTED, found by lookup, never resent.
        w.clients["bithumb"].state.faults.lose_next = 1
        rec = await mgr.start("XRP", "bithumb", "upbit", 100.0, xrp_fee)
        assert rec is not None and rec.state == TransferState.REQUESTED
        assert mgr.in_transit() == {"XRP": {"upbit": 100.0}}  # counted while unknown
        assert len(w.net.withdrawals) == 1
        done = await advance_until(mgr, rec, TransferState.CREDITED, within_s=600)
        assert mgr.journal.events(rec.transfer_id)[:2] == ["requested", "found"]
        assert len(w.net.withdrawals) == 1  # one withdrawal, never two
        assert done.uuid == next(iter(w.net.withdrawals))

        # Sent into an outage: never reached the venue. REQUESTED until a lookup can answer,
        # then NOT_SENT (settle_s after the request); nothing left Upbit.
        up_before = w.balance("upbit", "XRP").free
        until = w.down("upbit", 120)
        rec = await mgr.start("XRP", "upbit", "bithumb", 100.0, xrp_fee)
        assert rec is not None and rec.state == TransferState.REQUESTED
        await mgr.advance()  # the lookup fails (outage): left REQUESTED, looked up again later
        assert mgr.journal.get(rec.transfer_id).state == TransferState.REQUESTED  # type: ignore[union-attr]
        await advance_until(mgr, rec, TransferState.NOT_SENT, within_s=600)
        assert clock.time_ns() // 1_000_000 >= until
        assert [x for x in w.net.withdrawals.values() if x.venue == "upbit"] == []
        assert w.balance("upbit", "XRP").free == up_before
        assert mgr.open_for("XRP") is None  # free to try again
        assert alerts == []
        mgr.journal.close()

    run(main())


def test_sim_rebalance_fills_in_the_addresses_backtest_yaml_lists(cfg: Config) -> None:
    coins = [m.split("-", 1)[1] for m in cfg.markets]
    filled = sim_rebalance(RebalanceConfig(), coins, V, ACCESS)
    assert filled.addresses == cfg.rebalance.addresses
    assert set(filled.travel_rule) == set(V)
    assert sim_rebalance(cfg.rebalance, coins, V, ACCESS).travel_rule["upbit"] == \
        cfg.rebalance.travel_rule["upbit"]  # what the config has stays


def test_backtest_yaml_transfers_are_complete_and_consistent(cfg: Config) -> None:
    assert cfg.sim is not None
    t = cfg.sim.transfers
    coins = {m.split("-", 1)[1] for m in cfg.markets}
    assert set(t.coins) == coins
    slowest = 2 * t.processing_s + max(c.confirm_s for c in t.coins.values())
    assert cfg.rebalance.stuck_after_s > slowest  # no stuck alert for an ordinary BTC transfer
    assert cfg.rebalance.out_of_band_s > 5.0  # execution's balance_refresh_s (default 5 s)
    assert "upbit" in cfg.rebalance.travel_rule  # transfers from Bithumb carry the receiver
    for coin in coins:
        assert all(coin in cfg.rebalance.addresses[v] for v in V)


def test_the_factory_runs_on_a_backtests_own_venues(
        cfg: Config, tmp_path: Path, run: Callable[[Coroutine[Any, Any, None]], None]) -> None:
    """What Backtest._build does with it: the clients over the backtest's InProcessVenues (its
    lazy market model, its engine accounts), a transfer seen by execution's balance refresh."""
    from karb.backtest.run import Backtest, Options

    async def main() -> None:
        bt = Backtest(cfg, Options(days=1), tmp_path)
        bt._build()
        clients = transfer_clients(bt.sim, bt.clients)
        to_up = TransferNetwork.address("upbit", "ETH", ACCESS)
        before = bt.accounts["bithumb"].balance("ETH").free
        sent = await clients["bithumb"].withdraw("ETH", "ETH", 1.0, to_up, travel_rule=TravelRule(
            "upbit", "individual", "김카브", "Kim Karb"))
        balances = await bt.clients["bithumb"].balances()  # what execution's refresh reads
        fee = bt.sim.transfers.coins["ETH"].fee
        assert balances["ETH"].locked == pytest.approx(1.0 + fee)
        assert balances["ETH"].free == pytest.approx(before - 1.0 - fee)
        await asyncio.sleep(2 * bt.sim.transfers.processing_s + 1)
        assert in_flight(clients["upbit"].net, ACCESS) == {"upbit": {"ETH": 1.0}}
        await asyncio.sleep(bt.sim.transfers.coins["ETH"].confirm_s)
        assert (await clients["bithumb"].get_withdrawal(sent.uuid)).state == "DONE"
        assert bt.accounts["upbit"].balance("ETH").free == pytest.approx(before + 1.0)
        bt.journal.close()

    run(main())
