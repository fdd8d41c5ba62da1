"""Coin deposits and withdrawals on Upbit and Bithumb (exchanges.md §6): typed calls for the
ground of inventory rebalancing.

Both venues serve the same ``/v1`` paths and fields (Bithumb adds travel-rule receiver fields
on ``POST /v1/withdraws/coin``): ``GET /v1/withdraws/chance``, ``GET /v1/withdraws/
coin_addresses``, ``POST /v1/withdraws/coin``, ``DELETE /v1/withdraws/coin``, ``GET
/v1/withdraw``, ``GET /v1/withdraws``, ``GET /v1/deposit``, ``GET /v1/deposits``.

A withdrawal moves money and has no client id on Upbit: :meth:`TransferClient.withdraw` is
sent exactly once, never retried. If its answer is lost (timeout, 5xx) it raises
:class:`~karb.exchanges.errors.VenueUnavailable` and the caller must find it with
:meth:`TransferClient.find_withdrawal` (currency, amount, address, time) before ever asking
again. Lookups (GET) are retried on 5xx/429 within a deadline. Errors are our typed ones
(``classify``): an address off the allow-list, an amount under the minimum, a missing
travel-rule field → ``InvalidOrder``; not enough coin → ``InsufficientFunds``; an unknown uuid
→ ``OrderNotFound``.
"""

from __future__ import annotations

import asyncio
import calendar
import time
from datetime import datetime
from typing import Any, Literal, Protocol, TypeVar
from urllib.parse import urlencode

import aiohttp
import msgspec

from karb.exchanges.bithumb import auth as bithumb_auth
from karb.exchanges.credentials import Credentials
from karb.exchanges.errors import RateLimited, VenueError, VenueUnavailable, classify
from karb.exchanges.upbit import auth as upbit_auth

T = TypeVar("T")
TransferVenue = Literal["upbit", "bithumb"]
WithdrawalState = Literal["WAITING", "PROCESSING", "DONE", "FAILED", "CANCELLED", "REJECTED"]
DepositState = Literal["PROCESSING", "ACCEPTED", "CANCELLED", "REJECTED", "TRAVEL_RULE_SUSPECTED",
                       "REFUNDING", "REFUNDED"]
WITHDRAWAL_FINAL: frozenset[str] = frozenset({"DONE", "FAILED", "CANCELLED", "REJECTED"})
DEPOSIT_FINAL: frozenset[str] = frozenset({"ACCEPTED", "CANCELLED", "REJECTED", "REFUNDED"})
LOOKUP_DEADLINE_S = 10.0


class TravelRule(msgspec.Struct, frozen=True):
    """Bithumb's receiver fields, required from 1,000,000 KRW (exchanges.md §6)."""

    exchange_name: str
    receiver_type: Literal["individual", "corporate"]
    receiver_ko_name: str
    receiver_en_name: str
    receiver_corp_ko_name: str | None = None
    receiver_corp_en_name: str | None = None


class WithdrawChance(msgspec.Struct, frozen=True):
    currency: str
    fee: float
    minimum: float
    can_withdraw: bool
    free: float  # the account's free balance of the currency


class WithdrawAddress(msgspec.Struct, frozen=True):
    currency: str
    net_type: str
    address: str
    secondary_address: str | None


class Withdrawal(msgspec.Struct, frozen=True):
    venue: str
    uuid: str
    currency: str
    net_type: str
    state: WithdrawalState
    amount: float
    fee: float
    txid: str | None
    created_ms: int
    done_ms: int | None
    is_cancelable: bool

    @property
    def final(self) -> bool:
        return self.state in WITHDRAWAL_FINAL


class Deposit(msgspec.Struct, frozen=True):
    venue: str
    uuid: str
    currency: str
    net_type: str
    state: DepositState
    amount: float
    txid: str | None
    created_ms: int
    done_ms: int | None

    @property
    def final(self) -> bool:
        return self.state in DEPOSIT_FINAL


