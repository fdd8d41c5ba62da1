"""Skew, the skew-aware edge threshold and transfer sizing (karb.trading.skew)."""

from __future__ import annotations

import msgspec
import pytest

from karb.config import RebalanceConfig, TargetConfig
from karb.trading import skew

V = ["upbit", "bithumb"]
CFG = RebalanceConfig(default=TargetConfig(band=0.2), krw=TargetConfig(band=0.2),
                      edge_per_band_bps=10.0, neutral_bands=0.25, budget_bps=-2.0,
                      block_at_bands=2.0)


def test_default_target_is_half_each_and_custom_targets_share_the_rest() -> None:
    assert skew.targets_for(TargetConfig(), V) == {"upbit": 0.5, "bithumb": 0.5}
    assert skew.targets_for(TargetConfig(target={"upbit": 0.7}), V) == pytest.approx(
        {"upbit": 0.7, "bithumb": 0.3})


def test_skew_counts_reservations_and_coin_in_transit() -> None:
    amounts = skew.usable({"upbit": 1.0, "bithumb": 3.0}, reserved={"bithumb": 1.0},
                          in_transit={"upbit": 1.0})
    assert amounts == {"upbit": 2.0, "bithumb": 2.0}
    s = skew.coin_skew(CFG, "BTC", amounts, V)
    assert s.skew("upbit") == pytest.approx(0.0) and not s.out_of_band


def test_out_of_band_names_heavy_and_light() -> None:
    s = skew.coin_skew(CFG, "BTC", {"upbit": 1.0, "bithumb": 4.0}, V)
    assert s.skew("bithumb") == pytest.approx(0.3) and s.out_of_band
    assert (s.heavy, s.light) == ("bithumb", "upbit")
    inside = skew.coin_skew(CFG, "BTC", {"upbit": 2.0, "bithumb": 3.0}, V)
    assert not inside.out_of_band  # 0.1 < 0.2
    empty = skew.coin_skew(CFG, "BTC", {}, V)
    assert empty.worst == 0.0 and not empty.out_of_band


def test_per_coin_band_overrides_default() -> None:
    cfg = msgspec.structs.replace(CFG, coins={"XRP": TargetConfig(band=0.05)})
    assert skew.coin_skew(cfg, "XRP", {"upbit": 1.0, "bithumb": 1.3}, V).out_of_band
    assert not skew.coin_skew(cfg, "BTC", {"upbit": 1.0, "bithumb": 1.3}, V).out_of_band


def _edge(coin: dict[str, float], krw: dict[str, float], buy: str, sell: str,
          base: float = 10.0) -> skew.EdgeAdjustment:
    return skew.edge(CFG, base, skew.coin_skew(CFG, "BTC", coin, V),
                     skew.krw_skew(CFG, krw, V), buy, sell)


def test_balanced_inventory_leaves_the_threshold_alone() -> None:
    e = _edge({"upbit": 1, "bithumb": 1}, {"upbit": 100, "bithumb": 100}, "bithumb", "upbit")
    assert (e.threshold_bps, e.rule) == (10.0, "neutral")


def test_worsening_trade_needs_more_edge_restoring_less() -> None:
    # coin heavy on bithumb (share 0.65, skew +0.15 = 0.75 band), KRW heavy on upbit likewise
    coin, krw = {"upbit": 0.35, "bithumb": 0.65}, {"upbit": 65.0, "bithumb": 35.0}
    worse = _edge(coin, krw, "bithumb", "upbit")  # buys more coin on bithumb
    assert worse.rule == "worsens" and worse.pressure == pytest.approx(0.75)
    assert worse.threshold_bps == pytest.approx(17.5)
    better = _edge(coin, krw, "upbit", "bithumb")
    assert better.rule == "restores" and better.threshold_bps == pytest.approx(2.5)


def test_restoring_threshold_stops_at_the_budget_which_may_be_negative() -> None:
    coin, krw = {"upbit": 0.1, "bithumb": 0.9}, {"upbit": 90.0, "bithumb": 10.0}
    e = _edge(coin, krw, "upbit", "bithumb", base=5.0)  # pressure -2 → 5 - 20 = -15 → floor
    assert (e.rule, e.threshold_bps) == ("budget_floor", -2.0)


