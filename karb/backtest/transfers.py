"""The backtest's coin transfers: the simulator's own transfer network
(:class:`karb.sim.transfers.TransferNetwork`) over the backtest's engine exchanges, reached
without HTTP, on the virtual clock.

:class:`InProcessTransferClient` has :class:`karb.exchanges.transfers.TransferClient`'s calls,
answers and typed errors (the :class:`~karb.exchanges.transfers.TransferApi` protocol), so the
rebalancer's money path (:class:`karb.execution.rebalance.TransferManager`) runs on it as live.
Each call builds the same JSON the simulator's HTTP server answers (``karb.sim.transfer_api``)
and converts it with the HTTP client's own conversion (times in whole KST seconds, as on the
wire); the venue's errors go through ``classify`` with the status, name and message the HTTP
server would have sent.

Timing, as :class:`~karb.backtest.venue.InProcessVenue`: a request reaches the venue ``rtt/2``
after it is sent and its answer comes back ``rtt/2`` later. While the venue's REST outage lasts
(the InProcessVenue's ``down_until_ms``, set by the backtest's outage schedule) every request
answers 503 before reaching the network: a withdrawal POST raises ``VenueUnavailable`` and was
never sent (the order POSTs' rule), a lookup raises it once the client's retries (``LOOKUP_
DEADLINE_S`` of virtual time, the HTTP client's back-off) are spent. The venue's ``/_sim/``
faults in ``VenueState.faults`` apply as in the HTTP middleware: ``fail_next`` (answered
before the call is carried out), ``lose_next`` (carried out, answer lost: 504),
``rest_latency_ms``; the network's own ones (``withdraw_faults``, ``deposit_delays_ms``) too.

The withdrawal's clock is the virtual one: a withdrawal is ``WAITING`` then ``PROCESSING``
then ``DONE`` ``sim.transfers.processing_s`` apart each, and the deposit at the other venue is
credited the coin's ``confirm_s`` after ``DONE``. Between ``DONE`` and the credit the coin is in
no account's balance: :func:`in_flight` lists it (for the final equity).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import msgspec

from karb import clock
from karb.backtest.venue import InProcessVenue
from karb.config import (
    RebalanceConfig,
    SimConfig,
    TravelRuleConfig,
    WithdrawAddressConfig,
)
from karb.exchanges.errors import RateLimited, VenueUnavailable, classify
from karb.exchanges.transfers import (
    LOOKUP_DEADLINE_S,
    Deposit,
    DepositState,
    TravelRule,
    WithdrawAddress,
    WithdrawalState,
    WithdrawChance,
    Withdrawal,
    addresses_from_json,
    chance_from_json,
    deposit_from_json,
    match_withdrawal,
    withdraw_body,
    withdrawal_from_json,
)
from karb.sim import engine
from karb.sim.transfer_api import (
    addresses_json,
    chance_json,
    deposit_json,
    deposit_rows,
    own_deposit,
    own_withdrawal,
    withdrawal_json,
    withdrawal_rows,
)
from karb.sim.transfers import TransferNetwork
from karb.sim.venue import VenueState

T = TypeVar("T")


class VirtualVenueState(VenueState):
    """A simulated venue's state whose clock is ``karb.clock`` (virtual in a backtest): the
    transfers' ``created_at``/``done_at`` are stamped in backtest time."""

    def now_ns(self) -> int:
        return clock.time_ns() + self.faults.clock_skew_ms * 1_000_000


