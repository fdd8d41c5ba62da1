"""The money audit of ``tools/chaos.py``: what the venues say happened against what the journal
says, with no I/O (the caller fetches the venues' records and reads the journal).

Inputs are the simulator's own records (``/_sim/orders``, ``/_sim/accounts``: the truth), the
journal's rows as plain dicts (``legs``, ``intents``, ``events``, ``halts``), the balances the
run started with and a price per market. Every order on the simulated account is ours: the
simulator runs only for this run, so an order the journal does not know is a lost one.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

# A position worth less than this is flat: the venues refuse smaller orders, so the executor
# keeps such a residual as inventory (karb.trading.arb.MIN_ORDER_KRW).
MIN_ORDER_KRW = 5000.0
COIN_TOLERANCE = 1e-6
KRW_TOLERANCE = 1.0
VOLUME_TOLERANCE = 1e-8
# Journal states that mean "no order at the venue": a venue order with fills behind one is lost.
NO_ORDER_STATES = frozenset({"NOT_SENT", "UNKNOWN", "REJECTED"})
FINAL_LEG_STATES = frozenset({"DONE", "CANCELLED", "REJECTED", "NOT_SENT", "DRY_RUN"})
OPEN_INTENT_STATES = frozenset({"ACCEPTED", "RECONCILING"})

Check = Literal["LOST", "DUPLICATES", "PHANTOMS", "FILL-MISMATCH", "UNHEDGED",
                "BALANCE-MISMATCH", "JOURNAL-BALANCE-MISMATCH"]
CHECKS: tuple[Check, ...] = ("LOST", "DUPLICATES", "PHANTOMS", "FILL-MISMATCH", "UNHEDGED",
                             "BALANCE-MISMATCH", "JOURNAL-BALANCE-MISMATCH")

Balances = dict[str, dict[str, float]]  # venue → currency → total (free + locked)


@dataclass
class Audit:
    problems: dict[Check, list[str]] = field(default_factory=lambda: {c: [] for c in CHECKS})
    intents_by_state: dict[str, int] = field(default_factory=dict)
    legs_by_state: dict[str, int] = field(default_factory=dict)
    halts: dict[str, str] = field(default_factory=dict)
    halted_exposure: list[str] = field(default_factory=list)  # nets inside halted markets
    exposure_s: list[float] = field(default_factory=list)  # per intent that traded
    exposure_by_intent: dict[str, float] = field(default_factory=dict)
    open_exposure: list[str] = field(default_factory=list)  # intents never flat again

    @property
    def clean(self) -> bool:
        return not any(self.problems.values())

    def exposure_summary(self) -> dict[str, float | int | None]:
        values = sorted(self.exposure_s)
        return {"intents": len(values), "open": len(self.open_exposure),
                "p50": percentile(values, 50), "p99": percentile(values, 99),
                "max": values[-1] if values else None}

    def longest_exposures(self, count: int = 3) -> list[str]:
        worst = sorted(self.exposure_by_intent.items(), key=lambda kv: -kv[1])[:count]
        return [f"{intent}: {seconds:.3f} s" for intent, seconds in worst if seconds > 0]


def percentile(ordered: list[float], q: float) -> float | None:
    """Nearest rank on sorted values; None when there are none."""
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


def totals(accounts: dict[str, dict[str, float]]) -> dict[str, float]:
    """One account of ``/_sim/accounts`` (currency → free/locked) as currency → total."""
    return {cur: float(b.get("free", 0.0)) + float(b.get("locked", 0.0))
            for cur, b in accounts.items()}


def _fsum(values: Iterable[Any]) -> float:
    return math.fsum(float(v) for v in values)


def _order_sums(order: dict[str, Any]) -> tuple[float, float, float]:
    """(volume, funds, fee) of an order's fills."""
    fills = order.get("fills") or []
    return (_fsum(f["volume"] for f in fills), _fsum(f["funds"] for f in fills),
            _fsum(f["fee"] for f in fills))


def _close(a: float, b: float, tol: float) -> bool:
    return abs(a - b) <= max(tol, 1e-9 * max(abs(a), abs(b)))


