"""The HTTP side of :mod:`karb.sim.transfers`: both venues' withdrawal and deposit endpoints in
Upbit's shapes (Bithumb's current API uses the same paths and fields), and their ``/_sim/``
faults and inspection."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

from aiohttp import web
from multidict import MultiMapping

from karb.sim.auth import hash_source_from_body
from karb.sim.engine import Account, VenueError
from karb.sim.transfers import Deposit, TransferNetwork, Withdrawal
from karb.sim.venue import VenueState, json_body, kst_iso, num, ok_json, request_params


def withdrawal_json(w: Withdrawal) -> dict[str, Any]:
    return {"type": "withdraw", "uuid": w.uuid, "currency": w.currency, "net_type": w.net_type,
            "txid": w.txid, "state": w.state, "created_at": kst_iso(w.created_ns),
            "done_at": kst_iso(w.done_ns) if w.done_ns else None, "amount": num(w.amount),
            "fee": num(w.fee), "krw_amount": num(round(w.krw_amount)),
            "transaction_type": "default", "is_cancelable": w.state == "WAITING"}


def deposit_json(d: Deposit) -> dict[str, Any]:
    return {"type": "deposit", "uuid": d.uuid, "currency": d.currency, "net_type": d.net_type,
            "txid": d.txid, "state": d.state, "created_at": kst_iso(d.created_ns),
            "done_at": kst_iso(d.done_ns) if d.done_ns else None, "amount": num(d.amount),
            "fee": "0", "transaction_type": "default"}


# -- the answers, apart from HTTP (the backtest's in-process client calls these too) ----------

def chance_json(net: TransferNetwork, venue: str, account: Account, currency: str,
                net_type: str | None) -> dict[str, Any]:
    """``GET /v1/withdraws/chance``: fee, minimum, the account's balance of ``currency``."""
    currency = currency.upper()
    coin = net.coin(venue, currency)
    expected = net.net_type(venue, currency)
    if (expected if net_type is None else net_type) != expected:
        raise VenueError(400, "invalid_parameter", f"net_type of {currency} is {expected}")
    b = account.balance(currency)
    return {
        "member_level": {"security_level": 4, "fee_level": 0, "email_verified": True,
                         "identity_auth_verified": True, "bank_account_verified": True,
                         "two_factor_auth_verified": True, "locked": False,
                         "wallet_locked": False},
        "currency": {"code": currency, "withdraw_fee": num(coin.fee), "is_coin": True,
                     "wallet_state": "working", "wallet_support": ["deposit", "withdraw"]},
        "account": {"currency": currency, "balance": num(b.free), "locked": num(b.locked),
                    "avg_buy_price": num(b.avg_buy_price), "avg_buy_price_modified": False,
                    "unit_currency": "KRW"},
        "withdraw_limit": {"currency": currency, "minimum": num(coin.minimum),
                           "onetime": None, "daily": None, "remaining_daily": None,
                           "remaining_daily_krw": "1000000000", "fixed": 8,
                           "can_withdraw": True}}


def addresses_json(net: TransferNetwork, venue: str, account: Account) -> list[dict[str, Any]]:
    """``GET /v1/withdraws/coin_addresses``: the account's allow-list on ``venue``."""
    return [{"currency": c, "net_type": net.net_type(venue, c), "network_name": c,
             "withdraw_address": address, "secondary_address": None}
            for c, address in net.allow_list(venue, account)]


T = TypeVar("T", Withdrawal, Deposit)


def _own(items: Iterable[T], venue: str, account: Account, uuid_: str | None,
         txid: str | None) -> T | None:
    """The account's withdrawal or deposit on ``venue`` by uuid (or, without one, by txid)."""
    for x in items:
        if x.venue == venue and x.account == account.access_key and (
                (uuid_ and x.uuid == uuid_) or (not uuid_ and txid and x.txid == txid)):
            return x
    return None


def _mine(items: Iterable[T], venue: str, account: Account, currency: str | None,
          state: str | None, desc: bool, limit: int) -> list[T]:
    """The account's withdrawals or deposits on ``venue``, filtered, ordered and cut."""
    rows = [x for x in items if x.venue == venue and x.account == account.access_key
            and (not currency or x.currency == currency.upper())
            and (not state or x.state == state.upper())]
    rows.sort(key=lambda x: x.created_ns, reverse=desc)
    return rows[:limit]


def own_withdrawal(net: TransferNetwork, venue: str, account: Account, uuid_: str | None,
                   txid: str | None) -> Withdrawal:
    w = _own(net.withdrawals.values(), venue, account, uuid_, txid)
    if w is None:
        raise VenueError(404, "withdraw_not_found", "withdrawal not found (sim)")
    return w


def own_deposit(net: TransferNetwork, venue: str, account: Account, uuid_: str | None,
                txid: str | None) -> Deposit:
    d = _own(net.deposits.values(), venue, account, uuid_, txid)
    if d is None:
        raise VenueError(404, "deposit_not_found", "deposit not found (sim)")
    return d


def withdrawal_rows(net: TransferNetwork, venue: str, account: Account, currency: str | None,
                    state: str | None, desc: bool, limit: int) -> list[dict[str, Any]]:
    """``GET /v1/withdraws``: the account's withdrawals on ``venue``, filtered and ordered."""
    return [withdrawal_json(w) for w in _mine(net.withdrawals.values(), venue, account,
                                              currency, state, desc, limit)]


