"""The numbers execution trades within."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ExecutionLimits:
    max_notional_krw: float
    max_inventory_krw: float
    stale_after_ms: int
    hedge_loss_bps: float
    leg_timeout_ms: int  # an open order is cancelled after this
    poll_interval_ms: int
    # After the last request for a client id gave up, how long "not found" still proves
    # nothing (a POST held in front of the venue's matching engine lands late). Measured: see
    # tools/chaos.py (late landings after give-up) and the issue note.
    settle_ms: int = 1000
    # Every leg of an intent is final — or UNKNOWN and its market halted — by this deadline.
    leg_deadline_ms: int = 15_000
    max_notional_btc: float | None = None  # launch cap in BTC, at the live KRW-BTC ask
    hedge_attempts: int = 4  # hedge orders per settlement before the market is halted
    hedge_retry_ms: int = 250  # pause before hedge attempt k: (k - 1) times this
    # Balance reconciliation: venue vs journal differences under this (KRW, coin valued at the
    # live price) are rounding; above it, new trading stops until acknowledged.
    balance_tolerance_krw: float = 100.0
    # While a venue's private stream is connected, a follower waits this long for the order's
    # final update before it reads the order by REST once (and then waits again): the stream
    # is the fast path, REST the safety net for a stalled stream or a missed update.
    stream_wait_ms: int = 250