# -- wire shapes (the venues' own names; amounts are strings) --------------------------------

class _WireCurrency(msgspec.Struct):
    code: str
    withdraw_fee: str


class _WireAccount(msgspec.Struct):
    balance: str


class _WireLimit(msgspec.Struct):
    minimum: str
    can_withdraw: bool = True


class _WireChance(msgspec.Struct):
    currency: _WireCurrency
    account: _WireAccount
    withdraw_limit: _WireLimit


class _WireAddress(msgspec.Struct):
    currency: str
    net_type: str
    withdraw_address: str
    secondary_address: str | None = None


class _WireTransfer(msgspec.Struct):
    uuid: str
    currency: str
    state: str
    amount: str
    created_at: str
    net_type: str = ""
    txid: str | None = None
    done_at: str | None = None
    fee: str = "0"
    is_cancelable: bool = False


def _kst_ms(stamp: str | None) -> int | None:
    """``2026-11-21T18:40:02+09:00`` → epoch ms (both venues print KST)."""
    if not stamp:
        return None
    # fromisoformat, not strptime: the same fields, ~30x faster (a backtest lists often)
    t = datetime.fromisoformat(stamp[:19]).timetuple()
    return (calendar.timegm(t) - 9 * 3600) * 1000


def _withdrawal_of(venue: str, w: _WireTransfer) -> Withdrawal:
    return Withdrawal(venue, w.uuid, w.currency, w.net_type, w.state.upper(),  # type: ignore[arg-type]  # checked by the venue's contract; unknown states fail below
                      float(w.amount), float(w.fee), w.txid, _kst_ms(w.created_at) or 0,
                      _kst_ms(w.done_at), w.is_cancelable)


def _deposit_of(venue: str, d: _WireTransfer) -> Deposit:
    return Deposit(venue, d.uuid, d.currency, d.net_type, d.state.upper(),  # type: ignore[arg-type]  # as above
                   float(d.amount), d.txid, _kst_ms(d.created_at) or 0, _kst_ms(d.done_at))


def _chance_of(w: _WireChance) -> WithdrawChance:
    return WithdrawChance(w.currency.code, float(w.currency.withdraw_fee),
                          float(w.withdraw_limit.minimum), w.withdraw_limit.can_withdraw,
                          float(w.account.balance))


def _address_of(r: _WireAddress) -> WithdrawAddress:
    return WithdrawAddress(r.currency, r.net_type, r.withdraw_address, r.secondary_address)


# -- the same answers from JSON already parsed (an in-process venue: karb/backtest/transfers.py) --

def withdrawal_from_json(venue: str, data: Any) -> Withdrawal:
    return _withdrawal_of(venue, msgspec.convert(data, _WireTransfer))


def deposit_from_json(venue: str, data: Any) -> Deposit:
    return _deposit_of(venue, msgspec.convert(data, _WireTransfer))


def chance_from_json(data: Any) -> WithdrawChance:
    return _chance_of(msgspec.convert(data, _WireChance))


def addresses_from_json(data: Any) -> list[WithdrawAddress]:
    return [_address_of(r) for r in msgspec.convert(data, list[_WireAddress])]


def withdraw_body(currency: str, net_type: str, amount: float, address: str,
                  secondary_address: str | None, travel_rule: TravelRule | None) -> dict[str, str]:
    """``POST /v1/withdraws/coin``'s JSON body (amount as a decimal string, at most 8 places)."""
    body: dict[str, str] = {"currency": currency, "net_type": net_type,
                            "amount": f"{amount:.8f}".rstrip("0").rstrip("."),
                            "address": address}
    if secondary_address:
        body["secondary_address"] = secondary_address
    if travel_rule is not None:
        body.update({k: v for k, v in msgspec.structs.asdict(travel_rule).items() if v})
    return body


