"""Coin transfers between the simulated venues through karb's TransferClient: a withdrawal
from one venue becomes a deposit on the other (fees taken, money in transit visible), the
venues' refusals as typed errors, the faults (stuck, rejected, delayed deposit), and a
withdrawal whose answer was lost found again by lookup after a "crash"."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest

from karb.exchanges.credentials import Credentials, Secret
from karb.exchanges.errors import (
    InsufficientFunds,
    InvalidOrder,
    OrderNotFound,
    VenueUnavailable,
)
from karb.exchanges.transfers import TransferClient, TravelRule
from karb.sim.server import SimServer
from tests.integration.simkit import ACCESS, SECRET, running_sim

CREDS = Credentials(Secret(ACCESS), Secret(SECRET))
FAST = {"processing_s": 0.1, "default_confirm_s": 0.2,
        "coins": {"XRP": {"fee": 0.4, "minimum": 2.0, "confirm_s": 0.2}}}


async def until(check: Callable[[], Awaitable[Any]], timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = await check()
        if got:
            return got
        assert time.monotonic() < deadline, "condition never became true"
        await asyncio.sleep(0.03)


@asynccontextmanager
async def venues(**transfers: Any) -> AsyncIterator[tuple[SimServer, dict[str, TransferClient], dict[str, str]]]:
    cfg = {**FAST, **transfers}
    async with running_sim(rate_limits={"enabled": False}, transfers=cfg) as (server, ep):
        clients = {v: TransferClient(v, ep[v].rest, CREDS) for v in ("upbit", "bithumb")}
        try:
            yield server, clients, {v: e.rest for v, e in ep.items()}
        finally:
            for c in clients.values():
                await c.close()


def free(server: SimServer, venue: str, currency: str) -> float:
    return server.venues[venue].exchange.accounts[ACCESS].balance(currency).free


async def test_withdrawal_becomes_a_deposit_on_the_other_venue() -> None:
    async with venues() as (server, c, rest), aiohttp.ClientSession() as s:
        upbit_rest = rest["upbit"]
        up, bt = c["upbit"], c["bithumb"]
        chance = await up.withdraw_chance("XRP")
        assert (chance.fee, chance.minimum, chance.can_withdraw) == (0.4, 2.0, True)
        address = next(a for a in await up.withdraw_addresses() if a.currency == "XRP")
        assert address.address == "sim-bithumb-XRP-sim-access"
        before_up, before_bt = free(server, "upbit", "XRP"), free(server, "bithumb", "XRP")
        w = await up.withdraw("XRP", address.net_type, 10.0, address.address)
        assert w.state == "WAITING" and w.is_cancelable and w.fee == 0.4
        assert free(server, "upbit", "XRP") == pytest.approx(before_up - 10.4)
        transit = await until(lambda: _in_transit(s, upbit_rest))
        assert transit == pytest.approx(10.0)  # PROCESSING or DONE, not yet credited
        done = await until(lambda: _final(up, w.uuid))
        assert done.state == "DONE" and done.txid
        deposit = await until(lambda: _accepted(bt, done.txid))
        assert deposit.amount == 10.0 and deposit.currency == "XRP"
        assert free(server, "bithumb", "XRP") == pytest.approx(before_bt + 10.0)
        assert server.venues["upbit"].exchange.accounts[ACCESS].balance("XRP").locked == pytest.approx(0)
        assert await _in_transit(s, upbit_rest) == 0
        assert [x.uuid for x in await up.withdrawals("XRP")] == [w.uuid]
        assert (await bt.get_deposit(uuid=deposit.uuid)).state == "ACCEPTED"


async def _in_transit(s: aiohttp.ClientSession, rest: str) -> float:
    accounts = await (await s.get(f"{rest}/_sim/accounts")).json()
    return float(accounts[ACCESS]["XRP"]["in_transit"])


async def _final(client: TransferClient, uuid: str) -> Any:
    w = await client.get_withdrawal(uuid)
    return w if w.final else None


async def _accepted(client: TransferClient, txid: str | None) -> Any:
    rows = [d for d in await client.deposits("XRP") if d.txid == txid and d.state == "ACCEPTED"]
    return rows[0] if rows else None


async def test_refusals_are_typed_and_travel_rule_applies_on_bithumb() -> None:
    async with venues() as (server, c, _):
        up, bt = c["upbit"], c["bithumb"]
        with pytest.raises(InvalidOrder, match="allow-list"):
            await up.withdraw("XRP", "XRP", 10.0, "somewhere-else")
        with pytest.raises(InvalidOrder, match="minimum"):
            await up.withdraw("XRP", "XRP", 1.0, "sim-bithumb-XRP-sim-access")
        with pytest.raises(InsufficientFunds):
            await up.withdraw("XRP", "XRP", 10**9, "sim-bithumb-XRP-sim-access")
        with pytest.raises(OrderNotFound):
            await up.get_withdrawal("no-such-uuid")
        # ~1,500,000 KRW of XRP from Bithumb: the receiver's data is required.
        amount = round(1_500_000 / server.model.book("bithumb", "KRW-XRP").best_bid(), 2)
        with pytest.raises(InvalidOrder, match="receiver"):
            await bt.withdraw("XRP", "XRP", amount, "sim-upbit-XRP-sim-access")
        rule = TravelRule("upbit", "individual", "홍길동", "GILDONG HONG")
        w = await bt.withdraw("XRP", "XRP", amount, "sim-upbit-XRP-sim-access", travel_rule=rule)
        assert w.state == "WAITING"
        cancelled = await bt.cancel_withdrawal(w.uuid)  # still WAITING: cancellable
        assert cancelled.state == "CANCELLED" and not cancelled.is_cancelable
        with pytest.raises(InvalidOrder):
            await bt.cancel_withdrawal(w.uuid)


async def test_faults_stuck_rejected_and_delayed_deposit() -> None:
    async with venues() as (server, c, rest), aiohttp.ClientSession() as s:
        upbit_rest = rest["upbit"]
        up, bt = c["upbit"], c["bithumb"]
        addr = "sim-bithumb-XRP-sim-access"

        async def fault(name: str, **body: Any) -> None:
            assert (await s.post(f"{upbit_rest}/_sim/faults/{name}", json=body)).status == 200

        start = free(server, "upbit", "XRP")
        await fault("withdraw_next", action="reject")
        rejected = await up.withdraw("XRP", "XRP", 5.0, addr)
        assert (await until(lambda: _final(up, rejected.uuid))).state == "REJECTED"
        assert free(server, "upbit", "XRP") == pytest.approx(start)  # given back

        await fault("withdraw_next", action="stuck")
        stuck = await up.withdraw("XRP", "XRP", 5.0, addr)
        await until(lambda: _state_is(up, stuck.uuid, "PROCESSING"))
        await asyncio.sleep(0.5)  # several processing periods: still stuck
        assert (await up.get_withdrawal(stuck.uuid)).state == "PROCESSING"
        await fault("clear")
        assert (await until(lambda: _final(up, stuck.uuid))).state == "DONE"

        assert (await s.post(f"{rest['bithumb']}/_sim/faults/deposit_delay", json={"ms": 800})).status == 200
        late = await up.withdraw("XRP", "XRP", 5.0, addr)
        done = await until(lambda: _final(up, late.uuid))
        t0 = time.monotonic()
        deposit = await until(lambda: _accepted(bt, done.txid))
        assert time.monotonic() - t0 >= 0.6 and deposit.amount == 5.0


async def _state_is(client: TransferClient, uuid: str, state: str) -> bool:
    return (await client.get_withdrawal(uuid)).state == state


async def test_a_lost_answer_is_found_again_by_lookup_after_a_crash() -> None:
    async with venues() as (server, c, rest), aiohttp.ClientSession() as s:
        upbit_rest = rest["upbit"]
        up = c["upbit"]
        since_ms = int(time.time() * 1000)
        assert (await s.post(f"{upbit_rest}/_sim/faults/lose_response", json={"count": 1})).status == 200
        with pytest.raises(VenueUnavailable):  # carried out, answered 504: outcome unknown
            await up.withdraw("XRP", "XRP", 7.0, "sim-bithumb-XRP-sim-access")
        await up.close()  # the process that asked is gone
        fresh = TransferClient("upbit", upbit_rest, CREDS)
        try:
            found = await fresh.find_withdrawal("XRP", 7.0, since_ms)
            assert found is not None and found.amount == 7.0
            assert await fresh.find_withdrawal("XRP", 8.0, since_ms) is None
            done = await until(lambda: _final(fresh, found.uuid))
            assert done.state == "DONE"
            assert await until(lambda: _accepted(c["bithumb"], done.txid))
            assert len(server.transfers.withdrawals) == 1  # asked once, found, never resent
        finally:
            await fresh.close()
