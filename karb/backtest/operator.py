"""The backtest's operator: what a person on call does about a halt, which a week-long backtest
would otherwise carry to its end (live: the ``unhalt`` command, after a look at the journal)."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import msgspec

from karb import clock

if TYPE_CHECKING:
    from karb.backtest.run import Backtest

log = logging.getLogger("karb.backtest")
LOOK_EVERY_S = 60.0


async def unhalt_after(bt: Backtest, after_s: float) -> None:
    """Unhalts a market ``after_s`` after its halt once nothing of it is open (no intent in
    flight, none ACCEPTED or RECONCILING in the journal)."""
    while True:
        await asyncio.sleep(LOOK_EVERY_S)
        now = clock.time_ns()
        latest: dict[str, int] = {}  # market → its latest halt not lifted
        for h in bt.halts:
            if not h.unhalted_ns:
                latest[h.market] = max(latest.get(h.market, 0), h.ts_ns)
        for market, halted_ns in latest.items():
            if now - halted_ns < after_s * 1e9:
                continue
            if market not in bt.ex.halted:  # lifted some other way: close its records
                _close(bt, market, now)
                continue
            if any(intent.market == market for intent in bt.ex.open.values()):
                continue
            if bt.journal.db.execute(
                    "SELECT 1 FROM intents WHERE market=? AND state IN ('ACCEPTED', "
                    "'RECONCILING') LIMIT 1", (market,)).fetchone():
                continue
            bt.ex.halted.discard(market)
            bt.journal.unhalt(market)
            _close(bt, market, now)
            log.warning("operator: %s unhalted %.0f s after its latest halt", market,
                        (now - halted_ns) / 1e9)


def _close(bt: Backtest, market: str, now: int) -> None:
    """Every open halt record of ``market`` ends now (a market halted twice is lifted once)."""
    bt.halts[:] = [msgspec.structs.replace(h, unhalted_ns=now)
                   if h.market == market and not h.unhalted_ns else h for h in bt.halts]