def match_withdrawal(rows: list[Withdrawal], amount: float, since_ms: int,
                     tolerance: float = 1e-8) -> Withdrawal | None:
    """The newest of ``rows`` (newest first) of ``amount`` created at or after ``since_ms``
    (allow a second of clock skew): :meth:`TransferClient.find_withdrawal`'s rule."""
    for w in rows:
        if abs(w.amount - amount) <= tolerance and w.created_ms >= since_ms - 1000:
            return w
    return None


class TransferApi(Protocol):
    """What the rebalancer's money path (karb/execution/rebalance.py) needs of one venue's
    transfers: :class:`TransferClient` over HTTP, or the backtest's in-process client."""

    @property
    def venue(self) -> str: ...

    async def close(self) -> None: ...

    async def withdraw_chance(self, currency: str, net_type: str | None = None
                              ) -> WithdrawChance: ...

    async def withdraw_addresses(self) -> list[WithdrawAddress]: ...

    async def withdraw(self, currency: str, net_type: str, amount: float, address: str,
                       secondary_address: str | None = None,
                       travel_rule: TravelRule | None = None) -> Withdrawal: ...

    async def cancel_withdrawal(self, uuid: str) -> Withdrawal: ...

    async def get_withdrawal(self, uuid: str | None = None,
                             txid: str | None = None) -> Withdrawal: ...

    async def withdrawals(self, currency: str | None = None,
                          state: WithdrawalState | None = None,
                          limit: int = 100) -> list[Withdrawal]: ...

    async def get_deposit(self, uuid: str | None = None, txid: str | None = None) -> Deposit: ...

    async def deposits(self, currency: str | None = None, state: DepositState | None = None,
                       limit: int = 100) -> list[Deposit]: ...

    async def find_withdrawal(self, currency: str, amount: float, since_ms: int,
                              tolerance: float = 1e-8) -> Withdrawal | None: ...


