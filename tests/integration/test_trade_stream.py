"""Public trades from the simulator's real WebSocket through karb's stream: subscribed with the
books in one request, every print of the venue arriving once, ours among them."""

from __future__ import annotations

import asyncio

import pytest

from karb.exchanges.bithumb.ws import BithumbBookProtocol
from karb.exchanges.types import OrderBook, PublicTrade
from karb.exchanges.upbit.ws import UpbitBookProtocol
from karb.exchanges.wsstream import BookStream
from tests.integration.simkit import running_sim
from tests.integration.test_clients import CLIENTS, CREDS, until

MARKETS = ["KRW-BTC", "KRW-XRP"]


@pytest.mark.parametrize("venue", ["upbit", "bithumb"])
async def test_trades_arrive_with_the_books_and_our_order_prints(venue: str) -> None:
    async with running_sim() as (server, ep):
        protocol = (UpbitBookProtocol(trades=True) if venue == "upbit"
                    else BithumbBookProtocol(trades=True))
        books: list[OrderBook] = []
        trades: list[PublicTrade] = []
        stream = BookStream(protocol, ep[venue].ws, MARKETS, books.append, on_trade=trades.append)
        task = asyncio.create_task(stream.run())
        client = CLIENTS[venue](ep[venue].rest, CREDS)
        try:
            # the market prints on its own (flow at the touch): both markets, REALTIME
            await until(lambda: {t.market for t in trades if not t.snapshot} == set(MARKETS),
                        what="realtime trades in every market")
            assert {b.market for b in books} == set(MARKETS)  # books still flow alongside
            assert stream.stats.malformed == 0 and stream.stats.trades == len(trades)
            # a SNAPSHOT (the venue's last print, if any yet) can only come first per market
            for m in MARKETS:
                assert not any(t.snapshot for t in [t for t in trades if t.market == m][1:])

            # our own crossing IOC buy prints on the venue's public stream as taker buys
            model = server.model
            before = model._trade_seq
            ask = model.book(venue, "KRW-XRP").asks[0]
            await client.place_limit_order("KRW-XRP", "buy", ask[0] * 1.0004, 5.0,
                                           f"{venue}-trade", "ioc")
            done = await client.get_order(client_id=f"{venue}-trade")
            assert done.executed_volume == pytest.approx(5.0)
            ours = {(f.price, f.volume) for f in done.fills}
            printed = [t for t in model.state[(venue, "KRW-XRP")].trades
                       if t.sequential_id > before and (t.price, t.volume) in ours]
            assert printed, "the simulator recorded our fills as trades"
            want = {t.sequential_id for t in printed}
            await until(lambda: want <= {t.seq for t in trades}, what="our prints on the stream")
            got = [t for t in trades if t.seq in want]
            assert all(t.side == "buy" and t.market == "KRW-XRP" and not t.snapshot for t in got)
            assert sum(t.volume for t in got) == pytest.approx(5.0)
            # nothing arrives twice on one connection
            seqs = [t.seq for t in trades]
            assert len(seqs) == len(set(seqs))
            assert all(t.ts_event > 10**18 and t.venue == venue for t in trades)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await client.close()
