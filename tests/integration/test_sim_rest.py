"""The simulator's REST APIs over real HTTP: shapes, orders, auth and rate limits."""

from __future__ import annotations

import time
import uuid

import aiohttp
import pytest

from tests.integration.simkit import (private_get, private_post, query_string,
                                      running_sim, token)


async def test_upbit_quotation_endpoints() -> None:
    async with running_sim(rate_limits={"enabled": False}) as (_, ep), aiohttp.ClientSession() as s:
        base = ep["upbit"].rest
        markets = await (await s.get(f"{base}/v1/market/all?is_details=true")).json()
        assert {m["market"] for m in markets} == {"KRW-BTC", "KRW-ETH", "KRW-XRP"}
        assert "market_event" in markets[0] and "korean_name" in markets[0]
        ticker = await (await s.get(f"{base}/v1/ticker?markets=KRW-BTC,KRW-XRP")).json()
        assert [t["market"] for t in ticker] == ["KRW-BTC", "KRW-XRP"]
        assert isinstance(ticker[0]["trade_price"], float | int)
        book = (await (await s.get(f"{base}/v1/orderbook?markets=KRW-BTC&count=5")).json())[0]
        assert len(book["orderbook_units"]) == 5
        assert book["orderbook_units"][0]["ask_price"] > book["orderbook_units"][0]["bid_price"]
        assert book["timestamp"] % 100 == 0  # a 100 ms grid, as Upbit's
        inst = await (await s.get(f"{base}/v1/orderbook/instruments?markets=KRW-BTC")).json()
        assert inst[0]["tick_size"] == "1000"
        missing = await s.get(f"{base}/v1/ticker?markets=KRW-NOPE")
        assert missing.status == 404
        assert (await missing.json())["error"] == {"name": 404, "message": "Code not found"}


async def test_upbit_order_lifecycle_with_identifier() -> None:
    async with running_sim(rate_limits={"enabled": False}) as (server, ep), aiohttp.ClientSession() as s:
        base = ep["upbit"].rest
        best_bid = server.model.book("upbit", "KRW-BTC").best_bid()
        price = str(int(best_bid - 200_000))
        ident = f"t-{uuid.uuid4()}"
        body = {"market": "KRW-BTC", "side": "bid", "volume": "0.001", "price": price,
                "ord_type": "limit", "identifier": ident}
        resp = await private_post(s, base, "/v1/orders", body)
        assert resp.status == 201, await resp.text()
        order = await resp.json()
        assert order["state"] == "wait" and order["identifier"] == ident
        assert order["created_at"].endswith("+09:00") and isinstance(order["locked"], str)
        got = await (await private_get(s, base, "/v1/order", [("identifier", ident)])).json()
        assert got["uuid"] == order["uuid"] and got["trades"] == []
        opened = await (await private_get(s, base, "/v1/orders/open", [("market", "KRW-BTC")])).json()
        assert [o["uuid"] for o in opened] == [order["uuid"]]
        cancel = await private_get(s, base, "/v1/order", [("uuid", order["uuid"])], method="DELETE")
        assert cancel.status == 200 and (await cancel.json())["state"] == "wait"
        got = await (await private_get(s, base, "/v1/order", [("uuid", order["uuid"])])).json()
        assert got["state"] == "cancel"
        closed = await (await private_get(s, base, "/v1/orders/closed",
                                          [("market", "KRW-BTC"), ("states[]", "done"),
                                           ("states[]", "cancel")])).json()
        assert order["uuid"] in [o["uuid"] for o in closed]
        by_id = await (await private_get(s, base, "/v1/orders/uuids",
                                         [("identifiers[]", ident)])).json()
        assert by_id[0]["uuid"] == order["uuid"]
        again = await private_post(s, base, "/v1/orders", body)
        assert again.status == 400 and "identifier" in (await again.json())["error"]["message"]


