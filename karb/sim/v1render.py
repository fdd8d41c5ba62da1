"""What both ``/v1`` APIs (Upbit's and Bithumb's) render the same way: orders, accounts,
order chance, order books by REST, and order parameters as both parse them."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from karb.sim import frames
from karb.sim.engine import Account, Order, VenueError
from karb.sim.rules import dialect, tick
from karb.sim.venue import VenueState, kst_iso, num, parse_float


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
    unit = num(tick(state.model.book(state.name, market).best_bid() or 1))

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
                       "bid": {"currency": quote, "price_unit": unit, "min_total": minimum},
                       "ask": {"currency": base, "price_unit": unit, "min_total": minimum},
                       "max_total": "1000000000", "state": "active"},
            "bid_account": acct(quote), "ask_account": acct(base)}


def markets_param(state: VenueState, request: web.Request) -> list[str]:
    """``markets=A,B`` or, as pyupbit sends a list through requests, ``markets=A&markets=B``
    (the venue serves both)."""
    markets = [m.strip() for raw in request.query.getall("markets", [])
               for m in raw.split(",") if m.strip()]
    if not markets:
        raise VenueError(400, 400, "markets is required")  # type: ignore[arg-type]
    if any(m not in state.model.markets for m in markets):
        raise VenueError(404, 404, "Code not found")  # type: ignore[arg-type]
    return markets


def orderbook_rows(state: VenueState, markets: list[str], count: int) -> list[dict[str, Any]]:
    rows = []
    for market in markets:
        frame = frames.orderbook_frame(state, market, count, "REST", 0, rest=True)
        rows.append({"market": market, "timestamp": state.now_ms() // 100 * 100,
                     "total_ask_size": frame["total_ask_size"], "total_bid_size": frame["total_bid_size"],
                     "orderbook_units": frame["orderbook_units"], "level": 0})
    return rows


def place_params(state: VenueState, body: dict[str, Any], type_key: str = "ord_type",
                 id_key: str = "identifier") -> dict[str, Any]:
    market = body.get("market")
    if not isinstance(market, str):
        raise VenueError(400, dialect(state.name).param_error, "market is missing")
    client_id = body.get(id_key)
    return {"market": market, "side": body.get("side"), "ord_type": body.get(type_key),
            "price": parse_float(body, "price", state.name),
            "volume": parse_float(body, "volume", state.name),
            "time_in_force": body.get("time_in_force"),
            "client_id": str(client_id) if client_id is not None else None}
