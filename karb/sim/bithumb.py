"""Bithumb's current API on loopback: REST ``/v1`` and ``/v2`` with JWT, WebSocket ``/websocket/v1``.

It mirrors Upbit's shapes with Bithumb's differences: ``isDetails`` (camelCase), one market's
book has 30 units but several markets 15 each, a public error can come as HTTP 200 with an
``error`` body, order ids look like ``C0101000000001799231``, ``/v2/orders`` speaks
``order_type`` / ``client_order_id`` / ``order_id``, and the JWT needs a ``timestamp`` claim.
The legacy v1.2.0 API is served by the same app (``karb.sim.bithumb_legacy``).
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from karb.sim import bithumb_legacy, faults, frames, late, transfer_api, wsfeed
from karb.sim.auth import hash_source_from_body, hash_source_from_query
from karb.sim.engine import Account, Order, VenueError
from karb.sim.market import KOREAN_NAMES
from karb.sim.v1render import (
    accounts_json,
    chance_json,
    order_json,
    orderbook_rows,
    place_params,
)
from karb.sim.venue import (
    VenueState,
    error_json,
    json_body,
    kst_iso,
    ok_json,
    venue_middleware,
)

CLIENT_ORDER_ID = re.compile(r"^[A-Za-z0-9_-]{1,36}$")


def bithumb_order_json(order: Order, with_trades: bool = False) -> dict[str, Any]:
    body = order_json(order, with_trades)
    body.pop("identifier", None)
    body.pop("prevented_volume", None)
    body.pop("prevented_locked", None)
    body["client_order_id"] = order.client_id
    body["stp_type"] = None
    return body


def build_app(state: VenueState) -> web.Application:
    app = web.Application(middlewares=[venue_middleware(state)])
    ex = state.exchange

    def auth(request: web.Request) -> Account:
        return state.authenticate(request, hash_source_from_query(request.query_string) or None)

    def markets_or_error(request: web.Request) -> list[str] | web.Response:
        raw = request.query.get("markets", "")
        markets = [m.strip() for m in raw.split(",") if m.strip()]
        if not markets or any(m not in state.model.markets for m in markets):
            # Bithumb answers an unknown code with HTTP 200 and an error body: check the body.
            return ok_json({"error": {"name": 404, "message": "Code not found"}})
        return markets

    async def market_all(request: web.Request) -> web.Response:
        details = request.query.get("isDetails") == "true"
        rows = []
        for m in state.model.markets:
            base = m.split("-", 1)[1]
            row: dict[str, Any] = {"market": m, "korean_name": KOREAN_NAMES.get(base, base),
                                   "english_name": base.title()}
            if details:
                row["market_warning"] = "NONE"
            rows.append(row)
        return ok_json(rows)

    async def ticker(request: web.Request) -> web.Response:
        markets = markets_or_error(request)
        if isinstance(markets, web.Response):
            return markets
        return ok_json([frames.ticker_fields(state, m) for m in markets])

    async def orderbook(request: web.Request) -> web.Response:
        markets = markets_or_error(request)
        if isinstance(markets, web.Response):
            return markets
        return ok_json(orderbook_rows(state, markets, 30 if len(markets) == 1 else 15))

    async def accounts(request: web.Request) -> web.Response:
        return ok_json(accounts_json(auth(request)))

    async def chance(request: web.Request) -> web.Response:
        account = auth(request)
        market = request.query.get("market", "")
        if market not in state.model.markets:
            raise VenueError(400, "invalid_parameter", f"market {market} does not exist")
        return ok_json(chance_json(state, account, market))

    async def post_order_v1(request: web.Request) -> web.Response:
        body = await json_body(request, state.name)
        account = state.authenticate(request, hash_source_from_body(body) or None)
        p = place_params(state, body, "ord_type", "client_order_id")

        def execute(id_reserved: bool) -> web.Response:
            order = ex.place(account, p["market"], p["side"], p["ord_type"], p["price"],
                             p["volume"], p["time_in_force"], p["client_id"], id_reserved)
            return ok_json(bithumb_order_json(order), status=201)

        return await late.place(state, account, p["client_id"], execute)

    async def post_order_v2(request: web.Request) -> web.Response:
        body = await json_body(request, state.name)
        account = state.authenticate(request, hash_source_from_body(body) or None)
        p = place_params(state, body, "order_type", "client_order_id")
        if p["client_id"] is not None and not CLIENT_ORDER_ID.match(p["client_id"]):
            raise VenueError(400, "invalid_parameter",
                             "client_order_id must be 1-36 characters of [A-Za-z0-9_-]")

        def execute(id_reserved: bool) -> web.Response:
            order = ex.place(account, p["market"], p["side"], p["ord_type"], p["price"],
                             p["volume"], p["time_in_force"], p["client_id"], id_reserved)
            return ok_json({"order_id": order.id, "client_order_id": order.client_id,
                            "market": order.market, "side": order.side,
                            "order_type": order.ord_type,
                            "created_at": kst_iso(order.created_ns), "stp_type": None}, status=201)

        return await late.place(state, account, p["client_id"], execute)

    async def get_order(request: web.Request) -> web.Response:
        account = auth(request)
        uuid_, coid = request.query.get("uuid"), request.query.get("client_order_id")
        if not uuid_ and not coid:
            raise VenueError(400, "invalid_parameter", "uuid or client_order_id is required")
        late.check_ready(state)
        order = ex.find(account, order_id=uuid_, client_id=None if uuid_ else coid)
        return ok_json(bithumb_order_json(order, with_trades=True))

    async def delete_order_v1(request: web.Request) -> web.Response:
        account = auth(request)
        uuid_ = request.query.get("uuid")
        if not uuid_:
            raise VenueError(400, "invalid_parameter", "uuid is required (client ids: DELETE /v2/order)")
        late.check_ready(state)
        order = late.cancel(state, account, ex.find(account, order_id=uuid_))
        body = bithumb_order_json(order)
        body["state"] = "wait"
        return ok_json(body)

    async def delete_order_v2(request: web.Request) -> web.Response:
        account = auth(request)
        oid, coid = request.query.get("order_id"), request.query.get("client_order_id")
        if not oid and not coid:
            raise VenueError(400, "invalid_parameter", "order_id or client_order_id is required")
        late.check_ready(state)
        order = late.cancel(state, account,
                            ex.find(account, order_id=oid, client_id=None if oid else coid))
        return ok_json({"order_id": order.id, "client_order_id": order.client_id,
                        "created_at": kst_iso(order.created_ns)})

    async def list_orders(request: web.Request) -> web.Response:
        account = auth(request)
        q = request.query
        many, one = q.getall("states[]", []), q.get("state")
        wanted = tuple(many) or ((one,) if one else ("wait",))
        if "watch" in wanted and len(set(wanted)) > 1:
            raise VenueError(400, "invalid_parameter", "watch cannot be combined with other states")
        uuids, coids = set(q.getall("uuids[]", [])), set(q.getall("client_order_ids[]", []))
        orders = [o for o in ex.account_orders(account, q.get("market")) if o.state in wanted
                  and (not uuids or o.id in uuids) and (not coids or o.client_id in coids)]
        orders.sort(key=lambda o: o.created_ns, reverse=q.get("order_by", "desc") == "desc")
        limit = min(int(q.get("limit", "100")), 100)
        page = max(int(q.get("page", "1")), 1)
        return ok_json([bithumb_order_json(o) for o in orders[(page - 1) * limit: page * limit]])

    async def websocket(request: web.Request) -> web.StreamResponse:
        return await wsfeed.serve(request, state, "bithumb", private=False)

    async def websocket_private(request: web.Request) -> web.StreamResponse:
        return await wsfeed.serve(request, state, "bithumb", private=True)

    async def not_found(request: web.Request) -> web.Response:
        return error_json(404, "not_found", f"no such endpoint {request.path}")

    r = app.router
    r.add_get("/v1/market/all", market_all)
    r.add_get("/v1/ticker", ticker)
    r.add_get("/v1/orderbook", orderbook)
    r.add_get("/v1/accounts", accounts)
    r.add_get("/v1/orders/chance", chance)
    r.add_post("/v1/orders", post_order_v1)
    r.add_post("/v2/orders", post_order_v2)
    r.add_get("/v1/order", get_order)
    r.add_delete("/v1/order", delete_order_v1)
    r.add_delete("/v2/order", delete_order_v2)
    r.add_get("/v1/orders", list_orders)
    r.add_get("/websocket/v1", websocket)
    # Private streams only on v2 (myOrder v2 fields); /websocket/v1/private ended 2026-10.
    r.add_get("/websocket/v2/private", websocket_private)
    bithumb_legacy.add_routes(app, state)
    if state.transfers is not None:
        transfer_api.add_routes(app, state, state.transfers)
    faults.add_routes(app, state)
    r.add_route("*", "/v2/{tail:.*}", not_found)
    ex.listeners.append(lambda order, fill: wsfeed.publish_order_event(state, order, fill))
    return app