async def test_upbit_ioc_taker_fills_and_balances_move() -> None:
    async with running_sim(rate_limits={"enabled": False}) as (server, ep), aiohttp.ClientSession() as s:
        base = ep["upbit"].rest
        before = {a["currency"]: a for a in await (await private_get(s, base, "/v1/accounts")).json()}
        ask = server.model.book("upbit", "KRW-XRP").best_ask()
        body = {"market": "KRW-XRP", "side": "bid", "volume": "10", "price": str(int(ask)),
                "ord_type": "limit", "time_in_force": "ioc"}
        order = await (await private_post(s, base, "/v1/orders", body)).json()
        done = await (await private_get(s, base, "/v1/order", [("uuid", order["uuid"])])).json()
        assert done["state"] in ("done", "cancel") and float(done["executed_volume"]) > 0
        after = {a["currency"]: a for a in await (await private_get(s, base, "/v1/accounts")).json()}
        spent = float(before["KRW"]["balance"]) - float(after["KRW"]["balance"])
        funds = sum(float(t["funds"]) for t in done["trades"])
        assert spent == pytest.approx(funds + float(done["paid_fee"]), rel=1e-9)
        assert float(done["paid_fee"]) == pytest.approx(funds * 0.0005, rel=1e-9)


async def test_upbit_auth_is_checked_as_the_venue_checks_it() -> None:
    async with running_sim(rate_limits={"enabled": False}) as (_, ep), aiohttp.ClientSession() as s:
        url = f"{ep['upbit'].rest}/v1/orders/chance?market=KRW-BTC"
        q = "market=KRW-BTC"

        async def status_and_name(authorization: str, target: str = url) -> tuple[int, str]:
            r = await s.get(target, headers={"Authorization": authorization})
            return r.status, (await r.json()).get("error", {}).get("name", "") if r.status != 200 else ""

        assert await status_and_name(token(q)) == (200, "")
        assert await status_and_name(token(q, alg="HS512")) == (200, "")
        assert await status_and_name(token(q, access="nobody")) == (401, "invalid_access_key")
        assert await status_and_name(token(q, secret="wrong")) == (401, "jwt_verification")
        assert await status_and_name(token("market=KRW-ETH")) == (401, "invalid_query_payload")
        assert await status_and_name(token(None)) == (401, "invalid_query_payload")
        reused = token(q, nonce="fixed-nonce")
        assert await status_and_name(reused) == (200, "")
        assert await status_and_name(reused) == (401, "nonce_used")
        replayed = token(q)  # a token made for one query, sent with another
        other = f"{ep['upbit'].rest}/v1/orders/chance?market=KRW-ETH"
        assert await status_and_name(replayed, other) == (401, "invalid_query_payload")
        # The hash is over the query as received, in the order received.
        params = [("market", "KRW-BTC"), ("states[]", "wait"), ("states[]", "watch")]
        r = await private_get(s, ep["upbit"].rest, "/v1/orders/open", params)
        assert r.status == 200
        swapped = token(query_string([params[1], params[2], params[0]]))
        r = await s.get(f"{ep['upbit'].rest}/v1/orders/open?market=KRW-BTC&states[]=wait&states[]=watch",
                        headers={"Authorization": swapped})
        assert r.status == 401


async def test_bithumb_jwt_needs_a_fresh_timestamp() -> None:
    async with running_sim(rate_limits={"enabled": False}) as (_, ep), aiohttp.ClientSession() as s:
        base = ep["bithumb"].rest
        assert (await private_get(s, base, "/v1/accounts", venue="bithumb")).status == 200
        no_ts = await s.get(f"{base}/v1/accounts", headers={"Authorization": token(None, "upbit")})
        assert no_ts.status == 401 and (await no_ts.json())["error"]["name"] == "invalid_query_payload"
        old = await private_get(s, base, "/v1/accounts", venue="bithumb",
                                timestamp=int(time.time() * 1000) - 120_000)
        assert old.status == 401 and (await old.json())["error"]["name"] == "expired_jwt"


