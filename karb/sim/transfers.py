"""Coin transfers between the two simulated venues: a withdrawal from one becomes a deposit on
the other (exchanges.md §6).

Both venues serve Upbit's paths (Bithumb's current API has the same ones, plus travel-rule
receiver fields on ``POST /v1/withdraws/coin``):

    GET  /v1/withdraws/chance?currency&net_type   fee, minimum, limits
    GET  /v1/withdraws/coin_addresses             the allow-listed withdrawal addresses
    POST /v1/withdraws/coin {currency, net_type, amount, address, secondary_address?, …}
    GET  /v1/withdraw?uuid|txid    GET /v1/withdraws?currency&state&limit
    DELETE /v1/withdraws/coin?uuid (while is_cancelable)
    GET  /v1/deposit?uuid|txid     GET /v1/deposits?currency&state&limit

Each account's deposit address for a coin is ``sim-<venue>-<coin>-<access key>``; on each venue
the allow-list holds the same account's addresses on the *other* venue. A withdrawal is
``WAITING`` (cancellable), then ``PROCESSING`` (a txid), then ``DONE`` after ``processing_s``
each; the deposit appears on the other venue as ``PROCESSING`` with the same txid and is
``ACCEPTED`` (credited) ``confirm_s`` later. The amount plus the fee is locked at request and
leaves at ``DONE``; a rejected, failed or cancelled withdrawal gives it back. Until the deposit
is credited the amount shows as ``in_transit`` in ``/_sim/accounts`` on the withdrawing venue.

Faults (``/_sim/faults/``): ``withdraw_next {"action": "stuck"|"reject"|"fail", "count"}`` —
stuck stays ``PROCESSING`` until ``clear``; reject ends ``REJECTED`` at once (compliance),
fail ``FAILED`` after processing; ``deposit_delay {"ms", "count"}`` — the next deposits confirm
that much later.

Error names the stored sources do not give are marked "(sim)" in their messages: 400
``withdraw_address_not_registered``, ``under_min_amount``, ``insufficient_funds_withdraw``,
``travel_rule_required`` (Bithumb's receiver fields missing), 404 ``withdraw_not_found`` /
``deposit_not_found``.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

from karb.config import SimCoinTransferConfig, SimTransfersConfig
from karb.sim.engine import Account, VenueError
from karb.sim.rules import dialect
from karb.sim.venue import (
    VenueState,
    num,
    parse_float,
)

WithdrawState = Literal["WAITING", "PROCESSING", "DONE", "FAILED", "CANCELLED", "REJECTED"]
DepositState = Literal["PROCESSING", "ACCEPTED", "CANCELLED", "REJECTED", "TRAVEL_RULE_SUSPECTED",
                       "REFUNDING", "REFUNDED"]
WithdrawFault = Literal["stuck", "reject", "fail"]
TRAVEL_FIELDS = ("exchange_name", "receiver_type", "receiver_ko_name", "receiver_en_name")


@dataclass
class Withdrawal:
    uuid: str
    venue: str
    account: str
    currency: str
    net_type: str
    amount: float
    fee: float
    address: str
    secondary_address: str | None
    krw_amount: float
    created_ns: int
    state: WithdrawState = "WAITING"
    txid: str | None = None
    done_ns: int | None = None
    deposit: Deposit | None = None


@dataclass
class Deposit:
    uuid: str
    venue: str
    account: str
    currency: str
    net_type: str
    amount: float
    txid: str
    created_ns: int
    state: DepositState = "PROCESSING"
    done_ns: int | None = None


@dataclass
class TransferNetwork:
    """Both venues' withdrawals and deposits; owned by the SimServer."""

    cfg: SimTransfersConfig
    venues: dict[str, VenueState]
    withdrawals: dict[str, Withdrawal] = field(default_factory=dict)
    deposits: dict[str, Deposit] = field(default_factory=dict)
    withdraw_faults: list[WithdrawFault] = field(default_factory=list)
    deposit_delays_ms: list[int] = field(default_factory=list)
    unstick: asyncio.Event = field(default_factory=asyncio.Event)
    _txids: Any = field(default_factory=lambda: itertools.count(1))

    def coin(self, venue: str, currency: str) -> SimCoinTransferConfig:
        known = self.cfg.coins.get(currency)
        if known is not None:
            return known
        price = self._price(venue, currency)
        return SimCoinTransferConfig(fee=_round_up(self.cfg.default_fee_krw / price),
                                     minimum=_round_up(self.cfg.default_minimum_krw / price),
                                     confirm_s=self.cfg.default_confirm_s)

    def net_type(self, venue: str, currency: str) -> str:
        return self.coin(venue, currency).net_type or currency

    def _price(self, venue: str, currency: str) -> float:
        market = f"KRW-{currency}"
        if market not in self.venues[venue].model.markets:
            raise VenueError(400, "invalid_parameter", f"currency {currency} is not supported here")
        return self.venues[venue].model.book(venue, market).best_bid() or 1.0

    @staticmethod
    def address(venue: str, currency: str, access_key: str) -> str:
        return f"sim-{venue}-{currency}-{access_key}"

    def other(self, venue: str) -> str:
        return next(v for v in self.venues if v != venue)

    def allow_list(self, venue: str, account: Account) -> list[tuple[str, str]]:
        """(currency, address) the account may withdraw to: its addresses on the other venue."""
        other = self.other(venue)
        coins = [m.split("-", 1)[1] for m in self.venues[venue].model.markets]
        return [(c, self.address(other, c, account.access_key)) for c in coins]

    def in_transit(self, venue: str, access_key: str) -> dict[str, float]:
        out: dict[str, float] = {}
        for w in self.withdrawals.values():
            if (w.venue == venue and w.account == access_key and w.state in ("PROCESSING", "DONE")
                    and (w.deposit is None or w.deposit.state != "ACCEPTED")):
                out[w.currency] = out.get(w.currency, 0.0) + w.amount
        return out

    # -- requests ---------------------------------------------------------------------------

    def request(self, state: VenueState, account: Account, body: dict[str, Any]) -> Withdrawal:
        venue = state.name
        currency = str(body.get("currency", "")).upper()
        amount = parse_float(body, "amount", venue)
        if not currency or amount is None or amount <= 0:
            raise VenueError(400, "invalid_parameter", "currency and a positive amount are required")
        net_type = str(body.get("net_type") or "")
        if net_type != self.net_type(venue, currency):
            raise VenueError(400, "invalid_parameter",
                             f"net_type must be {self.net_type(venue, currency)} for {currency}")
        address = str(body.get("address", ""))
        if (currency, address) not in self.allow_list(venue, account):
            raise VenueError(400, "withdraw_address_not_registered",
                             "the address is not on the account's withdrawal allow-list (sim)")
        coin = self.coin(venue, currency)
        if amount < coin.minimum:
            raise VenueError(400, "under_min_amount",
                             f"minimum withdrawal is {num(coin.minimum)} {currency} (sim)")
        krw = amount * self._price(venue, currency)
        if dialect(venue).travel_rule_fields and krw >= self.cfg.travel_rule_krw:
            missing = [f for f in TRAVEL_FIELDS if not body.get(f)]
            corporate = body.get("receiver_type") == "corporate"
            if corporate:
                missing += [f for f in ("receiver_corp_ko_name", "receiver_corp_en_name")
                            if not body.get(f)]
            if missing:
                raise VenueError(400, "travel_rule_required",
                                 f"from {num(self.cfg.travel_rule_krw)} KRW the receiver's data "
                                 f"is required: {', '.join(missing)} (sim)")
        balance = account.balance(currency)
        need = amount + coin.fee
        if need > balance.free + 1e-12:
            raise VenueError(400, "insufficient_funds_withdraw",
                             f"amount plus fee {num(need)} {currency} exceeds the free balance (sim)")
        balance.free -= need
        balance.locked += need
        w = Withdrawal(str(uuid.uuid4()), venue, account.access_key, currency, net_type, amount,
                       coin.fee, address, body.get("secondary_address") or None, krw,
                       state.now_ns())
        self.withdrawals[w.uuid] = w
        fault = self.withdraw_faults.pop(0) if self.withdraw_faults else None
        state.spawn(self._carry_out(w, coin, fault))
        return w

    def cancel(self, w: Withdrawal) -> Withdrawal:
        if w.state != "WAITING":
            raise VenueError(400, "withdraw_not_cancelable",
                             f"withdrawal {w.uuid} is {w.state}: only WAITING can be cancelled (sim)")
        self._release(w, "CANCELLED")
        return w

    async def _carry_out(self, w: Withdrawal, coin: SimCoinTransferConfig,
                         fault: WithdrawFault | None) -> None:
        state = self.venues[w.venue]
        if fault == "reject":
            self._release(w, "REJECTED")
            return
        await asyncio.sleep(self.cfg.processing_s)
        if w.state != "WAITING":
            return  # cancelled meanwhile
        w.state = "PROCESSING"
        w.txid = f"simtx{next(self._txids):012d}"
        if fault == "stuck":
            await self.unstick.wait()
        await asyncio.sleep(self.cfg.processing_s)
        if fault == "fail":
            self._release(w, "FAILED")
            return
        balance = state.exchange.accounts[w.account].balance(w.currency)
        balance.locked -= w.amount + w.fee
        w.state, w.done_ns = "DONE", state.now_ns()
        other = self.venues[self.other(w.venue)]
        if w.account not in other.exchange.accounts:
            return  # nobody there to credit: the coin stays in transit, as a wrong address would
        d = Deposit(str(uuid.uuid4()), other.name, w.account, w.currency, w.net_type, w.amount,
                    w.txid, other.now_ns())
        w.deposit = d
        self.deposits[d.uuid] = d
        delay_ms = self.deposit_delays_ms.pop(0) if self.deposit_delays_ms else 0
        other.spawn(self._confirm(d, coin.confirm_s + delay_ms / 1000))

    async def _confirm(self, d: Deposit, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        venue = self.venues[d.venue]
        venue.exchange.accounts[d.account].balance(d.currency).free += d.amount
        d.state, d.done_ns = "ACCEPTED", venue.now_ns()

    def _release(self, w: Withdrawal, final: WithdrawState) -> None:
        balance = self.venues[w.venue].exchange.accounts[w.account].balance(w.currency)
        balance.locked -= w.amount + w.fee
        balance.free += w.amount + w.fee
        w.state, w.done_ns = final, self.venues[w.venue].now_ns()


def _round_up(value: float) -> float:
    """A fee or minimum on a readable grid: two significant digits, rounded up."""
    if value <= 0:
        return 0.0
    digits = len(str(int(1 / value))) + 1 if value < 1 else -len(str(int(value))) + 2
    scale = 10 ** digits
    return -(-value * scale // 1) / scale