def test_worsening_past_block_is_refused() -> None:
    coin, krw = {"upbit": 0.05, "bithumb": 0.95}, {"upbit": 95.0, "bithumb": 5.0}
    assert _edge(coin, krw, "bithumb", "upbit").blocked


def test_transfer_amount_returns_light_venue_to_target() -> None:
    s = skew.coin_skew(CFG, "BTC", {"upbit": 1.0, "bithumb": 5.0}, V)
    assert skew.transfer_amount(s, fee=0.001, minimum=0.01, free_at_heavy=5.0) == pytest.approx(2.0)
    # not more than the heavy venue can pay with the fee on top
    assert skew.transfer_amount(s, fee=0.5, minimum=0.01, free_at_heavy=2.0) == pytest.approx(1.5)
    # under the venue's minimum: nothing
    assert skew.transfer_amount(s, fee=0.0, minimum=3.0, free_at_heavy=5.0) == 0.0


def test_config_rejects_bad_values() -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"band": 1.5}, TargetConfig)
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"target": {"kraken": 0.5}}, TargetConfig)
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"budget_bps": -500}, RebalanceConfig)
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"bogus": 1}, RebalanceConfig)


def test_market_edges_is_the_strategys_one_call_from_pos() -> None:
    balances = {"upbit": {"KRW": 65.0, "BTC": 0.35}, "bithumb": {"KRW": 35.0, "BTC": 0.65}}
    edges = skew.market_edges(CFG, "KRW-BTC", 10.0, balances, venues=V)
    assert edges[("bithumb", "upbit")].rule == "worsens"
    assert edges[("upbit", "bithumb")].rule == "restores"
    # coin in transit to upbit already restores the coin side: milder on both
    moving = skew.market_edges(CFG, "KRW-BTC", 10.0, balances, {"BTC": {"upbit": 0.3}}, V)
    assert moving[("bithumb", "upbit")].threshold_bps < edges[("bithumb", "upbit")].threshold_bps


def test_the_decider_asks_more_edge_to_worsen_skew_and_blocks_past_the_limit() -> None:
    from karb.config import RebalanceConfig
    from karb.messages import DepthUpdate, Position
    from karb.trading.decide import Decider, StrategyParams

    class Tops:
        def top(self, venue: str, market: str) -> tuple[float, int] | None:
            from karb import clock
            return 100.0, clock.monotonic_ns()

    params = StrategyParams(min_edge_bps=10.0, max_move_bps=1e9, cooldown_ms=0, max_in_flight=99)
    decider = Decider(params, ["upbit", "bithumb"], {"upbit": 0.0, "bithumb": 0.0}, ["KRW-XRP"],
                      Tops(), rebalance=RebalanceConfig())
    # upbit 20 bps cheaper: buying on upbit and selling on bithumb is the trade
    decider.on_depth(DepthUpdate(venue="upbit", market="KRW-XRP", bids=[(99.7, 1e6)], asks=[(99.8, 1e6)]))
    decider.on_depth(DepthUpdate(venue="bithumb", market="KRW-XRP", bids=[(100.0, 1e6)], asks=[(100.1, 1e6)]))

    def decide(upbit_xrp: float, bithumb_xrp: float) -> tuple[str, float, str]:
        decider.on_position(Position(
            balances={"upbit": {"KRW": 1e8, "XRP": upbit_xrp}, "bithumb": {"KRW": 1e8, "XRP": bithumb_xrp}},
            inventory={}, pnl_krw={}, pnl_total_krw=0.0, intents_done=0, fills=0))
        sized = [s for s in decider.evaluate("KRW-XRP") if s.buy_venue == "upbit"]
        if not sized:
            return "none", 0.0, ""
        return sized[0].decision, sized[0].threshold_bps, sized[0].skew_rule

    balanced = decide(1000.0, 1000.0)
    assert balanced[1] == 10.0 and balanced[0] == "sent"
    heavy = decide(1500.0, 500.0)  # buying more on upbit worsens its coin skew
    assert heavy[1] > 10.0
    light = decide(500.0, 1500.0)  # buying on upbit restores it: less edge asked
    assert light[1] < 10.0
    assert decide(10_000.0, 0.0)[0] in ("skew_blocked", "none")
