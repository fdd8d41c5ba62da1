"""``/_sim/``: fault injection and inspection, served beside each venue's API (never part of it).

    POST /_sim/faults/ws_drop                  close every WebSocket now
    POST /_sim/faults/ws_stall   {"on": bool}  keep WebSockets open but silent
    POST /_sim/faults/latency    {"ms": n}     add latency to every REST request
    POST /_sim/faults/fail_next  {"count": n, "status": 500|503|429}
    POST /_sim/faults/lose_response {"count": n}  carry out the next n requests, answer 504
    POST /_sim/faults/order_next {"action": "reject"|"partial", "fraction": 0.5, "count": 1}
    POST /_sim/faults/malformed_frame {"count": n}  the next n frames per socket are garbage
    POST /_sim/faults/clock_skew {"ms": n}     shift this venue's clock
    POST /_sim/faults/delay_execution {"ms": n, "count": k, "answer": "504"|"hold"}
        the next k order POSTs (Upbit /v1/orders, Bithumb /v1/orders, /v2/orders and legacy
        /trade/place, /trade/market_buy, /trade/market_sell) are read and authenticated in
        full, then reach the matching engine n ms later, whatever the client does meanwhile
        (hangs up, times out, resends). "504" answers a gateway timeout at once; "hold"
        answers only once the order was carried out (a client with a shorter timeout gives up
        first). The client id is reserved at receipt: a resend while the first is on its way
        is refused as a reused id, as a venue's gateway does (the id is taken when the request
        is accepted, not when the engine gets to it). Late executions belong to the venue, not
        the request, and are cancelled when the server stops.
    POST /_sim/faults/invisible {"ms": n}      every order created while set is missing from
        lookups for n ms after its creation (single GET by uuid/identifier/client_order_id,
        open/closed lists, uuids lists, legacy order_detail/orders, and cancels, which look
        the order up first); the engine fills it meanwhile, /_sim/orders shows it, and the
        private WebSocket reports it. {"ms": 0} stops hiding new orders.
    POST /_sim/faults/order_not_ready {"count": k}  Bithumb only: the next k single-order
        lookups and cancels (GET /v1/order, DELETE /v1/order, DELETE /v2/order) answer 422
        {"error": {"name": "order_not_ready"}} (exchanges.md §2.6; transient). Upbit has no
        such error: refused there with 400.
    POST /_sim/faults/cancel_race {"count": k}  the next k cancels of an open order lose the
        race with its fill: the order fills completely (against the book up to its limit, the
        rest at its own price), then the cancel is refused as a cancel of a done order is:
        Upbit 400 "done_order", Bithumb 400 "order_not_ready" ("already done"; see
        rules.Dialect.not_cancellable for the sources), legacy status 5600.
    POST /_sim/faults/clear                    clears every fault above
    POST /_sim/dislocate {"market": "KRW-BTC", "bps": 80, "duration_ms": 3000}
    GET  /_sim/orders                          every order this venue ever accepted
    GET  /_sim/accounts                        balances per access key: free, locked and
        in_transit (withdrawn from here, not yet credited on the other venue)
    POST /_sim/faults/withdraw_next {"action": "stuck"|"reject"|"fail", "count": k}
    POST /_sim/faults/deposit_delay {"ms": n, "count": k}
    GET  /_sim/transfers                       every withdrawal and deposit (karb.sim.transfers)
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from karb.sim import transfer_api
from karb.sim.engine import Order, OrderFault
from karb.sim.venue import VenueState, num, ok_json


def order_record(order: Order) -> dict[str, Any]:
    return {"id": order.id, "client_id": order.client_id, "market": order.market,
            "side": order.side, "ord_type": order.ord_type, "price": num(order.price),
            "volume": num(order.volume), "state": order.state,
            "executed_volume": num(order.executed_volume), "paid_fee": num(order.paid_fee),
            "created_ns": order.created_ns,
            "fills": [{"trade_id": f.trade_id, "price": num(f.price), "volume": num(f.volume),
                       "funds": num(f.funds), "fee": num(f.fee), "is_maker": f.is_maker}
                      for f in order.fills]}


def add_routes(app: web.Application, state: VenueState) -> None:
    if not state.sim.faults_enabled:
        return

    async def body(request: web.Request) -> dict[str, Any]:
        if not request.can_read_body:
            return {}
        data = await request.json()
        if not isinstance(data, dict):
            raise web.HTTPBadRequest(text="body must be a JSON object")
        return data

    async def ws_drop(request: web.Request) -> web.Response:
        sockets = list(state.sockets)
        for session in sockets:
            await session.drop()
        return ok_json({"dropped": len(sockets)})

    async def ws_stall(request: web.Request) -> web.Response:
        state.faults.ws_stalled = bool((await body(request)).get("on", True))
        return ok_json({"stalled": state.faults.ws_stalled})

    async def latency(request: web.Request) -> web.Response:
        state.faults.rest_latency_ms = int((await body(request)).get("ms", 0))
        return ok_json({"latency_ms": state.faults.rest_latency_ms})

    async def fail_next(request: web.Request) -> web.Response:
        data = await body(request)
        status = int(data.get("status", 500))
        if status not in (429, 500, 502, 503, 504):
            raise web.HTTPBadRequest(text="status must be 429 or 5xx")
        state.faults.fail_next, state.faults.fail_status = int(data.get("count", 1)), status
        return ok_json({"fail_next": state.faults.fail_next, "status": status})

    async def lose_response(request: web.Request) -> web.Response:
        state.faults.lose_next = int((await body(request)).get("count", 1))
        return ok_json({"lose_next": state.faults.lose_next})

    async def order_next(request: web.Request) -> web.Response:
        data = await body(request)
        action = data.get("action")
        if action not in ("reject", "partial"):
            raise web.HTTPBadRequest(text="action must be reject or partial")
        fault = OrderFault(action, float(data.get("fraction", 0.5)))
        state.exchange.next_order_faults.extend([fault] * int(data.get("count", 1)))
        return ok_json({"queued": len(state.exchange.next_order_faults)})

    async def malformed(request: web.Request) -> web.Response:
        count = int((await body(request)).get("count", 1))
        for session in state.sockets:
            session.malformed_pending += count
        return ok_json({"sockets": len(state.sockets), "count": count})

    async def clock_skew(request: web.Request) -> web.Response:
        state.faults.clock_skew_ms = int((await body(request)).get("ms", 0))
        return ok_json({"clock_skew_ms": state.faults.clock_skew_ms})

    async def delay_execution(request: web.Request) -> web.Response:
        data = await body(request)
        answer = str(data.get("answer", "504"))
        if answer not in ("504", "hold"):
            raise web.HTTPBadRequest(text='answer must be "504" or "hold"')
        ms, count = int(data.get("ms", 0)), int(data.get("count", 1))
        if ms < 0 or count < 0:
            raise web.HTTPBadRequest(text="ms and count must not be negative")
        f = state.faults
        f.delay_ms, f.delay_next = ms, count
        f.delay_answer = "504" if answer == "504" else "hold"
        return ok_json({"delay_next": count, "ms": ms, "answer": answer})

    async def invisible(request: web.Request) -> web.Response:
        ms = int((await body(request)).get("ms", 0))
        if ms < 0:
            raise web.HTTPBadRequest(text="ms must not be negative")
        state.exchange.invisible_ms = ms
        return ok_json({"invisible_ms": ms})

    async def order_not_ready(request: web.Request) -> web.Response:
        if state.name != "bithumb":
            raise web.HTTPBadRequest(text="order_not_ready is Bithumb's 422; Upbit has no such "
                                          "error (use latency, fail_next or invisible)")
        state.faults.not_ready_next = int((await body(request)).get("count", 1))
        return ok_json({"not_ready_next": state.faults.not_ready_next})

    async def cancel_race(request: web.Request) -> web.Response:
        state.faults.cancel_race_next = int((await body(request)).get("count", 1))
        return ok_json({"cancel_race_next": state.faults.cancel_race_next})

    async def clear(request: web.Request) -> web.Response:
        state.faults.clear()
        state.exchange.next_order_faults.clear()
        state.exchange.invisible_ms = 0
        if state.transfers is not None:
            transfer_api.clear_faults(state.transfers)
        return ok_json({"cleared": True})

    async def dislocate(request: web.Request) -> web.Response:
        data = await body(request)
        market = data.get("market")
        if market not in state.model.markets:
            raise web.HTTPBadRequest(text=f"unknown market {market!r}")
        state.model.dislocate(state.name, market, float(data.get("bps", 80)),
                              int(data.get("duration_ms", 3000)))
        return ok_json({"venue": state.name, "market": market})

    async def orders(request: web.Request) -> web.Response:
        return ok_json([order_record(o) for o in state.exchange.orders.values()])

    async def accounts(request: web.Request) -> web.Response:
        out: dict[str, dict[str, dict[str, float]]] = {}
        for key, account in state.exchange.accounts.items():
            transit = (state.transfers.in_transit(state.name, key)
                       if state.transfers is not None else {})
            for cur in transit:
                account.balance(cur)
            out[key] = {cur: {"free": b.free, "locked": b.locked, "in_transit": transit.get(cur, 0.0)}
                        for cur, b in account.balances.items()}
        return ok_json(out)

    app.router.add_post("/_sim/faults/ws_drop", ws_drop)
    app.router.add_post("/_sim/faults/ws_stall", ws_stall)
    app.router.add_post("/_sim/faults/latency", latency)
    app.router.add_post("/_sim/faults/fail_next", fail_next)
    app.router.add_post("/_sim/faults/lose_response", lose_response)
    app.router.add_post("/_sim/faults/order_next", order_next)
    app.router.add_post("/_sim/faults/malformed_frame", malformed)
    app.router.add_post("/_sim/faults/clock_skew", clock_skew)
    app.router.add_post("/_sim/faults/delay_execution", delay_execution)
    app.router.add_post("/_sim/faults/invisible", invisible)
    app.router.add_post("/_sim/faults/order_not_ready", order_not_ready)
    app.router.add_post("/_sim/faults/cancel_race", cancel_race)
    app.router.add_post("/_sim/faults/clear", clear)
    app.router.add_post("/_sim/dislocate", dislocate)
    app.router.add_get("/_sim/orders", orders)
    app.router.add_get("/_sim/accounts", accounts)
