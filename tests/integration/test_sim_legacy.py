"""Bithumb's legacy v1.2.0 API: wrapped public REST, HMAC-signed private calls, pubwss deltas."""

from __future__ import annotations

import json
import time
from urllib.parse import urlencode

import aiohttp

from tests.integration.simkit import legacy_headers, running_sim


async def post(s: aiohttp.ClientSession, base: str, endpoint: str, params: dict[str, str],
               **kw: str) -> dict:
    body = urlencode({"endpoint": endpoint, **params})
    r = await s.post(base + endpoint, data=body, headers=legacy_headers(endpoint, body, **kw))
    assert r.status == 200
    return await r.json()


async def test_legacy_public_and_private_round_trip() -> None:
    async with running_sim(rate_limits={"enabled": False}) as (server, ep), aiohttp.ClientSession() as s:
        base = ep["bithumb"].rest
        book = await (await s.get(f"{base}/public/orderbook/BTC_KRW?count=5")).json()
        assert book["status"] == "0000" and len(book["data"]["bids"]) == 5
        assert isinstance(book["data"]["bids"][0]["price"], str)
        tick = await (await s.get(f"{base}/public/ticker/ALL_KRW")).json()
        assert {"BTC", "ETH", "XRP", "date"} <= set(tick["data"])
        assert (await (await s.get(f"{base}/public/ticker/NOPE_KRW")).json())["status"] == "5500"

        bal = await post(s, base, "/info/balance", {"currency": "ALL"})
        assert bal["data"]["available_krw"] == "50000000"
        price = str(int(server.model.book("bithumb", "KRW-BTC").best_bid() - 500_000))
        placed = await post(s, base, "/trade/place", {"order_currency": "BTC", "payment_currency": "KRW",
                                                      "units": "0.001", "price": price, "type": "bid"})
        assert placed["status"] == "0000" and placed["order_id"].startswith("C0101")
        ident = {"order_id": placed["order_id"], "order_currency": "BTC", "payment_currency": "KRW"}
        detail = await post(s, base, "/info/order_detail", ident)
        assert detail["data"]["order_status"] == "Pending"
        listed = await post(s, base, "/info/orders", {"order_currency": "BTC", "payment_currency": "KRW"})
        assert [o["order_id"] for o in listed["data"]] == [placed["order_id"]]
        assert (await post(s, base, "/trade/cancel", {**ident, "type": "bid"}))["status"] == "0000"
        assert (await post(s, base, "/info/order_detail", ident))["data"]["order_status"] == "Cancel"
        none = await post(s, base, "/info/orders", {"order_currency": "BTC", "payment_currency": "KRW"})
        assert none == {"status": "5600", "message": "거래 진행중인 내역이 존재하지 않습니다."}


async def test_legacy_signature_key_and_clock_are_checked() -> None:
    async with running_sim() as (_, ep), aiohttp.ClientSession() as s:
        base = ep["bithumb"].rest
        assert (await post(s, base, "/info/balance", {}, access="nobody"))["status"] == "5300"
        assert (await post(s, base, "/info/balance", {}, secret="wrong")) == {
            "status": "5100", "message": "Bad Request.(Auth Data)"}
        stale = str(int(time.time() * 1000) - 60_000)
        assert (await post(s, base, "/info/balance", {}, nonce=stale))["status"] == "5100"


async def test_pubwss_deltas_applied_to_a_snapshot_reproduce_the_book() -> None:
    async with running_sim() as (_, ep), aiohttp.ClientSession() as s:
        url = ep["bithumb"].rest.replace("http", "ws") + "/pub/ws"
        async with s.ws_connect(url) as ws:
            assert json.loads((await ws.receive(timeout=5)).data)["resmsg"] == "Connected Successfully"
            for kind in ("orderbooksnapshot", "orderbookdepth"):
                await ws.send_str(json.dumps({"type": kind, "symbols": ["XRP_KRW"]}))
                assert json.loads((await ws.receive(timeout=5)).data)["status"] == "0000"
            # Per step the server sends the snapshot of that step, then that step's delta.
            book: dict[tuple[str, float], float] | None = None
            pending: dict[tuple[str, float], float] | None = None
            checked = 0
            deadline = time.monotonic() + 10
            while checked < 5 and time.monotonic() < deadline:
                msg = json.loads((await ws.receive(timeout=5)).data)
                if msg["type"] == "orderbooksnapshot":
                    c = msg["content"]
                    snap = {("ask", float(p)): float(q) for p, q in c["asks"]}
                    snap.update({("bid", float(p)): float(q) for p, q in c["bids"]})
                    if book is None:
                        book, skip = snap, True  # this step's delta is already in it
                    else:
                        pending = snap
                    continue
                assert isinstance(msg["content"]["datetime"], int)
                if book is None:
                    continue
                if skip:
                    skip = False
                    continue
                for d in msg["content"]["list"]:
                    key = (d["orderType"], float(d["price"]))
                    if float(d["quantity"]) == 0:
                        book.pop(key, None)
                    else:
                        book[key] = float(d["quantity"])
                if pending is not None:
                    assert book == pending
                    pending = None
                    checked += 1
            assert checked == 5
            await ws.send_str('{"type": "bogus", "symbols": ["XRP_KRW"]}')
            while True:
                msg = json.loads((await ws.receive(timeout=5)).data)
                if "status" in msg:
                    assert msg == {"status": "5100", "resmsg": "Invalid Filter Syntax"}
                    break
