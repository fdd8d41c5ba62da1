"""The private-stream book (karb.execution.stream_book) and legs followed by it: updates that
arrive before the POST's answer are buffered, a follower waits with a timeout, a final update
whose fills add up journals the leg without a REST poll — and REST takes over while the stream
is down, silent, or its fills do not add up. The recovery rules are untouched (the stream is
never asked about a client id)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from karb.exchanges.private_stream import OrderUpdate, StreamFill
from karb.exchanges.types import Order, OrderState
from karb.execution.stream_book import StreamBook
from karb.trading.orders import LegState
from tests.unit.execution_kit import Kit, intent, make_kit, trade
from tests.unit.stub_venue import Post

ID = "i" + "a" * 20


def update(order_id: str, state: OrderState, executed: float = 0.0, funds: float = 0.0,
           fill: StreamFill | None = None, client_id: str | None = "c-1") -> OrderUpdate:
    venue_state = {OrderState.OPEN: "trade" if fill else "wait", OrderState.DONE: "done",
                   OrderState.CANCELLED: "cancel"}[state]
    now = time.time_ns()
    return OrderUpdate("upbit", order_id, client_id, "KRW-ETH", "buy", "limit", state,
                       venue_state, 100_000.0, 0.2, 0.0, executed, funds, funds * 0.0005, fill,
                       now, now)


def fill(trade_id: str, volume: float, price: float = 100_000.0) -> StreamFill:
    return StreamFill(trade_id, price, volume, price * volume, price * volume * 0.0005, False,
                      time.time_ns())


def feed(book: StreamBook, order: Order, skip_fills: bool = False) -> None:
    """What a venue's myOrder says of an order the stub just created: one trade event per fill,
    then the final state."""
    executed = funds = 0.0
    for f in order.fills:
        executed += f.volume
        funds += f.funds
        if not skip_fills:
            book.on_update(update(order.order_id, OrderState.OPEN, executed, funds,
                                  fill(f.trade_id, f.volume, f.price), order.client_id))
    book.on_update(update(order.order_id, order.state, order.executed_volume,
                          order.executed_funds, None, order.client_id))


def final_events(kit: Kit, client_id: str) -> list[dict[str, object]]:
    rows = kit.journal.db.execute("SELECT detail FROM events WHERE client_id=? AND kind='final'",
                                  (client_id,))
    return [json.loads(detail) for (detail,) in rows]


def streamed_kit(tmp: Path, live: bool = True, skip_fills: bool = False,
                 silent: bool = False) -> tuple[Kit, StreamBook]:
    """Both venues answer POSTs like Bithumb's v2 (order id only); Upbit's legs are followed by
    a stream book that hears every order before the POST is answered (unless ``silent``)."""
    kit = make_kit(tmp)
    book = StreamBook("upbit")
    if live:
        book.connected.set()
    for venue in (kit.upbit, kit.bithumb):
        venue.answer = "accepted"
    if not silent:
        kit.upbit.on_order = lambda order: feed(book, order, skip_fills)
    kit.ex.legs.streams = {"upbit": book}
    return kit, book


# -- the book -------------------------------------------------------------------------------------

async def test_an_update_before_the_answer_is_buffered_and_found() -> None:
    book = StreamBook("upbit")
    book.on_update(update("o-1", OrderState.OPEN, 0.1, 10_000.0, fill("t-1", 0.1)))
    book.on_update(update("o-1", OrderState.DONE, 0.1, 10_000.0))
    got = await book.wait_final("o-1", None, 0.0)  # no wait needed: it came first
    assert got is not None and got.state is OrderState.DONE
    assert book.latest(client_id="c-1") is got
    order = book.order("o-1")
    assert order is not None and order.executed_volume == 0.1 and order.complete
    assert [(f.trade_id, f.volume) for f in order.fills] == [("t-1", 0.1)]


async def test_a_follower_waits_with_a_timeout_and_wakes_on_the_final_update() -> None:
    book = StreamBook("upbit")
    started = time.monotonic()
    assert await book.wait_final("o-1", "c-1", 0.05) is None
    assert 0.04 <= time.monotonic() - started < 0.5
    loop = asyncio.get_running_loop()
    loop.call_later(0.02, book.on_update, update("o-1", OrderState.OPEN))  # not final: waits on
    loop.call_later(0.04, book.on_update, update("o-1", OrderState.CANCELLED))
    got = await book.wait_final(None, "c-1", 2.0)  # by client id: the order id comes later
    assert got is not None and got.state is OrderState.CANCELLED
    assert not book._waiters  # nothing left behind


def test_fills_that_do_not_add_up_mean_read_rest() -> None:
    book = StreamBook("upbit")
    book.on_update(update("o-1", OrderState.OPEN, 0.1, 10_000.0, fill("t-1", 0.1)))
    book.on_update(update("o-1", OrderState.OPEN, 0.1, 10_000.0, fill("t-1", 0.1)))  # a replay
    # a second trade of 0.1 was missed: the final totals say 0.2
    book.on_update(update("o-1", OrderState.DONE, 0.2, 20_000.0))
    assert book.order("o-1") is None
    assert len(book.fills("o-1")) == 1
    # a final state is never undone by a late non-final duplicate
    book.on_update(update("o-1", OrderState.OPEN, 0.1, 10_000.0))
    latest = book.latest("o-1")
    assert latest is not None and latest.state is OrderState.DONE


def test_the_book_is_bounded() -> None:
    book = StreamBook("upbit", keep=3)
    for i in range(5):
        book.on_update(update(f"o-{i}", OrderState.DONE, client_id=f"c-{i}"))
    assert book.latest("o-0") is None and book.latest(client_id="c-1") is None
    assert book.latest("o-4") is not None and book.stats.evicted == 2
    old = StreamBook("upbit", ttl_s=0.0)
    old.on_update(update("o-1", OrderState.DONE))
    old.on_update(update("o-2", OrderState.DONE))
    assert old.latest("o-1") is None


# -- legs followed by the stream ------------------------------------------------------------------

async def test_a_final_stream_update_journals_the_leg_without_a_rest_poll(tmp_path: Path) -> None:
    kit, _ = streamed_kit(tmp_path)
    await trade(kit, intent())
    buy = kit.journal.leg(ID + "-b")
    assert buy is not None and buy.state == LegState.DONE and buy.executed_volume == 0.1
    assert buy.executed_funds == pytest.approx(10_000.0) and buy.fee == pytest.approx(5.0)
    assert [c for c in kit.upbit.calls if c.startswith("get")] == []  # no REST poll at all
    assert final_events(kit, ID + "-b")[0]["source"] == "stream"
    # the venue without a stream was polled, as before
    assert final_events(kit, ID + "-s")[0]["source"] == "rest"
    assert any(c.startswith("get") for c in kit.bithumb.calls)
    assert kit.net_coin() == 0 and kit.journal.intent_state(ID) == ("DONE", "")


async def test_while_the_stream_is_down_the_leg_is_polled(tmp_path: Path) -> None:
    kit, _ = streamed_kit(tmp_path, live=False)
    await trade(kit, intent())
    assert any(c.startswith("get") for c in kit.upbit.calls)
    assert final_events(kit, ID + "-b")[0]["source"] == "rest"
    assert kit.journal.intent_state(ID) == ("DONE", "")


async def test_a_silent_stream_falls_back_to_rest_after_the_short_wait(tmp_path: Path) -> None:
    kit, _ = streamed_kit(tmp_path, silent=True)  # connected, but no frame comes (a stall)
    started = time.monotonic()
    await trade(kit, intent())
    assert time.monotonic() - started < kit.ex.limits.stream_wait_ms / 1000 + 1.0
    assert final_events(kit, ID + "-b")[0]["source"] == "rest"
    assert kit.journal.intent_state(ID) == ("DONE", "")


async def test_stream_fills_that_do_not_add_up_are_read_by_rest_once(tmp_path: Path) -> None:
    kit, _ = streamed_kit(tmp_path, skip_fills=True)  # trade events missed (a reconnect)
    await trade(kit, intent())
    assert [c for c in kit.upbit.calls if c.startswith("get")] == ["get upbit-0"]
    final = final_events(kit, ID + "-b")[0]
    assert final["source"] == "rest" and final["executed"] == 0.1
    assert kit.journal.intent_state(ID) == ("DONE", "")


async def test_an_unanswered_post_is_still_resolved_by_client_id_over_rest(tmp_path: Path) -> None:
    kit, _ = streamed_kit(tmp_path)
    kit.upbit.posts.append(Post("timeout_lands", land_after_s=0.05))
    await trade(kit, intent())
    buy = kit.journal.leg(ID + "-b")
    assert buy is not None and buy.state == LegState.DONE
    assert f"get {ID}-b" in kit.upbit.calls  # resolve asks REST by client id, as before
    assert kit.upbit.calls.count(f"post {ID}-b") == 1
    assert kit.net_coin() == 0 and not kit.ex.halted
