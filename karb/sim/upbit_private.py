"""Upbit's exchange (private) REST on loopback: accounts, order chance, orders, lookups, lists,
cancels and ``cancel_and_new``.

GET/DELETE parameters come from the query string or, with no query, from a form or JSON body
(pyupbit sends them so; :func:`karb.sim.venue.request_params`), hashed as received.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from multidict import MultiDict, MultiMapping

from karb.sim import late
from karb.sim.auth import hash_source_from_body
from karb.sim.engine import Account, Order, VenueError
from karb.sim.v1render import accounts_json, chance_json, order_json, place_params
from karb.sim.venue import VenueState, json_body, ok_json, request_params

Params = MultiMapping[str]


def add_routes(app: web.Application, state: VenueState) -> None:
    ex = state.exchange

    async def auth(request: web.Request) -> tuple[Account, Params]:
        params, _, hash_source = await request_params(request, state.name)
        return state.authenticate(request, hash_source), params

    async def accounts(request: web.Request) -> web.Response:
        account, _ = await auth(request)
        return ok_json(accounts_json(account))

    async def chance(request: web.Request) -> web.Response:
        account, q = await auth(request)
        market = q.get("market", "")
        if market not in state.model.markets:
            raise VenueError(404, "market_does_not_exist", f"market {market} does not exist")
        return ok_json(chance_json(state, account, market))

    async def post_order(request: web.Request) -> web.Response:
        body = await json_body(request, state.name)
        account = state.authenticate(request, hash_source_from_body(body) or None)
        p = place_params(state, body)

        def execute(id_reserved: bool) -> web.Response:
            order = ex.place(account, p["market"], p["side"], p["ord_type"], p["price"],
                             p["volume"], p["time_in_force"], p["client_id"], id_reserved)
            return ok_json(order_json(order), status=201)

        return await late.place(state, account, p["client_id"], execute)

    def find(q: Params, account: Account, uuid_key: str = "uuid",
             id_key: str = "identifier") -> Order:
        uuid_, ident = q.get(uuid_key), q.get(id_key)
        if not uuid_ and not ident:
            raise VenueError(400, "validation_error", f"{uuid_key} or {id_key} is required")
        return ex.find(account, order_id=uuid_, client_id=None if uuid_ else ident)

    async def get_order(request: web.Request) -> web.Response:
        account, q = await auth(request)
        return ok_json(order_json(find(q, account), with_trades=True))

    async def delete_order(request: web.Request) -> web.Response:
        account, q = await auth(request)
        order = late.cancel(state, account, find(q, account))
        return ok_json(order_json(order, state="wait"))  # as accepted; final state comes later

    def states_of(q: Params, default: tuple[str, ...]) -> tuple[str, ...]:
        many = q.getall("states[]", [])
        one = q.get("state")
        if many and one:
            raise VenueError(400, "validation_error", "state and states[] cannot be combined")
        return tuple(many) or ((one,) if one else default)

    async def listing(request: web.Request, default: tuple[str, ...], cap: int) -> list[dict[str, Any]]:
        account, q = await auth(request)
        wanted = states_of(q, default)
        orders = [o for o in ex.account_orders(account, q.get("market")) if o.state in wanted]
        orders.sort(key=lambda o: o.created_ns, reverse=q.get("order_by", "desc") == "desc")
        try:
            limit, page = min(int(q.get("limit", str(cap))), cap), max(int(q.get("page", "1")), 1)
        except ValueError:
            raise VenueError(400, "validation_error", "limit and page must be integers") from None
        return [order_json(o) for o in orders[(page - 1) * limit: page * limit]]

    async def orders_open(request: web.Request) -> web.Response:
        return ok_json(await listing(request, ("wait", "watch"), 100))

    async def orders_closed(request: web.Request) -> web.Response:
        return ok_json(await listing(request, ("done", "cancel"), 1000))

    async def orders_legacy(request: web.Request) -> web.Response:
        # The pre-2024-06 list (``GET /v1/orders?market&state&page&limit``), superseded by
        # /open and /closed but still what pyupbit's get_order(ticker) calls; default wait.
        return ok_json(await listing(request, ("wait",), 100))

    async def orders_uuids(request: web.Request) -> web.Response:
        account, q = await auth(request)
        found = []
        for uuid_ in q.getall("uuids[]", []):
            try:
                found.append(ex.find(account, order_id=uuid_))
            except VenueError:
                continue
        for ident in q.getall("identifiers[]", []):
            try:
                found.append(ex.find(account, client_id=ident))
            except VenueError:
                continue
        return ok_json([order_json(o) for o in found])

    async def cancel_and_new(request: web.Request) -> web.Response:
        """``POST /v1/orders/cancel_and_new`` (2025-02-05, JSON only, the order group): cancel
        ``prev_order_uuid|prev_order_identifier`` and place ``new_*`` in one call. If the old
        order is already done (filled before the cancel), no new order is placed and the cancel
        is refused as usual. ``new_volume: "remain_only"`` reuses the old remaining volume."""
        body = await json_body(request, state.name)
        account = state.authenticate(request, hash_source_from_body(body) or None)
        old = find(_flat(body), account, "prev_order_uuid", "prev_order_identifier")
        remain = old.remaining_volume
        late.cancel(state, account, old)
        new = {"market": old.market, "side": old.side, "ord_type": body.get("new_ord_type"),
               "price": body.get("new_price"), "identifier": body.get("new_identifier"),
               "time_in_force": body.get("new_time_in_force"),
               "volume": (f"{remain:.8f}" if body.get("new_volume") == "remain_only"
                          else body.get("new_volume"))}
        p = place_params(state, new)
        placed = ex.place(account, p["market"], p["side"], p["ord_type"], p["price"],
                          p["volume"], p["time_in_force"], p["client_id"])
        reply = order_json(old, state="wait")
        reply.update({"new_order_uuid": placed.id, "new_order_identifier": placed.client_id})
        return ok_json(reply, status=201)

    r = app.router
    r.add_get("/v1/accounts", accounts)
    r.add_get("/v1/orders/chance", chance)
    r.add_post("/v1/orders", post_order)
    r.add_post("/v1/orders/cancel_and_new", cancel_and_new)
    r.add_get("/v1/order", get_order)
    r.add_delete("/v1/order", delete_order)
    r.add_get("/v1/orders", orders_legacy)
    r.add_get("/v1/orders/open", orders_open)
    r.add_get("/v1/orders/closed", orders_closed)
    r.add_get("/v1/orders/uuids", orders_uuids)


def _flat(body: dict[str, Any]) -> Params:
    return MultiDict((k, str(v)) for k, v in body.items() if v is not None and not isinstance(v, list))
