"""The numbers execution trades within."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ExecutionLimits:
    max_notional_krw: float
    max_inventory_krw: float
    stale_after_ms: int
    hedge_loss_bps: float
    leg_timeout_ms: int
    poll_interval_ms: int
    # How long after a leg was journaled its POST may still reach the venue (the request
    # timeout plus a margin): before that, "not found" proves nothing.
    settle_ms: int = 5000