def _moves(venue_side: str, volume: float, funds: float, fee: float, coin: str) -> dict[str, float]:
    """What a fill does to an account (fees in KRW, as on both venues' KRW markets)."""
    sign = 1.0 if venue_side in ("bid", "buy") else -1.0
    return {coin: sign * volume, "KRW": -sign * funds - fee}


def audit(orders: dict[str, list[dict[str, Any]]], balances: Balances, initial: Balances,
          legs: list[dict[str, Any]], intents: list[dict[str, Any]],
          events: list[dict[str, Any]], halts: list[dict[str, Any]],
          prices: dict[str, float], now_ns: int) -> Audit:
    """Compare the venues' records with the journal; see the module docstring."""
    out = Audit()
    out.intents_by_state = dict(Counter(str(i["state"]) for i in intents))
    out.legs_by_state = dict(Counter(str(leg["state"]) for leg in legs))
    out.halts = {str(h["market"]): str(h["reason"]) for h in halts}
    journal = {str(leg["client_id"]): leg for leg in legs}
    _check_orders(out, orders, journal)
    _check_balances(out, orders, balances, initial, legs)
    _check_nets(out, balances, initial, prices)
    _exposure(out, orders, journal, events, now_ns)
    return out


def _check_orders(out: Audit, orders: dict[str, list[dict[str, Any]]],
                  journal: dict[str, dict[str, Any]]) -> None:
    seen: set[tuple[str, str]] = set()
    for venue, placed in orders.items():
        by_cid: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for order in placed:
            if order.get("client_id"):
                by_cid[str(order["client_id"])].append(order)
            else:
                volume = _order_sums(order)[0]
                out.problems["LOST"].append(f"{venue} order {order.get('id')} without a client id "
                                            f"({order.get('market')} {order.get('side')} "
                                            f"{volume:.8g} filled)")
        for cid, same in sorted(by_cid.items()):
            seen.add((venue, cid))
            if len(same) > 1:
                out.problems["DUPLICATES"].append(f"{venue} {cid} x{len(same)}")
            sums = [_order_sums(o) for o in same]  # a duplicate's fills count for the leg too
            volume, funds, fee = (math.fsum(s[i] for s in sums) for i in range(3))
            leg = journal.get(cid)
            if leg is None or leg["venue"] != venue:
                out.problems["LOST"].append(f"{cid}: unknown to the journal ({venue} "
                                            f"{same[0].get('market')} {same[0].get('side')} "
                                            f"{volume:.8g} filled)")
                continue
            if leg["state"] in NO_ORDER_STATES and volume > 0:
                out.problems["LOST"].append(f"{cid}: journal says {leg['state']}, {venue} filled "
                                            f"{volume:.8g}")
                continue
            diffs = []
            for name, mine, theirs, tol in (("volume", leg["executed_volume"], volume, VOLUME_TOLERANCE),
                                            ("funds", leg["executed_funds"], funds, 0.01),
                                            ("fee", leg["fee"], fee, 0.01)):
                if not _close(float(mine or 0.0), theirs, tol):
                    diffs.append(f"{name} journal {float(mine or 0.0):.8g} venue {theirs:.8g}")
            if diffs:
                out.problems["FILL-MISMATCH"].append(f"{cid} ({leg['state']}): " + ", ".join(diffs))
    for cid, leg in journal.items():
        if float(leg["executed_volume"] or 0.0) > 0 and (leg["venue"], cid) not in seen:
            out.problems["PHANTOMS"].append(f"{cid}: journal {leg['state']} with "
                                            f"{float(leg['executed_volume']):.8g} filled, "
                                            f"no such order at {leg['venue']}")


