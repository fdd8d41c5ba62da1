"""Bithumb's legacy v1.2.0 API, which the original plans (and pybithumb) used.

REST: ``/public/ticker|orderbook/{COIN}_{QUOTE}`` (and ``ALL_KRW``), responses wrapped as
``{"status": "0000", "data": …}`` with every number a string and errors as other status codes
with HTTP 200; private calls are form POSTs signed with ``Api-Sign`` (``karb.sim.auth``).
WebSocket ``/pub/ws`` (pubwss): one JSON object per subscription; ``orderbookdepth`` sends only
changed levels (absolute quantity, ``"0"`` deletes), ``orderbooksnapshot`` whole books.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import WSMsgType, web

from karb.sim import late
from karb.sim.auth import LegacyAuthError, verify_legacy
from karb.sim.engine import Account, Order, VenueError
from karb.sim.market import Book
from karb.sim.venue import VenueState, num, ok_json
from karb.sim.wsfeed import Session

STATUS = {"wait": "Pending", "done": "Completed", "cancel": "Cancel"}
PUBWSS_TYPES = ("ticker", "transaction", "orderbookdepth", "orderbooksnapshot")
TICK_TYPES = ("30M", "1H", "12H", "24H", "MID")


CANDLE_INTERVALS_S = {"1m": 60, "3m": 180, "5m": 300, "10m": 600, "30m": 1800, "1h": 3600,
                      "6h": 21600, "12h": 43200, "24h": 86400}


def _kst(ms: int) -> str:
    """``2020-04-23 10:32:37``: legacy prints KST wall time."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ms / 1000 + 9 * 3600))


def _fail(status: str, message: str) -> web.Response:
    return ok_json({"status": status, "message": message})


def _ticker_data(state: VenueState, market: str) -> dict[str, Any]:
    t = state.model.ticker(state.name, market)
    change = t.trade_price - t.prev_closing_price
    return {"opening_price": num(t.opening_price), "closing_price": num(t.trade_price),
            "min_price": num(t.low_price), "max_price": num(t.high_price),
            "units_traded": num(t.acc_trade_volume), "acc_trade_value": num(t.acc_trade_price),
            "prev_closing_price": num(t.prev_closing_price),
            "units_traded_24H": num(t.acc_trade_volume), "acc_trade_value_24H": num(t.acc_trade_price),
            "fluctate_24H": num(change),
            "fluctate_rate_24H": f"{change / t.prev_closing_price * 100:.2f}",
            "date": str(state.now_ms())}


def _book_side(levels: list[list[float]], count: int) -> list[dict[str, str]]:
    return [{"price": num(p), "quantity": num(q)} for p, q in levels[:count]]


