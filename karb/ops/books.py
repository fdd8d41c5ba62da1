"""Every market's books from shared memory, with the net edge in both directions: what the page
streams and ``/metrics`` exports (read at the moment they are asked for, never cached)."""

from __future__ import annotations

import time
from typing import Any

from karb.config import Config
from karb.shm import CROSSED, STALE, VALID, TopOfBookTable


def net_edge_bps(ask_buy: float, bid_sell: float, fee_buy: float, fee_sell: float) -> float:
    """What buying at ``ask_buy`` and selling at ``bid_sell`` earns per KRW spent, in bps, after
    both venues' taker fees (negative: no trade)."""
    cost = ask_buy * (1 + fee_buy)
    return (bid_sell * (1 - fee_sell) - cost) / cost * 1e4


def flag_name(flags: int) -> str:
    if flags == VALID:
        return "valid"
    if flags & STALE:
        return "stale"
    if flags & CROSSED:
        return "crossed"
    return "empty"


class BookReader:
    def __init__(self, config: Config, table: TopOfBookTable) -> None:
        self.table = table
        self.venues = [v.name for v in config.venues]
        self.fees: dict[str, float] = {v.name: v.fee for v in config.venues}
        self.markets = list(config.markets)

    def snapshot(self) -> list[dict[str, Any]]:
        """One entry per market: each venue's top (with its slot's ``seq`` and ``ts_init``) and
        the net edge per direction ``"<buy venue>><sell venue>"``."""
        now_ns = time.time_ns()
        out = []
        n_markets = len(self.markets)
        for mi, market in enumerate(self.markets):
            tops: dict[str, dict[str, Any]] = {}
            for vi, venue in enumerate(self.venues):
                top = self.table.read(vi * n_markets + mi)
                if top is None or top.seq == 0:
                    continue
                tops[venue] = {"bid": top.bid_px, "bid_size": top.bid_size, "ask": top.ask_px,
                               "ask_size": top.ask_size, "seq": top.seq,
                               "ts_ms": top.ts_init / 1e6,
                               "age_s": max(0.0, (now_ns - top.ts_init) / 1e9) if top.ts_init else None,
                               "state": flag_name(top.flags)}
            edges: dict[str, float] = {}
            for buy, b in tops.items():
                for sell, s in tops.items():
                    if buy != sell and b["state"] == s["state"] == "valid" and b["ask"] > 0:
                        edges[f"{buy}>{sell}"] = round(
                            net_edge_bps(b["ask"], s["bid"], self.fees[buy], self.fees[sell]), 2)
            out.append({"market": market, "venues": tops, "edges": edges})
        return out
