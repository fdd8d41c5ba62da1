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
        for i, h in enumerate(bt.halts):
            if h.unhalted_ns or now - h.ts_ns < after_s * 1e9 or h.market not in bt.ex.halted:
                continue
            if any(intent.market == h.market for intent in bt.ex.open.values()):
                continue
            if bt.journal.db.execute(
                    "SELECT 1 FROM intents WHERE market=? AND state IN ('ACCEPTED', "
                    "'RECONCILING') LIMIT 1", (h.market,)).fetchone():
                continue
            bt.ex.halted.discard(h.market)
            bt.journal.unhalt(h.market)
            bt.halts[i] = msgspec.structs.replace(h, unhalted_ns=now)
            log.warning("operator: %s unhalted %.0f s after its halt", h.market,
                        (now - h.ts_ns) / 1e9)
