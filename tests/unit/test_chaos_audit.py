"""The money audit of tools/chaos.py on hand-made records: each detector fires on its case, and
a clean record is clean."""

from __future__ import annotations

import sys
from typing import Any

from tests.support import REPO

sys.path.insert(0, str(REPO / "tools"))

from chaos_audit import Audit, audit, percentile

PRICE = 10_000.0  # KRW per coin of KRW-XYZ
T0 = 1_700_000_000_000_000_000
START = {"upbit": {"KRW": 1_000_000.0, "XYZ": 100.0}, "bithumb": {"KRW": 1_000_000.0, "XYZ": 100.0}}


def order(cid: str | None, side: str, volume: float, t_ms: int = 0, fee: float = 5.0,
          oid: str = "") -> dict[str, Any]:
    fills = [{"trade_id": f"t-{cid}", "price": str(PRICE), "volume": str(volume),
              "funds": str(volume * PRICE), "fee": str(fee)}] if volume else []
    return {"id": oid or f"o-{cid}", "client_id": cid, "market": "KRW-XYZ", "side": side,
            "state": "done" if volume else "cancel", "executed_volume": str(volume),
            "paid_fee": str(fee if volume else 0), "created_ns": T0 + t_ms * 1_000_000,
            "fills": fills}


def leg(cid: str, venue: str, side: str, volume: float, state: str = "DONE",
        fee: float = 5.0) -> dict[str, Any]:
    return {"client_id": cid, "intent_id": cid.rsplit("-", 1)[0], "role": side, "venue": venue,
            "market": "KRW-XYZ", "side": side, "state": state, "executed_volume": volume,
            "executed_funds": volume * PRICE, "fee": fee if volume else 0.0}


def balances_after(orders: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, float]]:
    """What the venues' balances are when their own orders are all that moved them."""
    out = {v: dict(b) for v, b in START.items()}
    for venue, placed in orders.items():
        for o in placed:
            vol = sum(float(f["volume"]) for f in o["fills"])
            funds = sum(float(f["funds"]) for f in o["fills"])
            fee = sum(float(f["fee"]) for f in o["fills"])
            sign = 1 if o["side"] == "bid" else -1
            out[venue]["XYZ"] += sign * vol
            out[venue]["KRW"] -= sign * funds + fee
    return out


def run(orders: dict[str, list[dict[str, Any]]], legs: list[dict[str, Any]],
        balances: dict[str, dict[str, float]] | None = None,
        halts: list[dict[str, Any]] | None = None) -> Audit:
    intents = [{"intent_id": i, "state": "DONE"} for i in {leg["intent_id"] for leg in legs}]
    return audit(orders, balances or balances_after(orders), START, legs, intents, [],
                 halts or [], {"KRW-XYZ": PRICE}, T0 + 10**10)


def hedged_intent() -> tuple[dict[str, list[dict[str, Any]]], list[dict[str, Any]]]:
    orders = {"upbit": [order("i1-b", "bid", 1.0, 0)], "bithumb": [order("i1-s", "ask", 1.0, 3)]}
    return orders, [leg("i1-b", "upbit", "buy", 1.0), leg("i1-s", "bithumb", "sell", 1.0)]


def counts(result: Audit) -> dict[str, int]:
    return {check: len(lines) for check, lines in result.problems.items() if lines}


def test_a_hedged_intent_is_clean_and_its_exposure_is_the_gap_between_fills() -> None:
    result = run(*hedged_intent())
    assert result.clean, result.problems
    assert result.legs_by_state == {"DONE": 2} and result.intents_by_state == {"DONE": 1}
    assert result.exposure_s == [0.003]
    assert result.exposure_summary()["max"] == 0.003


def test_an_order_the_journal_does_not_know_is_lost() -> None:
    orders, legs = hedged_intent()
    orders["upbit"].append(order("i2-b", "bid", 0.0))  # unknown, even without fills
    orders["bithumb"].append(order(None, "ask", 0.0, oid="x1"))
    assert counts(run(orders, legs)) == {"LOST": 2}