def add_routes(app: web.Application, state: VenueState) -> None:
    ex = state.exchange

    def market_of(pair: str) -> str | None:
        coin, _, quote = pair.partition("_")
        market = f"{quote}-{coin}"
        return market if market in state.model.markets else None

    async def ticker(request: web.Request) -> web.Response:
        pair = request.match_info["pair"]
        if pair.startswith("ALL_"):
            quote = pair[4:]
            data: dict[str, Any] = {m.split("-")[1]: _ticker_data(state, m)
                                    for m in state.model.markets if m.startswith(quote + "-")}
            data["date"] = str(state.now_ms())
            return ok_json({"status": "0000", "data": data})
        market = market_of(pair)
        if market is None:
            return _fail("5500", "Invalid Parameter")
        return ok_json({"status": "0000", "data": _ticker_data(state, market)})

    async def orderbook(request: web.Request) -> web.Response:
        pair = request.match_info["pair"]
        try:
            count = min(int(request.query.get("count", "5" if pair.startswith("ALL_") else "30")), 30)
        except ValueError:
            return _fail("5500", "Invalid Parameter")
        if pair.startswith("ALL_"):
            quote = pair[4:]
            data: dict[str, Any] = {"timestamp": str(state.now_ms()), "payment_currency": quote}
            for m in state.model.markets:
                if m.startswith(quote + "-"):
                    book = state.model.book(state.name, m)
                    data[m.split("-")[1]] = {"order_currency": m.split("-")[1],
                                             "bids": _book_side(book.bids, count),
                                             "asks": _book_side(book.asks, count)}
            return ok_json({"status": "0000", "data": data})
        market = market_of(pair)
        if market is None:
            return _fail("5500", "Invalid Parameter")
        book = state.model.book(state.name, market)
        return ok_json({"status": "0000", "data": {
            "timestamp": str(state.now_ms()), "payment_currency": market.split("-")[0],
            "order_currency": market.split("-")[1], "bids": _book_side(book.bids, count),
            "asks": _book_side(book.asks, count)}})

    async def transaction_history(request: web.Request) -> web.Response:
        market = market_of(request.match_info["pair"])
        if market is None:
            return _fail("5500", "Invalid Parameter")
        count = min(max(int(request.query.get("count", "20") or 20), 1), 100)
        trades = state.model.state[(state.name, market)].trades[-count:]
        return ok_json({"status": "0000", "data": [
            {"transaction_date": _kst(t.ts_ms), "type": t.side, "units_traded": num(t.volume),
             "price": num(t.price), "total": num(t.price * t.volume)} for t in trades]})

    async def candlestick(request: web.Request) -> web.Response:
        """``[ms, open, close, high, low, volume]`` rows (v1.2.0 order) from the trades the
        model kept; a market with none yet gets one candle from its ticker."""
        market = market_of(request.match_info["pair"])
        interval_s = CANDLE_INTERVALS_S.get(request.match_info["interval"])
        if market is None or interval_s is None:
            return _fail("5500", "Invalid Parameter")
        rows: dict[int, list[float]] = {}
        for t in state.model.state[(state.name, market)].trades:
            start = t.ts_ms // (interval_s * 1000) * interval_s * 1000
            row = rows.setdefault(start, [t.price, t.price, t.price, t.price, 0.0])
            row[1], row[2], row[3] = t.price, max(row[2], t.price), min(row[3], t.price)
            row[4] += t.volume
        if not rows:
            tk = state.model.ticker(state.name, market)
            now = state.now_ms() // (interval_s * 1000) * interval_s * 1000
            rows[now] = [tk.opening_price, tk.trade_price, tk.high_price, tk.low_price,
                         tk.acc_trade_volume]
        return ok_json({"status": "0000", "data": [
            [start, *(num(v) for v in row)] for start, row in sorted(rows.items())]})

    async def private(request: web.Request, body: dict[str, str]) -> tuple[Account, dict[str, str]]:
        raw = (await request.read()).decode()
        params = dict(parse_qsl(raw, keep_blank_values=True))
        account = verify_legacy(request.headers, request.path, raw, ex.accounts, state.now_ms())
        return account, params

    def handler(fn: Any) -> Any:
        async def wrapped(request: web.Request) -> web.Response:
            try:
                account, params = await private(request, {})
                return await fn(account, params)
            except LegacyAuthError as exc:
                return _fail(exc.status, exc.message)
            except VenueError as exc:
                return _fail("5600", exc.message)  # legacy answers every order refusal with 5600
            except (KeyError, ValueError) as exc:
                return _fail("5500", f"Invalid Parameter ({exc})")
        return wrapped

    def market_param(params: dict[str, str]) -> str:
        market = f"{params.get('payment_currency', 'KRW')}-{params['order_currency']}"
        if market not in state.model.markets:
            raise ValueError(f"unknown market {market}")
        return market

    async def account_info(account: Account, params: dict[str, str]) -> web.Response:
        coin = params.get("order_currency", "BTC").upper()
        return ok_json({"status": "0000", "data": {
            "created": "1546239000000", "account_id": account.access_key,
            "order_currency": coin, "payment_currency": params.get("payment_currency", "KRW"),
            "trade_fee": num(ex.fee_rate), "balance": num(account.balance(coin).free)}})

    async def balance(account: Account, params: dict[str, str]) -> web.Response:
        wanted = params.get("currency", "ALL").upper()
        data: dict[str, str] = {}
        for cur, b in account.balances.items():
            if wanted not in ("ALL", cur) and cur != "KRW":
                continue
            c = cur.lower()
            data.update({f"total_{c}": num(b.free + b.locked), f"in_use_{c}": num(b.locked),
                         f"available_{c}": num(b.free)})
            if cur != "KRW":
                market = f"KRW-{cur}"
                if market in state.model.markets:
                    data[f"xcoin_last_{c}"] = num(state.model.ticker(state.name, market).trade_price)
        return ok_json({"status": "0000", "data": data})

    async def place(account: Account, params: dict[str, str]) -> web.Response:
        side, market = params["type"], market_param(params)
        price, units = float(params["price"]), float(params["units"])
        return await late.place(state, account, None, lambda _: placed(ex.place(
            account, market, side, "limit", price, units, None, None)))

    async def market_buy(account: Account, params: dict[str, str]) -> web.Response:
        market = market_param(params)
        units = float(params["units"])
        budget, need = 0.0, units
        for px, size in state.model.book(state.name, market).asks:
            take = min(size, need)
            budget += px * take
            need -= take
            if need <= 1e-12:
                break
        return await late.place(state, account, None, lambda _: placed(ex.place(
            account, market, "bid", "price", round(budget), None, None, None)))

    async def market_sell(account: Account, params: dict[str, str]) -> web.Response:
        market, units = market_param(params), float(params["units"])
        return await late.place(state, account, None, lambda _: placed(ex.place(
            account, market, "ask", "market", None, units, None, None)))

    def placed(order: Order) -> web.Response:
        return ok_json({"status": "0000", "order_id": order.id})

    def own(account: Account, params: dict[str, str]) -> Order:
        return ex.find(account, order_id=params["order_id"])

    async def cancel(account: Account, params: dict[str, str]) -> web.Response:
        late.cancel(state, account, own(account, params))
        return ok_json({"status": "0000"})

    async def order_detail(account: Account, params: dict[str, str]) -> web.Response:
        order = own(account, params)
        return ok_json({"status": "0000", "data": {
            "order_date": str(order.created_ns // 1000), "type": order.side,
            "order_status": STATUS[order.state], "order_currency": order.base,
            "payment_currency": order.quote, "watch_price": "0", "order_price": num(order.price or 0),
            "order_qty": num(order.volume or order.executed_volume),
            "cancel_date": "", "cancel_type": "",
            "contract": [{"transaction_date": str(f.ts_ns // 1000), "price": num(f.price),
                          "units": num(f.volume), "fee_currency": "KRW", "fee": num(f.fee),
                          "total": num(f.funds)} for f in order.fills]}})

    async def orders(account: Account, params: dict[str, str]) -> web.Response:
        market = market_param(params)
        live = [o for o in ex.account_orders(account, market) if o.state == "wait"
                and (not params.get("order_id") or o.id == params["order_id"])
                and (not params.get("type") or o.side == params["type"])]
        if not live:
            return _fail("5600", "거래 진행중인 내역이 존재하지 않습니다.")
        count = int(params.get("count", "100"))
        return ok_json({"status": "0000", "data": [
            {"order_currency": o.base, "payment_currency": o.quote, "order_id": o.id,
             "order_date": str(o.created_ns // 1000), "type": o.side, "watch_price": "0",
             "units": num(o.volume), "units_remaining": num(o.remaining_volume),
             "price": num(o.price)} for o in live[:count]]})

    async def pubwss(request: web.Request) -> web.StreamResponse:
        return await serve_pubwss(request, state)

    r = app.router
    r.add_get("/public/ticker/{pair}", ticker)
    r.add_get("/public/orderbook/{pair}", orderbook)
    r.add_get("/public/transaction_history/{pair}", transaction_history)
    r.add_get("/public/candlestick/{pair}/{interval}", candlestick)
    r.add_post("/info/account", handler(account_info))
    r.add_post("/info/balance", handler(balance))
    r.add_post("/trade/place", handler(place))
    r.add_post("/trade/market_buy", handler(market_buy))
    r.add_post("/trade/market_sell", handler(market_sell))
    r.add_post("/trade/cancel", handler(cancel))
    r.add_post("/info/order_detail", handler(order_detail))
    r.add_post("/info/orders", handler(orders))
    r.add_get("/pub/ws", pubwss)


# -- pubwss ----------------------------------------------------------------------------------

def _levels(book: Book | None) -> dict[tuple[str, float], float]:
    if book is None:
        return {}
    out = {("bid", p): q for p, q in book.bids[:30]}
    out.update({("ask", p): q for p, q in book.asks[:30]})
    return out


def depth_delta(state: VenueState, market: str) -> list[dict[str, str]]:
    """Levels that changed in the last model step (absolute quantity, "0" = gone): the same for
    every subscriber, computed once per step and market."""
    memo = state.memo.setdefault("pubwss_depth", {})
    step = state.model.now_ms
    cached = memo.get(market)
    if cached is not None and cached[0] == step:
        return cached[1]
    vm = state.model.state[(state.name, market)]
    old, new = _levels(vm.prev_book), _levels(vm.book)
    delta = [{"orderType": side, "price": num(px), "quantity": num(new.get((side, px), 0.0)),
              "total": "1"}
             for side, px in sorted(set(new) | set(old)) if new.get((side, px)) != old.get((side, px))]
    memo[market] = (step, delta)
    return delta


def pubwss_step(session: Session, changed: set[str]) -> None:
    state = session.state
    now_us = state.now_ns() // 1000
    for kind, symbols in session.subs.items():
        for symbol, _ in symbols:
            coin, _, quote = symbol.partition("_")
            market = f"{quote}-{coin}"
            if market not in changed:
                continue
            if kind == "orderbookdepth":
                delta = depth_delta(state, market)
                if delta:
                    session.send(json.dumps({"type": "orderbookdepth", "content": {
                        "list": [{"symbol": symbol, **d} for d in delta], "datetime": now_us}}))
            elif kind == "orderbooksnapshot":
                book = state.model.book(state.name, market)
                session.send(json.dumps({"type": "orderbooksnapshot", "content": {
                    "symbol": symbol, "datetime": str(now_us),
                    "asks": [[num(p), num(q)] for p, q in book.asks[:30]],
                    "bids": [[num(p), num(q)] for p, q in book.bids[:30]]}}))
            elif kind == "ticker":
                t = state.model.ticker(state.name, market)
                for tick_type in session.tick_types or ["24H"]:  # one frame per tickType asked
                    session.send(json.dumps({"type": "ticker", "content": {
                        "symbol": symbol, "tickType": tick_type, "openPrice": num(t.opening_price),
                        "closePrice": num(t.trade_price), "lowPrice": num(t.low_price),
                        "highPrice": num(t.high_price), "value": num(t.acc_trade_price),
                        "volume": num(t.acc_trade_volume),
                        "prevClosePrice": num(t.prev_closing_price),
                        "chgRate": f"{(t.trade_price / t.prev_closing_price - 1) * 100:.2f}",
                        "chgAmt": num(t.trade_price - t.prev_closing_price)}}))
            elif kind == "transaction":
                trades = state.model.state[(state.name, market)].trades
                last = session.last_trade_seq.get(market, 0)  # baseline set at subscription
                fresh = [t for t in trades if t.sequential_id > last]
                if fresh:
                    session.last_trade_seq[market] = fresh[-1].sequential_id
                    session.send(json.dumps({"type": "transaction", "content": {"list": [
                        {"symbol": symbol, "buySellGb": "2" if t.side == "bid" else "1",
                         "contPrice": num(t.price), "contQty": num(t.volume),
                         "contAmt": num(t.price * t.volume), "contDtm": str(t.ts_ms), "updn": "up"}
                        for t in fresh]}}))


async def serve_pubwss(request: web.Request, state: VenueState) -> web.StreamResponse:
    ws = web.WebSocketResponse(autoping=False)
    await ws.prepare(request)
    session = Session(ws, state, "pubwss")
    session.on_step = lambda changed: pubwss_step(session, changed)
    writer = asyncio.create_task(session.writer())
    state.sockets.add(session)
    session.send(json.dumps({"status": "0000", "resmsg": "Connected Successfully"}))
    try:
        while True:
            try:
                msg = await ws.receive(timeout=state.sim.ws_idle_timeout_s)
            except TimeoutError:
                break
            if msg.type == WSMsgType.PING:
                await ws.pong(msg.data)
                continue
            if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                break
            try:
                request_obj = json.loads(msg.data)
                kind = request_obj["type"]
                symbols = request_obj["symbols"]
                if kind not in PUBWSS_TYPES or not isinstance(symbols, list):
                    raise ValueError(kind)
            except (ValueError, KeyError, TypeError):
                session.send(json.dumps({"status": "5100", "resmsg": "Invalid Filter Syntax"}))
                continue
            tick_types = request_obj.get("tickTypes") or []
            if kind == "ticker" and (not isinstance(tick_types, list)
                                     or any(t not in TICK_TYPES for t in tick_types)):
                session.send(json.dumps({"status": "5100", "resmsg": "Invalid Filter Syntax"}))
                continue
            if kind == "ticker":
                session.tick_types = [str(t) for t in tick_types]
            session.subs[kind] = [(str(s), 0) for s in symbols]
            if kind == "transaction":  # from now on: trades after the newest one kept
                for symbol in symbols:
                    coin, _, quote = str(symbol).partition("_")
                    vm = state.model.state.get((state.name, f"{quote}-{coin}"))
                    if vm is not None:
                        session.last_trade_seq[f"{quote}-{coin}"] = (
                            vm.trades[-1].sequential_id if vm.trades else 0)
            session.send(json.dumps({"status": "0000", "resmsg": "Filter Registered Successfully"}))
    finally:
        state.sockets.discard(session)
        await session.close(writer)
    return ws
