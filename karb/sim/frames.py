"""Frames in the Upbit request family's shapes (Upbit, Bithumb ``/websocket/v1``): order book,
ticker, trade, myOrder, myAsset; the SIMPLE key table. Pure rendering from the venue state — the
REST handlers render their books and tickers from here too; :mod:`karb.sim.wsfeed` owns the
sessions that send them.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from karb.sim.engine import Account, Fill, Order
from karb.sim.rules import dialect
from karb.sim.venue import VenueState

SIMPLE_KEYS = {
    "type": "ty", "code": "cd", "timestamp": "tms", "stream_type": "st", "level": "lv",
    "total_ask_size": "tas", "total_bid_size": "tbs", "orderbook_units": "obu",
    "ask_price": "ap", "bid_price": "bp", "ask_size": "as", "bid_size": "bs",
    "opening_price": "op", "high_price": "hp", "low_price": "lp", "trade_price": "tp",
    "prev_closing_price": "pcp", "change": "c", "change_price": "cp",
    "signed_change_price": "scp", "change_rate": "cr", "signed_change_rate": "scr",
    "trade_volume": "tv", "acc_trade_volume": "atv", "acc_trade_volume_24h": "atv24h",
    "acc_trade_price": "atp", "acc_trade_price_24h": "atp24h", "trade_date": "tdt",
    "trade_time": "ttm", "trade_timestamp": "ttms", "ask_bid": "ab", "market_state": "ms",
    "sequential_id": "sid", "best_ask_price": "bap", "best_ask_size": "bas",
    "best_bid_price": "bbp", "best_bid_size": "bbs",
    "uuid": "uid", "order_type": "ot", "state": "s", "trade_uuid": "tuid", "price": "p",
    "avg_price": "ap", "volume": "v", "remaining_volume": "rv", "executed_volume": "ev",
    "trades_count": "tc", "reserved_fee": "rsf", "remaining_fee": "rmf", "paid_fee": "pf",
    "locked": "l", "executed_funds": "ef", "time_in_force": "tif", "trade_fee": "tf",
    "is_maker": "im", "identifier": "id", "order_timestamp": "otms",
    "asset_uuid": "astuid", "assets": "ast", "currency": "cu", "balance": "b",
    "asset_timestamp": "asttms",
}


# Where one type abbreviates a key its own way: the trade stream's ``trade_date`` is ``td``
# (yyyy-MM-dd), the ticker's ``tdt`` (yyyyMMdd) (Upbit's websocket-trade / -ticker tables).
SIMPLE_KEYS_BY_TYPE = {"trade": SIMPLE_KEYS | {"trade_date": "td"}}


def simple(value: Any) -> Any:
    if isinstance(value, dict):
        keys = SIMPLE_KEYS_BY_TYPE.get(str(value.get("type")), SIMPLE_KEYS)
        return {keys.get(k, k): simple(v) for k, v in value.items()}
    if isinstance(value, list):
        return [simple(v) for v in value]
    return value


def error_frame(name: str, message: str) -> str:
    return json.dumps({"error": {"name": name, "message": message}})


def orderbook_frame(state: VenueState, market: str, depth: int, stream: str, level: float,
                    rest: bool = False) -> dict[str, Any]:
    book = state.model.book(state.name, market)
    # Bithumb's WebSocket sends at most 15 levels; its REST book of one market has 30.
    cap = min(depth, 30 if rest else dialect(state.name).ws_max_levels)
    bids, asks = book.bids[:cap], book.asks[:cap]
    units = []
    for i in range(max(len(bids), len(asks))):
        ask = asks[i] if i < len(asks) else (0, 0)
        bid = bids[i] if i < len(bids) else (0, 0)
        units.append({"ask_price": ask[0], "bid_price": bid[0], "ask_size": ask[1], "bid_size": bid[1]})
    ts = state.now_ms() * dialect(state.name).ws_ts_per_ms  # Bithumb WS: microseconds
    return {"type": "orderbook", "code": market, "timestamp": ts,
            "total_ask_size": round(sum(a[1] for a in asks), 8),
            "total_bid_size": round(sum(b[1] for b in bids), 8),
            "orderbook_units": units, "stream_type": stream, "level": level}


def ticker_fields(state: VenueState, market: str) -> dict[str, Any]:
    t = state.model.ticker(state.name, market)
    change = t.trade_price - t.prev_closing_price
    rate = change / t.prev_closing_price if t.prev_closing_price else 0.0
    now = state.now_ms()
    date = _utc(now, "%Y%m%d")
    return {"market": market, "trade_date": date, "trade_time": _utc(now, "%H%M%S"),
            "trade_date_kst": date, "trade_time_kst": _utc(now + 9 * 3_600_000, "%H%M%S"),
            "trade_timestamp": t.trade_ts_ms or now, "opening_price": t.opening_price,
            "high_price": t.high_price, "low_price": t.low_price, "trade_price": t.trade_price,
            "prev_closing_price": t.prev_closing_price,
            "change": "RISE" if change > 0 else "FALL" if change < 0 else "EVEN",
            "change_price": abs(change), "change_rate": round(abs(rate), 8),
            "signed_change_price": change, "signed_change_rate": round(rate, 8),
            "trade_volume": t.trade_volume, "acc_trade_price": t.acc_trade_price,
            "acc_trade_price_24h": t.acc_trade_price, "acc_trade_volume": t.acc_trade_volume,
            "acc_trade_volume_24h": t.acc_trade_volume,
            "highest_52_week_price": t.high_price, "highest_52_week_date": _utc(now, "%Y-%m-%d"),
            "lowest_52_week_price": t.low_price, "lowest_52_week_date": _utc(now, "%Y-%m-%d"),
            "timestamp": now}


def ticker_frame(state: VenueState, market: str, stream: str) -> dict[str, Any]:
    f = ticker_fields(state, market)
    f.pop("market")
    f.pop("trade_date_kst")
    f.pop("trade_time_kst")
    t = state.model.ticker(state.name, market)
    return {"type": "ticker", "code": market, **f, "ask_bid": t.ask_bid,
            "acc_ask_volume": 0.0, "acc_bid_volume": 0.0, "market_state": "ACTIVE",
            "is_trading_suspended": False, "delisting_date": None, "market_warning": "NONE",
            "stream_type": stream}


def trade_frames(state: VenueState, last_seq: dict[str, int], market: str,
                 stream: str) -> list[dict[str, Any]]:
    """Trades after ``last_seq[market]`` (the last one only on a first look); advances it."""
    trades = state.model.state[(state.name, market)].trades
    last = last_seq.get(market, -1)
    fresh = [t for t in trades if t.sequential_id > last] if last >= 0 else trades[-1:]
    if trades:
        last_seq[market] = trades[-1].sequential_id
    book = state.model.book(state.name, market)
    ticker = state.model.ticker(state.name, market)
    out = []
    for t in fresh:
        change = t.price - ticker.prev_closing_price
        out.append({"type": "trade", "code": market, "trade_price": t.price,
                    "trade_volume": t.volume, "ask_bid": t.side.upper(),
                    "prev_closing_price": ticker.prev_closing_price,
                    "change": "RISE" if change > 0 else "FALL" if change < 0 else "EVEN",
                    "change_price": abs(change), "trade_date": _utc(t.ts_ms, "%Y-%m-%d"),
                    "trade_time": _utc(t.ts_ms, "%H:%M:%S"), "trade_timestamp": t.ts_ms,
                    "timestamp": state.now_ms(), "sequential_id": t.sequential_id,
                    "best_ask_price": book.best_ask(), "best_ask_size": book.asks[0][1] if book.asks else 0,
                    "best_bid_price": book.best_bid(), "best_bid_size": book.bids[0][1] if book.bids else 0,
                    "stream_type": stream})
    return out


def my_order_frame(state: VenueState, order: Order, fill: Fill | None) -> dict[str, Any]:
    state_name = "trade" if fill is not None else order.state
    avg = order.executed_funds / order.executed_volume if order.executed_volume else 0.0
    return {"type": "myOrder", "code": order.market, "uuid": order.id,
            "ask_bid": order.side.upper(), "order_type": order.ord_type, "state": state_name,
            "trade_uuid": fill.trade_id if fill else None,
            "price": fill.price if fill else order.price, "avg_price": avg,
            "volume": fill.volume if fill else order.volume,
            "remaining_volume": order.remaining_volume, "executed_volume": order.executed_volume,
            "trades_count": len(order.fills), "reserved_fee": order.reserved_fee,
            "remaining_fee": max(order.reserved_fee - order.paid_fee, 0.0),
            "paid_fee": order.paid_fee, "locked": order.locked,
            "executed_funds": order.executed_funds, "time_in_force": order.time_in_force,
            "trade_fee": fill.fee if fill else None, "is_maker": fill.is_maker if fill else None,
            "identifier": order.client_id, "smp_type": None, "prevented_volume": 0,
            "prevented_locked": 0, "trade_timestamp": fill.ts_ns // 1_000_000 if fill else None,
            "order_timestamp": order.created_ns // 1_000_000, "timestamp": state.now_ms(),
            "stream_type": "REALTIME"}


def my_asset_frame(state: VenueState, account: Account, currencies: list[str]) -> dict[str, Any]:
    now = state.now_ms()
    return {"type": "myAsset", "asset_uuid": str(uuid.uuid4()),
            "assets": [{"currency": c, "balance": account.balance(c).free,
                        "locked": account.balance(c).locked} for c in currencies],
            "asset_timestamp": now, "timestamp": now, "stream_type": "REALTIME"}


def _utc(ms: int, fmt: str) -> str:
    return time.strftime(fmt, time.gmtime(ms / 1000))


def bithumb_my_order_frame(state: VenueState, order: Order, fill: Fill | None) -> dict[str, Any]:
    """Bithumb's myOrder v2 (``/websocket/v2/private``; v1 private ended 2026-10): Upbit's
    fields renamed as the migration guide lists them (exchanges.md §2.5, §7): ``uuid→order_id``,
    ``trade_uuid→trade_id``, ``ask_bid→side`` (``buy``/``sell``), ``price→order_price`` and
    ``trade_price``, ``volume→quantity``, plus ``client_order_id``. Fields the guide does not
    rename keep Upbit's names."""
    out: dict[str, Any] = {}
    for key, value in my_order_frame(state, order, fill).items():
        if key == "uuid":
            out["order_id"] = value
        elif key == "trade_uuid":
            out["trade_id"] = value
        elif key == "ask_bid":
            out["side"] = "buy" if value == "BID" else "sell"
        elif key == "price":
            out["order_price"] = order.price
            out["trade_price"] = fill.price if fill is not None else None
        elif key == "volume":
            out["quantity"] = value
        elif key == "identifier":
            out["client_order_id"] = value
        else:
            out[key] = value
    return out