def _check_balances(out: Audit, orders: dict[str, list[dict[str, Any]]], balances: Balances,
                    initial: Balances, legs: list[dict[str, Any]]) -> None:
    """Each venue's balances against its starting balances plus what moved them: the venue's
    own fills (BALANCE-MISMATCH), and the journal's (JOURNAL-BALANCE-MISMATCH)."""
    by_venue: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    by_journal: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for venue, placed in orders.items():
        for order in placed:
            coin = str(order["market"]).split("-", 1)[1]
            for cur, amount in _moves(order["side"], *_order_sums(order), coin).items():
                by_venue[venue][cur] += amount
    for leg in legs:
        coin = str(leg["market"]).split("-", 1)[1]
        moves = _moves(leg["side"], float(leg["executed_volume"] or 0.0),
                       float(leg["executed_funds"] or 0.0), float(leg["fee"] or 0.0), coin)
        for cur, amount in moves.items():
            by_journal[leg["venue"]][cur] += amount
    for check, deltas in (("BALANCE-MISMATCH", by_venue), ("JOURNAL-BALANCE-MISMATCH", by_journal)):
        for venue in sorted(set(balances) | set(initial) | set(deltas)):
            now, start, moved = balances.get(venue, {}), initial.get(venue, {}), deltas.get(venue, {})
            for cur in sorted(set(now) | set(start) | set(moved)):
                expected = start.get(cur, 0.0) + moved.get(cur, 0.0)
                tol = KRW_TOLERANCE if cur == "KRW" else COIN_TOLERANCE
                if abs(now.get(cur, 0.0) - expected) > tol:
                    out.problems[check].append(  # type: ignore[index]
                        f"{venue} {cur}: venue {now.get(cur, 0.0):.8f}, expected {expected:.8f} "
                        f"({now.get(cur, 0.0) - expected:+.8f})")


def _check_nets(out: Audit, balances: Balances, initial: Balances,
                prices: dict[str, float]) -> None:
    """Per market: the coin held across both venues against the start, at the current price."""
    for market, price in sorted(prices.items()):
        coin = market.split("-", 1)[1]
        net = math.fsum(balances.get(v, {}).get(coin, 0.0) - initial.get(v, {}).get(coin, 0.0)
                        for v in set(balances) | set(initial))
        value = abs(net) * price
        if value < MIN_ORDER_KRW:
            continue
        line = f"{market} {net:+.8g} {coin} ({value:,.0f} KRW)"
        if market in out.halts:
            out.halted_exposure.append(line)
        else:
            out.problems["UNHEDGED"].append(line)


def _exposure(out: Audit, orders: dict[str, list[dict[str, Any]]],
              journal: dict[str, dict[str, Any]], events: list[dict[str, Any]],
              now_ns: int) -> None:
    """Per intent: from its first execution at a venue until its net coin is flat again
    (worth less than the venues' minimum order). Venue fill times where the venue has them
    (a fill's ``ts_ns``, else its order's ``created_ns``: an IOC fills when placed); journal
    event times for fills only the journal knows."""
    fills: dict[str, list[tuple[int, float, float]]] = defaultdict(list)  # intent → (t, ±coin, px)
    seen: set[str] = set()
    for placed in orders.values():
        for order in placed:
            cid = str(order.get("client_id") or "")
            seen.add(cid)
            leg = journal.get(cid)
            intent = str(leg["intent_id"]) if leg else cid.rsplit("-", 1)[0]
            sign = 1.0 if order["side"] == "bid" else -1.0
            for f in order.get("fills") or []:
                t = int(f.get("ts_ns") or order.get("created_ns") or 0)
                fills[intent].append((t, sign * float(f["volume"]), float(f["price"])))
    last_event: dict[str, int] = {}
    for e in events:
        cid = str(e.get("client_id") or "")
        if cid:
            last_event[cid] = max(last_event.get(cid, 0), int(e["ts_ns"]))
    for cid, leg in journal.items():
        volume = float(leg["executed_volume"] or 0.0)
        if volume > 0 and cid not in seen and cid in last_event:
            sign = 1.0 if leg["side"] in ("buy", "bid") else -1.0
            fills[str(leg["intent_id"])].append(
                (last_event[cid], sign * volume, float(leg["executed_funds"] or 0.0) / volume))
    for intent, rows in fills.items():
        rows.sort()
        start, net, flat_at, flat = rows[0][0], 0.0, rows[0][0], True
        for t, amount, price in rows:
            net += amount
            now_flat = abs(net) * price < MIN_ORDER_KRW
            if now_flat and not flat:
                flat_at = t
            flat = now_flat
        if flat:
            out.exposure_s.append((flat_at - start) / 1e9)
            out.exposure_by_intent[intent] = (flat_at - start) / 1e9
        else:
            out.open_exposure.append(f"{intent}: {net:+.8g} open for {(now_ns - start) / 1e9:.1f} s")