class TransferClient:
    """One venue's deposit and withdrawal calls; one aiohttp session, closed by ``close``."""

    def __init__(self, venue: TransferVenue, base_url: str, credentials: Credentials,
                 timeout_ms: int = 5000) -> None:
        self.venue = venue
        self.base_url = base_url.rstrip("/")
        self._creds = credentials
        self._timeout = aiohttp.ClientTimeout(total=timeout_ms / 1000)
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- calls ----------------------------------------------------------------------------------

    async def withdraw_chance(self, currency: str, net_type: str | None = None) -> WithdrawChance:
        params = [("currency", currency), ("net_type", net_type or currency)]
        return _chance_of(await self._lookup("/v1/withdraws/chance", params, _WireChance))

    async def withdraw_addresses(self) -> list[WithdrawAddress]:
        rows = await self._lookup("/v1/withdraws/coin_addresses", [], list[_WireAddress])
        return [_address_of(r) for r in rows]

    async def withdraw(self, currency: str, net_type: str, amount: float, address: str,
                       secondary_address: str | None = None,
                       travel_rule: TravelRule | None = None) -> Withdrawal:
        """Ask once. A lost answer raises VenueUnavailable: then :meth:`find_withdrawal`."""
        body = withdraw_body(currency, net_type, amount, address, secondary_address, travel_rule)
        wire = await self._send("POST", "/v1/withdraws/coin", [], body, _WireTransfer)
        return self._withdrawal(wire)

    async def cancel_withdrawal(self, uuid: str) -> Withdrawal:
        wire = await self._send("DELETE", "/v1/withdraws/coin", [("uuid", uuid)], None,
                                _WireTransfer)
        return self._withdrawal(wire)

    async def get_withdrawal(self, uuid: str | None = None, txid: str | None = None) -> Withdrawal:
        params = [("uuid", uuid)] if uuid else [("txid", txid or "")]
        return self._withdrawal(await self._lookup("/v1/withdraw", params, _WireTransfer))

    async def withdrawals(self, currency: str | None = None, state: WithdrawalState | None = None,
                          limit: int = 100) -> list[Withdrawal]:
        params = self._list_params(currency, state, limit)
        return [self._withdrawal(w) for w in await self._lookup("/v1/withdraws", params,
                                                               list[_WireTransfer])]

    async def get_deposit(self, uuid: str | None = None, txid: str | None = None) -> Deposit:
        params = [("uuid", uuid)] if uuid else [("txid", txid or "")]
        return self._deposit(await self._lookup("/v1/deposit", params, _WireTransfer))

    async def deposits(self, currency: str | None = None, state: DepositState | None = None,
                       limit: int = 100) -> list[Deposit]:
        params = self._list_params(currency, state, limit)
        return [self._deposit(d) for d in await self._lookup("/v1/deposits", params,
                                                            list[_WireTransfer])]

    async def find_withdrawal(self, currency: str, amount: float, since_ms: int,
                              tolerance: float = 1e-8) -> Withdrawal | None:
        """The withdrawal we asked for whose answer was lost: the newest one of ``currency``
        and ``amount`` created at or after ``since_ms`` (allow a second of clock skew). Upbit
        withdrawals carry no client id; the venues' lists carry no address, so never have two
        withdrawals of one currency and amount in flight at once."""
        return match_withdrawal(await self.withdrawals(currency), amount, since_ms, tolerance)

    # -- plumbing -------------------------------------------------------------------------------

    @staticmethod
    def _list_params(currency: str | None, state: str | None, limit: int) -> list[tuple[str, str]]:
        params = [("currency", currency)] if currency else []
        if state:
            params.append(("state", state))
        params += [("limit", str(min(max(limit, 1), 100))), ("order_by", "desc")]
        return params

    def _withdrawal(self, w: _WireTransfer) -> Withdrawal:
        return _withdrawal_of(self.venue, w)

    def _deposit(self, d: _WireTransfer) -> Deposit:
        return _deposit_of(self.venue, d)

    def _headers(self, hash_source: str | None) -> dict[str, str]:
        auth = bithumb_auth if self.venue == "bithumb" else upbit_auth
        return auth.authorization(self._creds, hash_source)

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def _lookup(self, path: str, params: list[tuple[str, str]], decode: type[T]) -> T:
        """A GET, retried on 5xx/429 with back-off until ``LOOKUP_DEADLINE_S``."""
        deadline = time.monotonic() + LOOKUP_DEADLINE_S
        delay = 0.2
        while True:
            try:
                return await self._send("GET", path, params, None, decode)
            except (VenueUnavailable, RateLimited):
                if time.monotonic() + delay > deadline:
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def _send(self, method: str, path: str, params: list[tuple[str, str]],
                       body: dict[str, str] | None, decode: type[T]) -> T:
        url = self.base_url + path + (f"?{urlencode(params)}" if params else "")
        if body is not None:
            headers = self._headers(upbit_auth.body_hash_source(body))
            data: bytes | None = msgspec.json.encode(body)
            headers["Content-Type"] = "application/json; charset=utf-8"
        else:
            headers = self._headers(upbit_auth.query_hash_source(params) or None)
            data = None
        try:
            async with self.session.request(method, url, data=data, headers=headers) as resp:
                raw, status = await resp.read(), resp.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise VenueUnavailable(self.venue, type(exc).__name__, str(exc) or "no answer") from None
        if status >= 400 or raw.startswith(b'{"error"'):
            raise self._error(status, raw)
        try:
            return msgspec.json.decode(raw, type=decode)
        except msgspec.DecodeError as exc:
            raise VenueUnavailable(self.venue, "malformed_response", f"{path}: {exc}", status) from None

    def _error(self, status: int, raw: bytes) -> VenueError:
        try:
            err = msgspec.json.decode(raw).get("error", {})
            return classify(self.venue, status, str(err.get("name", f"http_{status}")),
                            str(err.get("message", "")))
        except (msgspec.DecodeError, AttributeError):
            text = raw[:200].decode(errors="replace")
            if status >= 500:
                return VenueUnavailable(self.venue, f"http_{status}", text, status)
            return classify(self.venue, status, f"http_{status}", text)
