"""Order paths that meet the venue's slower side: an order POST that reaches the matching
engine late (``delay_execution``), a lookup or cancel refused while an order is "not ready"
(Bithumb's 422), and a cancel that loses the race with a fill (``cancel_race``).

Every order POST handler and every cancel goes through here, so the faults in
:mod:`karb.sim.faults` act the same on Upbit ``/v1``, Bithumb ``/v1`` ``/v2`` and legacy.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiohttp import web

from karb.sim.engine import Account, Order, VenueError
from karb.sim.venue import VenueState, error_json

# Carries an order out and renders the venue's answer; ``True`` when its client id was already
# reserved at receipt (a delayed order must not trip over its own reservation).
Execute = Callable[[bool], web.Response]


async def place(state: VenueState, account: Account, client_id: str | None,
                execute: Execute) -> web.Response:
    """Carry out an order POST whose body was read and authenticated in full already.

    Under ``delay_execution`` the client id is reserved now, at receipt, as a venue's gateway
    does: a resend of the same id while the first is still on its way is refused as a reused
    id (so "reused id" means "it exists, look it up", even before a lookup can find it). The
    order reaches the engine ``ms`` later in a task the venue state owns, whatever the client
    does meanwhile; the answer is a 504 at once, or ("hold") the real answer once carried out.
    """
    faults = state.faults
    if faults.delay_next <= 0:
        return execute(False)
    faults.delay_next -= 1
    if client_id is not None:
        state.exchange.reserve_client_id(account, client_id)
    delay_s, answer = faults.delay_ms / 1000, faults.delay_answer

    async def later() -> web.Response:
        await asyncio.sleep(delay_s)
        return execute(True)

    task = state.spawn(later())
    if answer == "504":
        return error_json(504, "gateway_timeout",
                          "simulated: the order is on its way to the engine, answer lost")
    # shield: a cancelled handler must not cancel the order's execution.
    return await asyncio.shield(task)


def check_ready(state: VenueState) -> None:
    """Bithumb's 422 ``order_not_ready`` (the ``order_not_ready`` fault): the order exists but
    cannot be looked up or cancelled yet. Transient: ask again."""
    if state.faults.not_ready_next > 0:
        state.faults.not_ready_next -= 1
        raise VenueError(422, "order_not_ready", "주문이 아직 처리 중입니다. (order is not ready)")


def cancel(state: VenueState, account: Account, order: Order) -> Order:
    """Cancel ``order``; under ``cancel_race`` it fills completely first and the cancel is
    refused as the venue refuses a cancel of a done order."""
    if state.faults.cancel_race_next > 0 and order.state == "wait":
        state.faults.cancel_race_next -= 1
        state.exchange.fill_now(order)
    return state.exchange.cancel(account, order)
