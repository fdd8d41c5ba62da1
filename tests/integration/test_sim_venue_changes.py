"""The 2025–2026 venue changes (exchanges.md §7) in the simulator, each over real HTTP/WS:
Upbit's order group at 12/s, Bithumb ``client_order_id`` on ``POST /v2/orders`` and lookups by
it, Bithumb ioc/fok/post_only, Bithumb's private WebSocket v2 with myOrder v2 fields, Upbit
``cancel_and_new``, Upbit's rejection of malformed paths, and merged WS subscriptions."""

from __future__ import annotations

import json
import time

import aiohttp
import pytest
from yarl import URL

from karb.exchanges.ratelimit import UPBIT_GROUPS
from karb.sim.server import SimServer
from tests.integration.simkit import private_get, private_post, running_sim, token


def resting_bid(server: SimServer, venue: str, market: str = "KRW-XRP") -> tuple[str, str]:
    """A limit bid under the book worth ~10,000 KRW (XRP ~3,000 KRW: tick 1 on both venues)."""
    price = int(server.model.book(venue, market).best_bid() * 0.9)
    return str(price), f"{10_000 / price:.4f}"


async def test_upbit_order_group_is_12_per_second_in_sim_and_client() -> None:
    assert UPBIT_GROUPS["order"] == 12 and UPBIT_GROUPS["order-test"] == 8
    async with running_sim() as (_, ep), aiohttp.ClientSession() as s:
        base = ep["upbit"].rest
        body = {"market": "KRW-XRP", "side": "bid", "volume": "1", "price": "1",
                "ord_type": "limit"}  # refused by the engine (minimum) but counted first
        t0 = time.monotonic()
        statuses = [(await private_post(s, base, "/v1/orders", body)).status for _ in range(13)]
        if time.monotonic() - t0 < 0.9:  # all inside one second window
            assert statuses[:12] == [400] * 12 and statuses[12] == 429, statuses
        r = await private_post(s, base, "/v1/orders", body)
        assert "group=order" in r.headers.get("Remaining-Req", "group=order")


async def test_bithumb_client_order_id_and_lookups_by_it() -> None:
    async with running_sim(rate_limits={"enabled": False}) as (server, ep), aiohttp.ClientSession() as s:
        base = ep["bithumb"].rest
        price, volume = resting_bid(server, "bithumb")
        body = {"market": "KRW-XRP", "side": "bid", "volume": volume, "price": price,
                "order_type": "limit", "client_order_id": "coid_1-a"}
        r = await private_post(s, base, "/v2/orders", body, venue="bithumb")
        created = await r.json()
        assert r.status == 201 and created["client_order_id"] == "coid_1-a"
        got = await (await private_get(s, base, "/v1/order", [("client_order_id", "coid_1-a")],
                                       venue="bithumb")).json()
        assert got["uuid"] == created["order_id"] and got["client_order_id"] == "coid_1-a"
        listed = await (await private_get(s, base, "/v1/orders", [
            ("market", "KRW-XRP"), ("client_order_ids[]", "coid_1-a")], venue="bithumb")).json()
        assert [o["uuid"] for o in listed] == [created["order_id"]]
        dup = await private_post(s, base, "/v2/orders", body, venue="bithumb")
        assert dup.status == 400
        bad = await private_post(s, base, "/v2/orders", {**body, "client_order_id": "no spaces!"},
                                 venue="bithumb")
        assert bad.status == 400 and (await bad.json())["error"]["name"] == "invalid_parameter"
        r = await private_get(s, base, "/v2/order", [("client_order_id", "coid_1-a")],
                              venue="bithumb", method="DELETE")
        assert r.status == 200 and (await r.json())["order_id"] == created["order_id"]


async def test_bithumb_ioc_fok_post_only() -> None:
    async with running_sim(rate_limits={"enabled": False}, step_ms=60_000) as (server, ep), \
            aiohttp.ClientSession() as s:
        base = ep["bithumb"].rest
        asks = server.model.book("bithumb", "KRW-XRP").asks
        top_px, top_size = asks[0]
        over = f"{top_size + 5000 / top_px:.4f}"  # more than the touch holds
        common = {"market": "KRW-XRP", "side": "bid", "price": str(int(top_px)),
                  "order_type": "limit"}

        async def place(cid: str, **extra: str) -> dict:
            r = await private_post(s, base, "/v2/orders", {**common, "client_order_id": cid, **extra},
                                   venue="bithumb")
            assert r.status == 201, await r.text()
            got = await private_get(s, base, "/v1/order", [("client_order_id", cid)], venue="bithumb")
            return await got.json()

        ioc = await place("ioc-1", volume=over, time_in_force="ioc")
        assert ioc["state"] == "done" and 0 < float(ioc["executed_volume"]) < float(over)  # Bithumb: done
        fok = await place("fok-1", volume=over, time_in_force="fok")
        assert fok["state"] == "cancel" and float(fok["executed_volume"]) == 0
        post = await place("po-1", volume="2", time_in_force="post_only", price=str(int(top_px) + 10))
        assert post["state"] == "cancel" and float(post["executed_volume"]) == 0


