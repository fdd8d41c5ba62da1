"""The backtest's parameters, read from a config as the live actors read theirs."""

from __future__ import annotations

from typing import TypeVar

import msgspec

from karb.actors.execution import ExecutionParams
from karb.config import Config, SimConfig, convert_params
from karb.trading.decide import StrategyParams
from karb.trading.limits import ExecutionLimits


P = TypeVar("P", bound=msgspec.Struct)


def actor_params(cfg: Config, kind: str, params: type[P]) -> P:
    """The params of the config's first actor of ``kind`` (as that actor reads them), or the
    defaults when the config has none."""
    for i, spec in enumerate(cfg.actors):
        if spec.kind == kind:
            return convert_params(spec, params, i)
    return params()


def strategy_params(cfg: Config) -> StrategyParams:
    return actor_params(cfg, "strategy", StrategyParams)


def execution_params(cfg: Config) -> ExecutionParams:
    return actor_params(cfg, "execution", ExecutionParams)


def limits_of(p: ExecutionParams) -> ExecutionLimits:
    return ExecutionLimits(p.max_notional_krw, p.max_inventory_krw, p.stale_after_ms,
                           p.hedge_loss_bps, p.leg_timeout_ms, p.poll_interval_ms,
                           settle_ms=p.settle_ms, leg_deadline_ms=p.leg_deadline_ms,
                           max_notional_btc=p.max_notional_btc, hedge_attempts=p.hedge_attempts,
                           hedge_retry_ms=p.hedge_retry_ms,
                           balance_tolerance_krw=p.balance_tolerance_krw)


def hot_threshold_bps(sim: SimConfig, sp: StrategyParams, fees: dict[str, float]) -> float:
    """The mid gap below which no book can show a gap to us or to a competitor: the smaller of
    the competitors' gross threshold and our edge plus both fees, less both half-spreads (each
    at least 0.5 bps) and a 1 bps margin for ticks."""
    ours = sp.min_edge_bps + sum(fees.values()) * 1e4
    theirs = sim.competitors.min_edge_bps if sim.competitors.count else ours
    return max(0.0, min(ours, theirs) - 1.0)
