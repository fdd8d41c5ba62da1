"""Cross-venue arbitrage maths: the edge of buying on one venue and selling on the other, net of
both venues' taker fees, and the size that edge supports when both books are walked.

For a unit bought at ask ``a`` (fee ``fa``) and sold at bid ``b`` (fee ``fb``) the net edge is
``(b·(1−fb) − a·(1+fa)) / (a·(1+fa))``. Walking both books level by level, the marginal unit's
edge falls; the trade stops growing where it would drop below ``min_edge_bps`` or where a cap
(KRW on the buying venue, coin on the selling venue, max notional, inventory limit) binds.
"""

from __future__ import annotations

from dataclasses import dataclass

from karb.exchanges.ticks import floor_lot
from karb.exchanges.types import Level

MIN_ORDER_KRW = 5000.0
EPS = 1e-12


@dataclass(frozen=True)
class Caps:
    krw_buy_venue: float  # KRW free to spend on the buying venue
    coin_sell_venue: float  # coin free to sell on the selling venue
    max_notional_krw: float  # per trade
    max_volume: float = float("inf")  # e.g. inventory room on the buying venue


@dataclass(frozen=True)
class Opportunity:
    volume: float
    buy_worst: float  # deepest ask taken
    sell_worst: float  # deepest bid hit
    cost_krw: float  # Σ ask·q before fees
    proceeds_krw: float  # Σ bid·q before fees
    gross_bps: float  # top of book, before fees
    net_bps: float  # on the whole size, net of both fees
    pnl_krw: float  # expected, net of fees
    limited_by: str  # edge | krw | coin | notional | volume | depth


def edge_bps(ask: float, bid: float, fee_buy: float, fee_sell: float) -> float:
    pay = ask * (1 + fee_buy)
    return (bid * (1 - fee_sell) - pay) / pay * 1e4


def size_trade(asks: list[Level], bids: list[Level], fee_buy: float, fee_sell: float,
               min_edge_bps: float, caps: Caps) -> Opportunity | None:
    """Walk the buying venue's asks and the selling venue's bids together while the marginal
    edge stays at or above ``min_edge_bps``; None if not even the first unit qualifies."""
    if not asks or not bids or edge_bps(asks[0][0], bids[0][0], fee_buy, fee_sell) < min_edge_bps:
        return None
    i = j = 0
    ask_left, bid_left = asks[0][1], bids[0][1]
    volume = cost = proceeds = 0.0
    buy_worst = sell_worst = 0.0
    limited_by = "depth"
    while i < len(asks) and j < len(bids):
        a, b = asks[i][0], bids[j][0]
        if edge_bps(a, b, fee_buy, fee_sell) < min_edge_bps:
            limited_by = "edge"
            break
        q = min(ask_left, bid_left)
        room = {"krw": (caps.krw_buy_venue / (1 + fee_buy) - cost) / a,
                "notional": (caps.max_notional_krw - cost) / a,
                "coin": caps.coin_sell_venue - volume,
                "volume": caps.max_volume - volume}
        binding = min(room, key=room.__getitem__)
        if room[binding] <= q:
            q = max(room[binding], 0.0)
            limited_by = binding
        if q > EPS:
            volume += q
            cost += a * q
            proceeds += b * q
            buy_worst, sell_worst = a, b
        if limited_by == binding and room[binding] <= q + EPS:
            break
        ask_left -= q
        bid_left -= q
        if ask_left <= EPS:
            i += 1
            ask_left = asks[i][1] if i < len(asks) else 0.0
        if bid_left <= EPS:
            j += 1
            bid_left = bids[j][1] if j < len(bids) else 0.0
    volume = floor_lot(volume)  # never rounded up past the cap that bound it
    if volume <= 0:
        return None
    pay, get = cost * (1 + fee_buy), proceeds * (1 - fee_sell)
    return Opportunity(volume=volume, buy_worst=buy_worst, sell_worst=sell_worst, cost_krw=cost,
                       proceeds_krw=proceeds,
                       gross_bps=(bids[0][0] - asks[0][0]) / asks[0][0] * 1e4,
                       net_bps=(get - pay) / pay * 1e4, pnl_krw=get - pay, limited_by=limited_by)


def limit_prices(opp: Opportunity, fee_buy: float, fee_sell: float,
                 slippage_bps: float) -> tuple[float, float]:
    """Limit prices for the two IOC legs: the deepest levels taken, widened by the slippage
    bound but never so far that a fill at both limits would lose money."""
    slip = slippage_bps / 1e4
    while slip > 0:
        buy, sell = opp.buy_worst * (1 + slip), opp.sell_worst * (1 - slip)
        if sell * (1 - fee_sell) > buy * (1 + fee_buy):
            return buy, sell
        slip /= 2
        if slip < 1e-6:
            break
    return opp.buy_worst, opp.sell_worst