async def test_bithumb_v1_v2_orders_and_public_quirks() -> None:
    async with running_sim(rate_limits={"enabled": False}) as (server, ep), aiohttp.ClientSession() as s:
        base = ep["bithumb"].rest
        one = await (await s.get(f"{base}/v1/orderbook?markets=KRW-BTC")).json()
        several = await (await s.get(f"{base}/v1/orderbook?markets=KRW-BTC,KRW-ETH")).json()
        assert len(one[0]["orderbook_units"]) == 30 and len(several[0]["orderbook_units"]) == 15
        unknown = await s.get(f"{base}/v1/ticker?markets=KRW-NOPE")
        assert unknown.status == 200 and (await unknown.json())["error"]["name"] == 404
        details = await (await s.get(f"{base}/v1/market/all?isDetails=true")).json()
        assert details[0]["market_warning"] == "NONE"
        chance = await (await private_get(s, base, "/v1/orders/chance", [("market", "KRW-BTC")],
                                          venue="bithumb")).json()
        assert chance["market"]["bid"]["price_unit"] == "1000" and chance["bid_fee"] == "0.0004"
        price = str(int(server.model.book("bithumb", "KRW-BTC").best_bid() - 300_000))
        body = {"market": "KRW-BTC", "side": "bid", "volume": "0.001", "price": price,
                "order_type": "limit", "client_order_id": "k-1"}
        created = await private_post(s, base, "/v2/orders", body, venue="bithumb")
        assert created.status == 201, await created.text()
        v2 = await created.json()
        assert v2["order_id"].startswith("C0101") and v2["client_order_id"] == "k-1"
        got = await (await private_get(s, base, "/v1/order", [("client_order_id", "k-1")],
                                       venue="bithumb")).json()
        assert got["uuid"] == v2["order_id"] and got["state"] == "wait"
        listed = await (await private_get(s, base, "/v1/orders", [("market", "KRW-BTC"),
                                                                 ("state", "wait")],
                                          venue="bithumb")).json()
        assert [o["uuid"] for o in listed] == [v2["order_id"]]
        cancelled = await private_get(s, base, "/v2/order", [("client_order_id", "k-1")],
                                      venue="bithumb", method="DELETE")
        assert (await cancelled.json())["order_id"] == v2["order_id"]
        bad_id = dict(body, client_order_id="no spaces allowed")
        r = await private_post(s, base, "/v2/orders", bad_id, venue="bithumb")
        assert r.status == 400 and (await r.json())["error"]["name"] == "invalid_parameter"


async def test_upbit_rate_limits_remaining_req_429_then_418() -> None:
    async with running_sim(rate_limits={"upbit_418_after": 5, "upbit_418_block_s": 2.0}) as (_, ep), \
            aiohttp.ClientSession() as s:
        url = f"{ep['upbit'].rest}/v1/ticker?markets=KRW-BTC"
        statuses, remaining = [], []
        for _ in range(20):  # bounded burst, well inside one second
            r = await s.get(url)
            statuses.append(r.status)
            if r.status == 200:
                remaining.append(r.headers["Remaining-Req"])
        assert statuses[:10] == [200] * 10
        assert 429 in statuses and statuses[-1] == 418
        assert remaining[0] == "group=ticker; min=599; sec=9" and remaining[-1].endswith("sec=0")
        private = await private_get(s, ep["upbit"].rest, "/v1/accounts")
        assert private.headers["Remaining-Req"].startswith("group=default;")


async def test_bithumb_rate_limit_headers_and_429() -> None:
    async with running_sim() as (_, ep), aiohttp.ClientSession() as s:
        url = f"{ep['bithumb'].rest}/v1/ticker?markets=KRW-BTC"
        first = await s.get(url)
        assert first.headers["x-ratelimit-burst-capacity"] == "150"
        assert first.headers["x-ratelimit-remaining"] == "149"
        statuses = [(await s.get(url)).status for _ in range(170)]
        assert statuses.count(429) >= 1
        assert (await s.get(f"{ep['bithumb'].rest}/v1/market/all")).status == 200  # another category