class InProcessTransferClient:
    """One venue's deposit and withdrawal calls onto the shared :class:`TransferNetwork`."""

    def __init__(self, venue: InProcessVenue, state: VenueState, net: TransferNetwork) -> None:
        self.venue: str = venue.venue
        self.orders = venue  # its rtt and REST outage are this client's too
        self.state = state
        self.net = net
        self.account = venue.account
        self.requests = 0

    async def close(self) -> None:
        return None

    # -- calls ----------------------------------------------------------------------------------

    async def withdraw_chance(self, currency: str, net_type: str | None = None) -> WithdrawChance:
        data = await self._lookup(lambda: chance_json(self.net, self.venue, self.account,
                                                      currency, net_type or currency))
        return chance_from_json(data)

    async def withdraw_addresses(self) -> list[WithdrawAddress]:
        return addresses_from_json(await self._lookup(
            lambda: addresses_json(self.net, self.venue, self.account)))

    async def withdraw(self, currency: str, net_type: str, amount: float, address: str,
                       secondary_address: str | None = None,
                       travel_rule: TravelRule | None = None) -> Withdrawal:
        """Ask once, as live: a lost answer raises VenueUnavailable (then ``find_withdrawal``)."""
        body: dict[str, Any] = withdraw_body(currency, net_type, amount, address,
                                             secondary_address, travel_rule)
        data = await self._call(lambda: withdrawal_json(
            self.net.request(self.state, self.account, body)))
        return withdrawal_from_json(self.venue, data)

    async def cancel_withdrawal(self, uuid: str) -> Withdrawal:
        data = await self._call(lambda: withdrawal_json(self.net.cancel(
            own_withdrawal(self.net, self.venue, self.account, uuid, None))))
        return withdrawal_from_json(self.venue, data)

    async def get_withdrawal(self, uuid: str | None = None, txid: str | None = None) -> Withdrawal:
        uuid_, txid_ = (uuid, None) if uuid else (None, txid or "")
        return withdrawal_from_json(self.venue, await self._lookup(lambda: withdrawal_json(
            own_withdrawal(self.net, self.venue, self.account, uuid_, txid_))))

    async def withdrawals(self, currency: str | None = None, state: WithdrawalState | None = None,
                          limit: int = 100) -> list[Withdrawal]:
        rows = await self._lookup(lambda: withdrawal_rows(
            self.net, self.venue, self.account, currency, state, True, min(max(limit, 1), 100)))
        return [withdrawal_from_json(self.venue, w) for w in rows]

    async def get_deposit(self, uuid: str | None = None, txid: str | None = None) -> Deposit:
        uuid_, txid_ = (uuid, None) if uuid else (None, txid or "")
        return deposit_from_json(self.venue, await self._lookup(lambda: deposit_json(
            own_deposit(self.net, self.venue, self.account, uuid_, txid_))))

    async def deposits(self, currency: str | None = None, state: DepositState | None = None,
                       limit: int = 100) -> list[Deposit]:
        rows = await self._lookup(lambda: deposit_rows(
            self.net, self.venue, self.account, currency, state, True, min(max(limit, 1), 100)))
        return [deposit_from_json(self.venue, d) for d in rows]

    async def find_withdrawal(self, currency: str, amount: float, since_ms: int,
                              tolerance: float = 1e-8) -> Withdrawal | None:
        """As :meth:`TransferClient.find_withdrawal`: the newest of ``currency`` and ``amount``
        created at or after ``since_ms`` (less a second)."""
        return match_withdrawal(await self.withdrawals(currency), amount, since_ms, tolerance)

    # -- plumbing -------------------------------------------------------------------------------

    async def _call(self, act: Callable[[], T]) -> T:
        """One request: ``rtt/2`` out, carried out at the venue (unless it is down or a fault
        answers first), ``rtt/2`` back. Never retried here."""
        self.requests += 1
        self.orders.requests += 1
        sleep = clock.current().sleep
        half = self.orders.rtt_s / 2
        await sleep(half)
        faults = self.state.faults
        if self.orders._down():
            await sleep(half)
            raise VenueUnavailable(self.venue, "server_error", "503 (simulated outage)", 503)
        if faults.rest_latency_ms:
            await sleep(faults.rest_latency_ms / 1000)
        if faults.fail_next > 0:
            faults.fail_next -= 1
            await sleep(half)
            name = "too_many_requests" if faults.fail_status == 429 else "server_error"
            raise classify(self.venue, faults.fail_status, name, "simulated venue failure")
        try:
            result = act()
        except engine.VenueError as exc:
            await sleep(half)
            self._lose_answer()
            raise classify(self.venue, exc.status, exc.name, exc.message) from None
        await sleep(half)
        self._lose_answer()
        return result

    def _lose_answer(self) -> None:
        """``lose_next``: the request was carried out, its answer is a gateway's 504."""
        faults = self.state.faults
        if faults.lose_next > 0:
            faults.lose_next -= 1
            raise VenueUnavailable(self.venue, "gateway_timeout",
                                   "simulated lost response (request was carried out)", 504)

    async def _lookup(self, act: Callable[[], T]) -> T:
        """A GET, retried on 5xx/429 with the HTTP client's back-off until its deadline (on the
        virtual clock)."""
        deadline = clock.monotonic() + LOOKUP_DEADLINE_S
        delay = 0.2
        while True:
            try:
                return await self._call(act)
            except (VenueUnavailable, RateLimited):
                if clock.monotonic() + delay > deadline:
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)


def transfer_clients(sim: SimConfig, venues: Mapping[str, InProcessVenue]
                     ) -> dict[str, InProcessTransferClient]:
    """One transfer client per venue over one network shared by both (``sim.transfers``'s fees,
    minimums and times), on the venues' own engine exchanges and accounts. Call it on the
    running (virtual) loop."""
    states: dict[str, VenueState] = {
        name: VirtualVenueState(name, sim.upbit if name == "upbit" else sim.bithumb, sim,
                                v.exchange.model, v.exchange)
        for name, v in venues.items()}
    net = TransferNetwork(sim.transfers, states)
    for state in states.values():
        state.transfers = net
    return {name: InProcessTransferClient(venues[name], states[name], net) for name in venues}


def in_flight(net: TransferNetwork, access_key: str) -> dict[str, dict[str, float]]:
    """Destination venue → coin → amount withdrawn (``DONE`` at the source, so in no account's
    balance any more) and not yet credited. A withdrawal still ``WAITING``/``PROCESSING`` is
    locked in the source account's balance and is not listed; the fee is gone, not in flight."""
    out: dict[str, dict[str, float]] = {}
    for w in net.withdrawals.values():
        if w.account == access_key and w.state == "DONE" and (
                w.deposit is None or w.deposit.state != "ACCEPTED"):
            per = out.setdefault(net.other(w.venue), {})
            per[w.currency] = per.get(w.currency, 0.0) + w.amount
    return out


def sim_rebalance(rebalance: RebalanceConfig, coins: list[str], venues: list[str],
                  access_key: str) -> RebalanceConfig:
    """``rebalance`` with what the simulated venues need filled in where the config has none:
    each coin's deposit address on each venue (``sim-<venue>-<coin>-<access key>``, the
    sim's net_type) and travel-rule receiver fields (our own account) for every destination."""
    addresses = {v: dict(rebalance.addresses.get(v, {})) for v in venues}
    for venue in venues:
        for coin in coins:
            addresses[venue].setdefault(coin, WithdrawAddressConfig(
                address=TransferNetwork.address(venue, coin, access_key)))
    travel = dict(rebalance.travel_rule)
    for venue in venues:
        travel.setdefault(venue, TravelRuleConfig(exchange_name=venue, receiver_ko_name="김카브",
                                                  receiver_en_name="Kim Karb"))
    return msgspec.structs.replace(rebalance, addresses=addresses, travel_rule=travel)
