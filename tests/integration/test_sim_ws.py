"""The simulator's WebSocket streams over real connections."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import pytest

from tests.integration.simkit import private_post, running_sim, token

DEADLINE = 5.0


async def frames(ws: aiohttp.ClientWebSocketResponse, n: int, binary: bool = True) -> list[Any]:
    out: list[Any] = []
    deadline = time.monotonic() + DEADLINE
    while len(out) < n:
        msg = await ws.receive(timeout=max(deadline - time.monotonic(), 0.01))
        assert msg.type == (aiohttp.WSMsgType.BINARY if binary else aiohttp.WSMsgType.TEXT), msg
        out.append(json.loads(msg.data))
    return out


def request(*types: dict[str, Any], fmt: str = "DEFAULT") -> str:
    return json.dumps([{"ticket": "t"}, *types, {"format": fmt}])


async def test_upbit_orderbook_snapshot_then_realtime_binary_default() -> None:
    async with running_sim() as (_, ep), aiohttp.ClientSession() as s:
        async with s.ws_connect(ep["upbit"].ws) as ws:
            await ws.send_str(request({"type": "orderbook", "codes": ["KRW-BTC", "KRW-XRP.5"]}))
            got = await frames(ws, 6)
            first = {f["code"]: f for f in got[:2]}
            assert all(f["stream_type"] == "SNAPSHOT" for f in got[:2])
            assert len(first["KRW-BTC"]["orderbook_units"]) == 30
            assert len(first["KRW-XRP"]["orderbook_units"]) == 5
            assert {f["stream_type"] for f in got[2:]} == {"REALTIME"}
            unit = first["KRW-BTC"]["orderbook_units"][0]
            assert set(unit) == {"ask_price", "bid_price", "ask_size", "bid_size"}
            assert first["KRW-BTC"]["timestamp"] < 10**13  # milliseconds


async def test_upbit_simple_format_flags_and_replacement() -> None:
    async with running_sim() as (_, ep), aiohttp.ClientSession() as s:
        async with s.ws_connect(ep["upbit"].ws) as ws:
            await ws.send_str(request({"type": "ticker", "codes": ["KRW-ETH"], "is_only_snapshot": True},
                                      fmt="SIMPLE"))
            (snap,) = await frames(ws, 1)
            assert snap["ty"] == "ticker" and snap["cd"] == "KRW-ETH" and snap["st"] == "SNAPSHOT"
            with pytest.raises(asyncio.TimeoutError):  # snapshot only: nothing more
                await ws.receive(timeout=0.3)
            await ws.send_str(request({"type": "orderbook", "codes": ["KRW-BTC"], "is_only_realtime": True},
                                      fmt="SIMPLE"))
            got = await frames(ws, 3)
            assert {f["st"] for f in got} == {"REALTIME"}
            assert {f["cd"] for f in got} == {"KRW-BTC"}  # the ticker subscription was replaced
            assert set(got[0]["obu"][0]) == {"ap", "bp", "as", "bs"}
            await ws.send_str("PING")
            deadline = time.monotonic() + DEADLINE
            while True:
                msg = await ws.receive(timeout=deadline - time.monotonic())
                if msg.type == aiohttp.WSMsgType.TEXT:
                    assert json.loads(msg.data) == {"status": "UP"}
                    break


async def test_upbit_request_errors_and_unknown_codes() -> None:
    async with running_sim() as (_, ep), aiohttp.ClientSession() as s:
        for bad, name in (("[{\"type\":\"ticker\",\"codes\":[\"KRW-BTC\"]}]", "NO_TICKET"),
                          ("not json", "WRONG_FORMAT"), ('[{"ticket":"x"}]', "NO_TYPE"),
                          ('[{"ticket":"x"},{"type":"ticker"}]', "NO_CODES")):
            async with s.ws_connect(ep["upbit"].ws) as ws:
                await ws.send_str(bad)
                (err,) = await frames(ws, 1, binary=False)
                assert err["error"]["name"] == name
                assert (await ws.receive(timeout=DEADLINE)).type in (aiohttp.WSMsgType.CLOSE,
                                                                      aiohttp.WSMsgType.CLOSED)
        async with s.ws_connect(ep["upbit"].ws) as ws:  # unknown codes are silently ignored
            await ws.send_str(request({"type": "ticker", "codes": ["KRW-NOPE", "KRW-BTC"]}))
            assert {f["code"] for f in await frames(ws, 3)} == {"KRW-BTC"}


async def test_idle_connections_are_closed_as_the_venue_does() -> None:
    async with running_sim(ws_idle_timeout_s=0.3) as (_, ep), aiohttp.ClientSession() as s:
        async with s.ws_connect(ep["upbit"].ws, autoping=True) as ws:
            await ws.send_str(request({"type": "ticker", "codes": ["KRW-BTC"]}))
            deadline = time.monotonic() + DEADLINE
            while time.monotonic() < deadline:
                msg = await ws.receive(timeout=DEADLINE)
                if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                    break
            else:
                pytest.fail("idle connection was never closed")


async def test_bithumb_ws_camel_case_flags_15_levels_microseconds() -> None:
    async with running_sim() as (_, ep), aiohttp.ClientSession() as s:
        async with s.ws_connect(ep["bithumb"].ws) as ws:
            await ws.send_str(request({"type": "orderbook", "codes": ["KRW-BTC.30"],
                                       "isOnlySnapshot": True}))
            (snap,) = await frames(ws, 1)
            assert len(snap["orderbook_units"]) == 15 and snap["level"] == 1
            assert snap["timestamp"] > 10**15  # 16-digit microseconds
            with pytest.raises(asyncio.TimeoutError):
                await ws.receive(timeout=0.3)


async def test_upbit_private_stream_my_order_and_my_asset() -> None:
    async with running_sim(rate_limits={"enabled": False}) as (server, ep), aiohttp.ClientSession() as s:
        private = ep["upbit"].ws + "/private"
        async with s.ws_connect(private, headers={"Authorization": token(None, access="nobody")}) as bad:
            (err,) = await frames(bad, 1, binary=False)
            assert err["error"]["name"] == "INVALID_AUTH"
        async with s.ws_connect(private, headers={"Authorization": token(None)}) as ws:
            await ws.send_str(json.dumps([{"ticket": "p"}, {"type": "myOrder", "codes": ["KRW-BTC"]},
                                          {"type": "myAsset"}]))
            await asyncio.sleep(0)  # let the subscription land before the order
            ask = server.model.book("upbit", "KRW-BTC").best_ask()
            body = {"market": "KRW-BTC", "side": "bid", "volume": "0.001", "price": str(int(ask)),
                    "ord_type": "limit", "time_in_force": "ioc", "identifier": "ws-1"}
            deadline = time.monotonic() + DEADLINE
            while not server.venues["upbit"].sockets or not any(
                    x.subs for x in server.venues["upbit"].sockets):
                assert time.monotonic() < deadline
                await asyncio.sleep(0.01)
            assert (await private_post(s, ep["upbit"].rest, "/v1/orders", body)).status == 201
            got: list[Any] = []
            while not (any(f["type"] == "myOrder" and f["state"] == "trade" for f in got)
                       and any(f["type"] == "myAsset" for f in got)):
                assert len(got) < 10, f"no myOrder trade frame and myAsset frame in {got}"
                got += await frames(ws, 1)  # fails after DEADLINE without a frame
            orders = [f for f in got if f["type"] == "myOrder"]
            assets = [f for f in got if f["type"] == "myAsset"]
            assert orders[0]["identifier"] == "ws-1" and orders[0]["state"] == "wait"
            trade = next(f for f in orders if f["state"] == "trade")
            assert trade["identifier"] == "ws-1" and trade["trade_uuid"] and trade["executed_volume"] > 0
            assert {a["currency"] for a in assets[0]["assets"]} == {"KRW", "BTC"}
