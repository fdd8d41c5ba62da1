"""Conversions shared by both venues, whose book and order shapes are Upbit's."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from karb.exchanges.types import Fill, Level, Order, OrderState, Side
from karb.exchanges.v1api.schemas import OrderFields

STATES = {"wait": OrderState.OPEN, "watch": OrderState.OPEN, "done": OrderState.DONE,
          "cancel": OrderState.CANCELLED}
SIDES: dict[str, Side] = {"bid": "buy", "ask": "sell"}
VENUE_SIDES = {"buy": "bid", "sell": "ask"}


class Unit(Protocol):
    ask_price: float
    bid_price: float
    ask_size: float
    bid_size: float


def split_units(units: Sequence[Unit]) -> tuple[list[Level], list[Level]]:
    """Paired units (i-th ask, i-th bid) → bids and asks, dropping padded and zero-size levels.
    (The hot path of every feed; the variants tried in tools/bench.py were no faster.)"""
    bids = [(u.bid_price, u.bid_size) for u in units if u.bid_size > 0]
    asks = [(u.ask_price, u.ask_size) for u in units if u.ask_size > 0]
    return bids, asks


def order_body(market: str, side: Side, order_type: str, price: str | None, volume: str | None,
               client_id: str, time_in_force: str | None, type_key: str, id_key: str) -> dict[str, str]:
    """The JSON body of an order in Upbit's grammar (Bithumb /v2 renames two keys): a limit
    order has price and volume; a market buy (``price``) spends KRW; a market sell (``market``)
    sells a volume. Keys go in this order, and are hashed in this order."""
    body: dict[str, str] = {"market": market, "side": VENUE_SIDES[side]}
    if order_type == "limit":
        body.update(volume=volume or "", price=price or "")
        body[type_key] = "limit"
        if time_in_force:
            body["time_in_force"] = time_in_force
    elif side == "buy":
        body["price"] = price or ""
        body[type_key] = "price"
    else:
        body["volume"] = volume or ""
        body[type_key] = "market"
    body[id_key] = client_id
    return body


def ms_or_us_to_ns(ts: int) -> int:
    """Venue timestamps come in ms, or μs (Bithumb's WebSocket, 16 digits): both to ns."""
    return ts * 1_000 if ts > 10**14 else ts * 1_000_000


def _f(value: str | None) -> float | None:
    return float(value) if value not in (None, "") else None


def order_from_wire(venue: str, o: OrderFields, client_id: str | None) -> Order:
    """An Upbit-shaped order (Upbit, Bithumb /v1) in our terms."""
    fills = [Fill(t.uuid, float(t.price), float(t.volume), float(t.funds)) for t in o.trades]
    executed_funds = _f(o.executed_funds)
    if executed_funds is None:
        executed_funds = sum(f.funds for f in fills)
    return Order(venue=venue, order_id=o.uuid, client_id=client_id, market=o.market,
                 side=SIDES[o.side], order_type="limit" if o.ord_type == "limit" else "market",
                 price=_f(o.price), volume=_f(o.volume), state=STATES[o.state],
                 executed_volume=float(o.executed_volume or 0), executed_funds=executed_funds,
                 paid_fee=float(o.paid_fee or 0), time_in_force=o.time_in_force, fills=fills)
