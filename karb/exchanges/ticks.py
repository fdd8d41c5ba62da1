"""KRW price ticks and decimal formatting: the rules both venues validate orders against.

Upbit's KRW table is the one in force since 2025-07-31 (exchanges.md §1.7); Bithumb publishes
its tick per market in ``orders/chance`` (``market.bid.price_unit``), and the simulator serves the
same table there. Bands under 100 KRW were truncated in our stored copy of Upbit's page; the
values below 100 follow the pattern of the bands above and are served by the simulator's
``orderbook/instruments`` so clients never need to guess.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_DOWN, ROUND_FLOOR, Decimal

# (lower bound inclusive, tick), highest first.
KRW_TICKS: tuple[tuple[float, float], ...] = (
    (1_000_000, 1000), (500_000, 500), (100_000, 100), (50_000, 50), (10_000, 10),
    (5_000, 5), (100, 1), (10, 0.1), (1, 0.01), (0.1, 0.001), (0, 0.0001),
)


def krw_tick(price: float) -> float:
    for floor, tick in KRW_TICKS:
        if price >= floor:
            return tick
    return KRW_TICKS[-1][1]


def _dec(x: float) -> Decimal:
    return Decimal(repr(x))


def round_price(price: float, side: str) -> Decimal:
    """Round to the tick, down for a buy (bid) and up for a sell (ask): never a worse price."""
    tick = _dec(krw_tick(price))
    mode = ROUND_FLOOR if side == "bid" else ROUND_CEILING
    return (_dec(price) / tick).to_integral_value(rounding=mode) * tick


def on_tick(price: Decimal) -> bool:
    tick = _dec(krw_tick(float(price)))
    return (price / tick) == (price / tick).to_integral_value()


def format_decimal(value: Decimal | float, places: int | None = None) -> str:
    """A plain decimal string, no exponent, no trailing zeros: what venues accept on the wire."""
    d = value if isinstance(value, Decimal) else _dec(value)
    if places is not None:
        d = d.quantize(Decimal(1).scaleb(-places), rounding=ROUND_DOWN)
    text = format(d.normalize(), "f")
    return text if text != "-0" else "0"


LOT_PLACES = 8  # both venues take volumes to 8 decimals
_LOT = Decimal(1).scaleb(-LOT_PLACES)


def floor_lot_decimal(volume: float) -> Decimal:
    """``volume`` floored to the venues' lot — the one rounding of a volume used everywhere, so a
    volume sized under a cap is never rounded up past it. ``repr`` first: 0.3 stays 0.3, where
    ``floor(0.3 * 1e8) / 1e8`` would give 0.29999999."""
    if volume <= 0:
        return Decimal(0)
    return Decimal(repr(volume)).quantize(_LOT, rounding=ROUND_DOWN)


def floor_lot(volume: float) -> float:
    return float(floor_lot_decimal(volume))