def test_a_fill_behind_a_journal_not_sent_is_lost_and_leaves_the_market_unhedged() -> None:
    orders, legs = hedged_intent()
    orders["upbit"].append(order("i2-b", "bid", 1.0, 10))
    legs.append(leg("i2-b", "upbit", "buy", 0.0, state="NOT_SENT"))
    result = run(orders, legs)
    assert counts(result) == {"LOST": 1, "UNHEDGED": 1, "JOURNAL-BALANCE-MISMATCH": 2}
    assert "NOT_SENT" in result.problems["LOST"][0]
    assert result.problems["UNHEDGED"][0].startswith("KRW-XYZ +1 XYZ")
    assert len(result.open_exposure) == 1


def test_a_client_id_twice_at_a_venue_is_a_duplicate() -> None:
    orders, legs = hedged_intent()
    orders["upbit"].append(order("i1-b", "bid", 0.0, oid="second"))
    assert counts(run(orders, legs)) == {"DUPLICATES": 1}


def test_a_fill_only_the_journal_saw_is_a_phantom() -> None:
    orders, legs = hedged_intent()
    legs.append(leg("i3-s", "bithumb", "sell", 0.5))
    result = run(orders, legs)
    assert counts(result) == {"PHANTOMS": 1, "JOURNAL-BALANCE-MISMATCH": 2}


def test_a_journal_fill_that_differs_from_the_venue_is_a_mismatch() -> None:
    orders, legs = hedged_intent()
    legs[1]["executed_volume"] = 0.5
    legs[1]["fee"] = 2.5
    result = run(orders, legs)
    assert counts(result)["FILL-MISMATCH"] == 1
    assert "volume journal 0.5 venue 1" in result.problems["FILL-MISMATCH"][0]


def test_a_net_position_is_unhedged_unless_its_market_is_halted() -> None:
    orders = {"upbit": [order("i4-b", "bid", 1.0)], "bithumb": [order("i4-s", "ask", 0.0)]}
    legs = [leg("i4-b", "upbit", "buy", 1.0), leg("i4-s", "bithumb", "sell", 0.0, "CANCELLED")]
    assert counts(run(orders, legs)) == {"UNHEDGED": 1}
    halted = run(orders, legs, halts=[{"market": "KRW-XYZ", "reason": "no hedge", "ts_ns": T0}])
    assert halted.clean and halted.halts == {"KRW-XYZ": "no hedge"}
    assert halted.halted_exposure


def test_dust_under_the_venue_minimum_is_flat() -> None:
    orders = {"upbit": [order("i5-b", "bid", 1.0)], "bithumb": [order("i5-s", "ask", 0.9996, 2)]}
    legs = [leg("i5-b", "upbit", "buy", 1.0), leg("i5-s", "bithumb", "sell", 0.9996)]
    result = run(orders, legs)
    assert result.clean and result.exposure_s == [0.002]


def test_a_balance_that_its_fills_do_not_explain_is_a_mismatch() -> None:
    orders, legs = hedged_intent()
    balances = balances_after(orders)
    balances["bithumb"]["KRW"] += 2.0  # over the 1 KRW tolerance
    balances["upbit"]["XYZ"] += 5e-7  # under the coin tolerance
    result = run(orders, legs, balances)
    assert counts(result) == {"BALANCE-MISMATCH": 1, "JOURNAL-BALANCE-MISMATCH": 1}
    assert result.problems["BALANCE-MISMATCH"][0].startswith("bithumb KRW")


def test_exposure_runs_until_a_hedge_flattens_the_intent() -> None:
    orders = {"upbit": [order("i6-b", "bid", 1.0, 0), order("i6-h", "ask", 1.0, 1500)],
              "bithumb": [order("i6-s", "ask", 0.0, 1)]}
    legs = [leg("i6-b", "upbit", "buy", 1.0), leg("i6-s", "bithumb", "sell", 0.0, "REJECTED"),
            leg("i6-h", "upbit", "sell", 1.0)]
    result = run(orders, legs)
    assert result.clean, result.problems
    assert result.exposure_s == [1.5]


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0 and percentile(values, 99) == 99.0
    assert percentile([], 50) is None