def deposit_rows(net: TransferNetwork, venue: str, account: Account, currency: str | None,
                 state: str | None, desc: bool, limit: int) -> list[dict[str, Any]]:
    """``GET /v1/deposits``: the account's deposits on ``venue``, filtered and ordered."""
    return [deposit_json(d) for d in _mine(net.deposits.values(), venue, account, currency,
                                           state, desc, limit)]


def add_routes(app: web.Application, state: VenueState, net: TransferNetwork) -> None:
    venue = state.name

    async def auth(request: web.Request) -> tuple[Account, MultiMapping[str]]:
        params, _, hash_source = await request_params(request, venue)
        return state.authenticate(request, hash_source), params

    def limit_of(q: MultiMapping[str]) -> int:
        try:
            return min(max(int(q.get("limit", "100")), 1), 100)
        except ValueError:
            raise VenueError(400, "invalid_parameter", "limit must be an integer") from None

    async def chance(request: web.Request) -> web.Response:
        account, q = await auth(request)
        return ok_json(chance_json(net, venue, account, q.get("currency", ""), q.get("net_type")))

    async def coin_addresses(request: web.Request) -> web.Response:
        account, _ = await auth(request)
        return ok_json(addresses_json(net, venue, account))

    async def withdraw(request: web.Request) -> web.Response:
        body = await json_body(request, venue)
        account = state.authenticate(request, hash_source_from_body(body) or None)
        return ok_json(withdrawal_json(net.request(state, account, body)), status=201)

    async def get_withdrawal(request: web.Request) -> web.Response:
        account, q = await auth(request)
        return ok_json(withdrawal_json(own_withdrawal(net, venue, account, q.get("uuid"),
                                                      q.get("txid"))))

    async def cancel_withdrawal(request: web.Request) -> web.Response:
        account, q = await auth(request)
        return ok_json(withdrawal_json(net.cancel(own_withdrawal(net, venue, account,
                                                                 q.get("uuid"), q.get("txid")))))

    async def list_withdrawals(request: web.Request) -> web.Response:
        account, q = await auth(request)
        return ok_json(withdrawal_rows(net, venue, account, q.get("currency"), q.get("state"),
                                       q.get("order_by", "desc") == "desc", limit_of(q)))

    async def get_deposit(request: web.Request) -> web.Response:
        account, q = await auth(request)
        return ok_json(deposit_json(own_deposit(net, venue, account, q.get("uuid"),
                                                q.get("txid"))))

    async def list_deposits(request: web.Request) -> web.Response:
        account, q = await auth(request)
        return ok_json(deposit_rows(net, venue, account, q.get("currency"), q.get("state"),
                                    q.get("order_by", "desc") == "desc", limit_of(q)))

    r = app.router
    r.add_get("/v1/withdraws/chance", chance)
    r.add_get("/v1/withdraws/coin_addresses", coin_addresses)
    r.add_post("/v1/withdraws/coin", withdraw)
    r.add_delete("/v1/withdraws/coin", cancel_withdrawal)
    r.add_get("/v1/withdraw", get_withdrawal)
    r.add_get("/v1/withdraws", list_withdrawals)
    r.add_get("/v1/deposit", get_deposit)
    r.add_get("/v1/deposits", list_deposits)
    if state.sim.faults_enabled:
        add_fault_routes(app, state, net)


def add_fault_routes(app: web.Application, state: VenueState, net: TransferNetwork) -> None:
    async def body(request: web.Request) -> dict[str, Any]:
        data = await request.json() if request.can_read_body else {}
        if not isinstance(data, dict):
            raise web.HTTPBadRequest(text="body must be a JSON object")
        return data

    async def withdraw_next(request: web.Request) -> web.Response:
        data = await body(request)
        action = data.get("action")
        if action not in ("stuck", "reject", "fail"):
            raise web.HTTPBadRequest(text="action must be stuck, reject or fail")
        net.withdraw_faults.extend([action] * int(data.get("count", 1)))
        net.unstick.clear()
        return ok_json({"queued": len(net.withdraw_faults)})

    async def deposit_delay(request: web.Request) -> web.Response:
        data = await body(request)
        net.deposit_delays_ms.extend([int(data.get("ms", 0))] * int(data.get("count", 1)))
        return ok_json({"queued": len(net.deposit_delays_ms)})

    async def transfers(request: web.Request) -> web.Response:
        return ok_json({"withdrawals": [{"venue": w.venue, "account": w.account,
                                         **withdrawal_json(w)} for w in net.withdrawals.values()],
                        "deposits": [{"venue": d.venue, "account": d.account, **deposit_json(d)}
                                     for d in net.deposits.values()]})

    app.router.add_post("/_sim/faults/withdraw_next", withdraw_next)
    app.router.add_post("/_sim/faults/deposit_delay", deposit_delay)
    app.router.add_get("/_sim/transfers", transfers)


def clear_faults(net: TransferNetwork) -> None:
    """``/_sim/faults/clear``: queued transfer faults dropped, stuck withdrawals go on."""
    net.withdraw_faults.clear()
    net.deposit_delays_ms.clear()
    net.unstick.set()
