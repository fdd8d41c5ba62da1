"""Conversions shared by both venues, whose book and order shapes are Upbit's."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from karb.exchanges.types import Fill, Level, Order, OrderState, Side

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


def ms_or_us_to_ns(ts: int) -> int:
    """Venue timestamps come in ms, or μs (Bithumb's WebSocket, 16 digits): both to ns."""
    return ts * 1_000 if ts > 10**14 else ts * 1_000_000


def _f(value: str | None) -> float | None:
    return float(value) if value not in (None, "") else None


def order_from_wire(venue: str, o: object, client_id: str | None) -> Order:
    """An Upbit-shaped order (Upbit, Bithumb /v1) in our terms."""
    trades = getattr(o, "trades", [])
    fills = [Fill(t.uuid, float(t.price), float(t.volume), float(t.funds)) for t in trades]
    executed_funds = _f(getattr(o, "executed_funds", None))
    if executed_funds is None:
        executed_funds = sum(f.funds for f in fills)
    ord_type = getattr(o, "ord_type")
    return Order(venue=venue, order_id=getattr(o, "uuid"), client_id=client_id,
                 market=getattr(o, "market"), side=SIDES[getattr(o, "side")],
                 order_type="limit" if ord_type == "limit" else "market",
                 price=_f(getattr(o, "price")), volume=_f(getattr(o, "volume")),
                 state=STATES[getattr(o, "state")],
                 executed_volume=float(getattr(o, "executed_volume") or 0),
                 executed_funds=executed_funds, paid_fee=float(getattr(o, "paid_fee") or 0),
                 time_in_force=getattr(o, "time_in_force", None), fills=fills)
