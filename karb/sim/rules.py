"""The simulated venues' own rules, taken from ``exchanges.md`` and kept apart from karb's
clients (``karb.exchanges.ticks``) on purpose: if a client's table is wrong, the simulator
refuses its orders and a test fails, instead of both being wrong together.

- :data:`KRW_TICKS` and :func:`tick` / :func:`on_tick`: Upbit's KRW table in force since
  2025-07-31 (§1.7). The stored copy stops at the 100–5,000 KRW band; below it the bands follow
  the pattern above (the simulator publishes them in ``orderbook/instruments`` and
  ``orders/chance``). Bithumb publishes no authoritative table (§2.7: "use orders/chance
  price_unit"); the simulated Bithumb uses the same table and says so in ``price_unit``.
- :class:`Dialect` and :data:`DIALECTS`: every way one venue's wire differs from the other's,
  in one table, so handlers read ``dialect(venue).x`` instead of branching on the venue name.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

# (lower bound inclusive, tick), highest first. exchanges.md §1.7.
KRW_TICKS: tuple[tuple[float, float], ...] = (
    (1_000_000, 1000), (500_000, 500), (100_000, 100), (50_000, 50), (10_000, 10),
    (5_000, 5), (100, 1), (10, 0.1), (1, 0.01), (0.1, 0.001), (0, 0.0001),
)


def tick(price: float) -> float:
    """The KRW tick at ``price``."""
    for floor, step in KRW_TICKS:
        if price >= floor:
            return step
    return KRW_TICKS[-1][1]


def on_tick(price: Decimal) -> bool:
    step = Decimal(repr(tick(float(price))))
    return (price / step) == (price / step).to_integral_value()


_ids = itertools.count(1_799_231)


def _bithumb_id(prefix: str) -> Callable[[], str]:
    return lambda: f"{prefix}{next(_ids):015d}"


def _uuid4() -> str:
    return str(uuid.uuid4())


@dataclass(frozen=True)
class Dialect:
    """How one venue says things (sources: exchanges.md sections named per field)."""

    venue: str
    # The generic 400 for a bad parameter (§1.6 ``validation_error``; §2.6 ``invalid_parameter``).
    param_error: str
    # Under the minimum order total; ``{side}`` is bid|ask (§1.6, §2.6).
    under_min_error: str
    # A reused client id: (error name, message template with {cid}); not in any stored source
    # for Upbit (§7 last line), so the generic name with a clear message.
    dup_client_id: tuple[str, str]
    # A cancel of a final order: (name when done, name when cancelled). Upbit's ``done_order``
    # is seen in third-party client code (not in the stored docs); Bithumb documents no name for
    # it, so its documented ``order_not_ready`` at HTTP 400 ("already done"), unlike the
    # transient 422 of the same name (the ``order_not_ready`` fault).
    not_cancellable: tuple[str, str]
    # What an IOC that filled in part ends as (§2.3: Bithumb ``done``; Upbit ``cancel``).
    ioc_partial_state: str
    new_order_id: Callable[[], str]  # §2.3: Bithumb ids look like C0101000000001799231
    new_trade_id: Callable[[], str]
    # JWT: Bithumb requires a ``timestamp`` claim (§2.4).
    jwt_timestamp: bool
    # WebSocket (§1.5, §2.5): flags' spelling, default ``level``, depth cap, timestamp unit.
    ws_flags: tuple[str, str]  # (only-snapshot, only-realtime)
    ws_default_level: int
    ws_max_levels: int
    ws_ts_per_ms: int  # 1: ms; 1000: μs
    # REST book amounts print with this many decimals (§2.2: Bithumb 4).
    size_places: int
    # The 429 body (§1.6: Upbit plain text; Bithumb JSON).
    plain_text_429: bool
    # Withdrawals from travel_rule_krw need the receiver's fields in the request (§6: Bithumb;
    # Upbit's allow-listed addresses carry the data).
    travel_rule_fields: bool


DIALECTS: dict[str, Dialect] = {
    "upbit": Dialect(
        venue="upbit", param_error="validation_error", under_min_error="under_min_total_{side}",
        dup_client_id=("validation_error", "identifier {cid} is already used"),
        not_cancellable=("done_order", "validation_error"),
        ioc_partial_state="cancel", new_order_id=_uuid4, new_trade_id=_uuid4,
        jwt_timestamp=False, ws_flags=("is_only_snapshot", "is_only_realtime"),
        ws_default_level=0, ws_max_levels=30, ws_ts_per_ms=1, size_places=8,
        plain_text_429=True, travel_rule_fields=False),
    "bithumb": Dialect(
        venue="bithumb", param_error="invalid_parameter",
        under_min_error="under_price_limit_{side}",
        dup_client_id=("invalid_parameter", "client_order_id {cid} already exists"),
        not_cancellable=("order_not_ready", "order_not_ready"),
        ioc_partial_state="done", new_order_id=_bithumb_id("C0101"),
        new_trade_id=_bithumb_id("T0101"), jwt_timestamp=True,
        ws_flags=("isOnlySnapshot", "isOnlyRealtime"), ws_default_level=1, ws_max_levels=15,
        ws_ts_per_ms=1000, size_places=4, plain_text_429=False, travel_rule_fields=True),
}


def dialect(venue: str) -> Dialect:
    return DIALECTS[venue]
