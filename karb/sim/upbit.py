"""Upbit's API on loopback: REST ``/v1`` and WebSockets ``/websocket/v1`` (+ ``/private``).

Quotation amounts are JSON numbers; exchange (private) amounts are strings; ``created_at`` is
KST. Errors are ``{"error": {"name", "message"}}`` with the venue's HTTP status (quotation errors
use numeric names).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from karb.sim import faults, late, wsfeed
from karb.sim.auth import hash_source_from_body, hash_source_from_query
from karb.sim.engine import Account, Order, VenueError
from karb.sim.market import KOREAN_NAMES
from karb.sim.venue import (VenueState, error_json, json_body, kst_iso, num, ok_json,
                            parse_float, venue_middleware)
from karb.exchanges.ticks import krw_tick


def order_json(order: Order, with_trades: bool = False, state: str | None = None) -> dict[str, Any]:
    """An order in Upbit's fields (Bithumb's /v1 uses the same and adds a few)."""
    body: dict[str, Any] = {
        "uuid": order.id, "side": order.side, "ord_type": order.ord_type,
        "price": num(order.price), "state": state or order.state, "market": order.market,
        "created_at": kst_iso(order.created_ns), "volume": num(order.volume),
        "remaining_volume": num(order.remaining_volume) if order.volume is not None else None,
        "reserved_fee": num(order.reserved_fee),
        "remaining_fee": num(max(order.reserved_fee - order.paid_fee, 0.0) if order.state == "wait" else 0.0),
        "paid_fee": num(order.paid_fee), "locked": num(order.locked),
        "executed_volume": num(order.executed_volume), "executed_funds": num(order.executed_funds),
        "trades_count": len(order.fills), "prevented_volume": "0", "prevented_locked": "0",
    }
    if order.time_in_force:
        body["time_in_force"] = order.time_in_force
    if order.client_id is not None:
        body["identifier"] = order.client_id
    if with_trades:
        body["trades"] = [{"market": order.market, "uuid": f.trade_id, "price": num(f.price),
                           "volume": num(f.volume), "funds": num(f.funds), "trend": None,
                           "created_at": kst_iso(f.ts_ns), "side": order.side}
                          for f in order.fills]
    return body


def accounts_json(account: Account) -> list[dict[str, Any]]:
    return [{"currency": cur, "balance": num(b.free), "locked": num(b.locked),
             "avg_buy_price": num(b.avg_buy_price), "avg_buy_price_modified": False,
             "unit_currency": "KRW"}
            for cur, b in account.balances.items() if b.free or b.locked or cur == "KRW"]


def chance_json(state: VenueState, account: Account, market: str) -> dict[str, Any]:
    base, quote = market.split("-", 1)[1], market.split("-", 1)[0]
    fee = num(state.exchange.fee_rate)
    tick = num(krw_tick(state.model.book(state.name, market).best_bid() or 1))

    def acct(cur: str) -> dict[str, Any]:
        b = account.balance(cur)
        return {"currency": cur, "balance": num(b.free), "locked": num(b.locked),
                "avg_buy_price": num(b.avg_buy_price), "avg_buy_price_modified": False,
                "unit_currency": "KRW"}

    minimum = num(state.exchange.min_total)
    return {"bid_fee": fee, "ask_fee": fee, "maker_bid_fee": fee, "maker_ask_fee": fee,
            "market": {"id": market, "name": f"{base}/{quote}", "order_types": ["limit"],
                       "order_sides": ["ask", "bid"], "bid_types": ["limit", "price"],
                       "ask_types": ["limit", "market"],
                       "bid": {"currency": quote, "price_unit": tick, "min_total": minimum},
                       "ask": {"currency": base, "price_unit": tick, "min_total": minimum},
                       "max_total": "1000000000", "state": "active"},
            "bid_account": acct(quote), "ask_account": acct(base)}


def markets_param(state: VenueState, request: web.Request) -> list[str]:
    raw = request.query.get("markets", "")
    markets = [m.strip() for m in raw.split(",") if m.strip()]
    if not markets:
        raise VenueError(400, 400, "markets is required")  # type: ignore[arg-type]
    if any(m not in state.model.markets for m in markets):
        raise VenueError(404, 404, "Code not found")  # type: ignore[arg-type]
    return markets


def orderbook_rows(state: VenueState, markets: list[str], count: int) -> list[dict[str, Any]]:
    rows = []
    for market in markets:
        frame = wsfeed.orderbook_frame(state, market, count, "REST", 0, rest=True)
        rows.append({"market": market, "timestamp": state.now_ms() // 100 * 100,
                     "total_ask_size": frame["total_ask_size"], "total_bid_size": frame["total_bid_size"],
                     "orderbook_units": frame["orderbook_units"], "level": 0})
    return rows


def place_params(state: VenueState, body: dict[str, Any], type_key: str = "ord_type",
                 id_key: str = "identifier") -> dict[str, Any]:
    market = body.get("market")
    if not isinstance(market, str):
        raise VenueError(400, "validation_error" if state.name == "upbit" else "invalid_parameter",
                         "market is missing")
    client_id = body.get(id_key)
    return {"market": market, "side": body.get("side"), "ord_type": body.get(type_key),
            "price": parse_float(body, "price", state.name),
            "volume": parse_float(body, "volume", state.name),
            "time_in_force": body.get("time_in_force"),
            "client_id": str(client_id) if client_id is not None else None}


def build_app(state: VenueState) -> web.Application:
    app = web.Application(middlewares=[venue_middleware(state)])
    ex = state.exchange

    def auth(request: web.Request) -> Account:
        return state.authenticate(request, hash_source_from_query(request.query_string) or None)

    async def market_all(request: web.Request) -> web.Response:
        details = request.query.get("is_details") == "true"
        rows = []
        for m in state.model.markets:
            base = m.split("-", 1)[1]
            row: dict[str, Any] = {"market": m, "korean_name": KOREAN_NAMES.get(base, base),
                                   "english_name": base.title()}
            if details:
                row["market_event"] = {"warning": False, "caution": {
                    "PRICE_FLUCTUATIONS": False, "TRADING_VOLUME_SOARING": False,
                    "DEPOSIT_AMOUNT_SOARING": False, "GLOBAL_PRICE_DIFFERENCES": False,
                    "CONCENTRATION_OF_SMALL_ACCOUNTS": False}}
            rows.append(row)
        return ok_json(rows)

    async def ticker(request: web.Request) -> web.Response:
        return ok_json([wsfeed.ticker_fields(state, m) for m in markets_param(state, request)])

    async def ticker_all(request: web.Request) -> web.Response:
        quotes = request.query.get("quote_currencies", "KRW").split(",")
        return ok_json([wsfeed.ticker_fields(state, m) for m in state.model.markets
                        if m.split("-", 1)[0] in quotes])

    async def orderbook(request: web.Request) -> web.Response:
        try:
            count = int(request.query.get("count", "30"))
        except ValueError:
            count = 0
        if not 1 <= count <= 30:
            return error_json(400, 400, "count must be between 1 and 30")
        return ok_json(orderbook_rows(state, markets_param(state, request), count))

    async def instruments(request: web.Request) -> web.Response:
        return ok_json([{"market": m, "quote_currency": "KRW",
                         "tick_size": num(krw_tick(state.model.book(state.name, m).best_bid())),
                         "supported_levels": ["0"]} for m in markets_param(state, request)])

    async def accounts(request: web.Request) -> web.Response:
        return ok_json(accounts_json(auth(request)))

    async def chance(request: web.Request) -> web.Response:
        account = auth(request)
        market = request.query.get("market", "")
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

    def find(request: web.Request, account: Account) -> Order:
        uuid_, ident = request.query.get("uuid"), request.query.get("identifier")
        if not uuid_ and not ident:
            raise VenueError(400, "validation_error", "uuid or identifier is required")
        return ex.find(account, order_id=uuid_, client_id=None if uuid_ else ident)

    async def get_order(request: web.Request) -> web.Response:
        return ok_json(order_json(find(request, auth(request)), with_trades=True))

    async def delete_order(request: web.Request) -> web.Response:
        account = auth(request)
        order = late.cancel(state, account, find(request, account))
        return ok_json(order_json(order, state="wait"))  # as accepted; final state comes later

    def states_of(request: web.Request, default: tuple[str, ...]) -> tuple[str, ...]:
        many = request.query.getall("states[]", [])
        one = request.query.get("state")
        if many and one:
            raise VenueError(400, "validation_error", "state and states[] cannot be combined")
        return tuple(many) or ((one,) if one else default)

    def listing(request: web.Request, default: tuple[str, ...], cap: int) -> list[dict[str, Any]]:
        account = auth(request)
        wanted = states_of(request, default)
        market = request.query.get("market")
        orders = [o for o in ex.account_orders(account, market) if o.state in wanted]
        orders.sort(key=lambda o: o.created_ns, reverse=request.query.get("order_by", "desc") == "desc")
        limit = min(int(request.query.get("limit", str(cap))), cap)
        page = max(int(request.query.get("page", "1")), 1)
        return [order_json(o) for o in orders[(page - 1) * limit: page * limit]]

    async def orders_open(request: web.Request) -> web.Response:
        return ok_json(listing(request, ("wait", "watch"), 100))

    async def orders_closed(request: web.Request) -> web.Response:
        return ok_json(listing(request, ("done", "cancel"), 1000))

    async def orders_uuids(request: web.Request) -> web.Response:
        account = auth(request)
        found = []
        for uuid_ in request.query.getall("uuids[]", []):
            try:
                found.append(ex.find(account, order_id=uuid_))
            except VenueError:
                continue
        for ident in request.query.getall("identifiers[]", []):
            try:
                found.append(ex.find(account, client_id=ident))
            except VenueError:
                continue
        return ok_json([order_json(o) for o in found])

    async def websocket(request: web.Request) -> web.StreamResponse:
        return await wsfeed.serve(request, state, "upbit", private=False)

    async def websocket_private(request: web.Request) -> web.StreamResponse:
        return await wsfeed.serve(request, state, "upbit", private=True)

    r = app.router
    r.add_get("/v1/market/all", market_all)
    r.add_get("/v1/ticker", ticker)
    r.add_get("/v1/ticker/all", ticker_all)
    r.add_get("/v1/orderbook", orderbook)
    r.add_get("/v1/orderbook/instruments", instruments)
    r.add_get("/v1/accounts", accounts)
    r.add_get("/v1/orders/chance", chance)
    r.add_post("/v1/orders", post_order)
    r.add_get("/v1/order", get_order)
    r.add_delete("/v1/order", delete_order)
    r.add_get("/v1/orders/open", orders_open)
    r.add_get("/v1/orders/closed", orders_closed)
    r.add_get("/v1/orders/uuids", orders_uuids)
    r.add_get("/websocket/v1", websocket)
    r.add_get("/websocket/v1/private", websocket_private)
    faults.add_routes(app, state)
    ex.listeners.append(lambda order, fill: wsfeed.publish_order_event(state, order, fill))
    return app