async def test_bithumb_private_websocket_v2_my_order_fields() -> None:
    async with running_sim(rate_limits={"enabled": False}) as (server, ep), aiohttp.ClientSession() as s:
        base = ep["bithumb"].rest
        url = base.replace("http://", "ws://") + "/websocket/v2/private"
        ws = await s.ws_connect(url, headers={"Authorization": token(venue="bithumb")})
        await ws.send_str(json.dumps([{"ticket": "t"}, {"type": "myOrder", "codes": ["KRW-XRP"]}]))
        price, volume = resting_bid(server, "bithumb")
        body = {"market": "KRW-XRP", "side": "bid", "volume": volume, "price": price,
                "order_type": "limit", "client_order_id": "ws-1"}
        deadline = time.monotonic() + 5
        while True:  # the subscription is not acknowledged: place until a frame shows up
            assert (await private_post(s, base, "/v2/orders", body, venue="bithumb")).status == 201
            try:
                frame = json.loads((await ws.receive(timeout=0.5)).data)
                break
            except TimeoutError:
                assert time.monotonic() < deadline
                body["client_order_id"] = f"ws-{time.monotonic_ns()}"
        assert frame["type"] == "myOrder" and frame["side"] == "buy" and frame["state"] == "wait"
        assert frame["client_order_id"] == body["client_order_id"] and frame["order_id"].startswith("C")
        assert float(frame["quantity"]) == float(volume) and frame["order_price"] == float(price)
        assert "uuid" not in frame and "ask_bid" not in frame and "volume" not in frame
        old = await s.get(base.replace("http://", "ws://") + "/websocket/v1/private")
        assert old.status == 404  # v1 private ended 2026-10
        await ws.close()


async def test_upbit_cancel_and_new() -> None:
    async with running_sim(rate_limits={"enabled": False}) as (server, ep), aiohttp.ClientSession() as s:
        base = ep["upbit"].rest
        price, volume = resting_bid(server, "upbit")
        body = {"market": "KRW-XRP", "side": "bid", "volume": volume, "price": price,
                "ord_type": "limit", "identifier": "cn-1"}
        old = await (await private_post(s, base, "/v1/orders", body)).json()
        r = await private_post(s, base, "/v1/orders/cancel_and_new", {
            "prev_order_uuid": old["uuid"], "new_ord_type": "limit", "new_price": str(int(price) - 1),
            "new_volume": "remain_only", "new_identifier": "cn-2"})
        reply = await r.json()
        assert r.status == 201 and reply["uuid"] == old["uuid"], reply
        assert reply["new_order_identifier"] == "cn-2"
        orders = server.venues["upbit"].exchange.orders
        assert orders[old["uuid"]].state == "cancel"
        new = orders[reply["new_order_uuid"]]
        assert new.state == "wait" and new.volume == pytest.approx(float(volume))
        # The old order filled before the cancel: refused, and no new order.
        await s.post(f"{base}/_sim/faults/cancel_race", json={"count": 1})
        r = await private_post(s, base, "/v1/orders/cancel_and_new", {
            "prev_order_identifier": "cn-2", "new_ord_type": "limit", "new_price": price,
            "new_volume": "remain_only", "new_identifier": "cn-3"})
        assert r.status == 400 and (await r.json())["error"]["name"] == "done_order"
        assert "cn-3" not in {o.client_id for o in orders.values()}


@pytest.mark.parametrize("path", ["//v1/accounts", "/v1/accounts/", "/v1/./accounts",
                                  "/v1/acc%20ounts"])
async def test_upbit_rejects_malformed_paths(path: str) -> None:
    async with running_sim(rate_limits={"enabled": False}) as (_, ep), aiohttp.ClientSession() as s:
        url = URL(ep["upbit"].rest + path, encoded=True)  # sent as written, not normalised
        r = await s.get(url, headers={"Authorization": token()})
        assert r.status == 400 and (await r.json())["error"]["name"] == "invalid_path"
        assert (await private_get(s, ep["upbit"].rest, "/v1/accounts")).status == 200
