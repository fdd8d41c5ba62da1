"""Lazy Pirate REQ/REP over real ZeroMQ sockets: resend after silence, answer once per id."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import zmq
import zmq.asyncio

from karb.bus import LazyPirateClient, PeerUnavailable, ReplyCache
from karb.messages import ControlReply, ControlRequest, decode, encode


async def flaky_server(sock: zmq.asyncio.Socket, drop_first: int, executed: list[str]) -> None:
    """Ignores the first ``drop_first`` requests (as a dead peer would), then answers,
    executing each request id once."""
    cache = ReplyCache()
    seen = 0
    while True:
        payload = await sock.recv()
        seen += 1
        if seen <= drop_first:
            # A REP must answer before it can receive again: rebuild it, as a restarted peer.
            return
        req = decode(payload)
        assert isinstance(req, ControlRequest)
        reply = cache.get(req.req_id)
        if reply is None:
            executed.append(req.req_id)
            reply = encode(ControlReply(req_id=req.req_id, ok=True))
            cache.put(req.req_id, reply)
        await sock.send(reply)


async def test_client_resends_after_a_silent_peer_and_the_server_acts_once(workdir: Path) -> None:
    actx = zmq.asyncio.Context()
    endpoint = f"ipc://{workdir}/rep"
    executed: list[str] = []
    first = actx.socket(zmq.REP)
    first.setsockopt(zmq.LINGER, 0)
    first.bind(endpoint)
    client = LazyPirateClient(actx, endpoint, timeout_ms=200, attempts=3)
    try:
        request = asyncio.ensure_future(client.request(ControlRequest(req_id="r1", cmd="status"), "r1"))
        await flaky_server(first, drop_first=1, executed=executed)  # swallows attempt 1
        first.close(linger=0)
        second = actx.socket(zmq.REP)
        second.setsockopt(zmq.LINGER, 0)
        second.bind(endpoint)
        server = asyncio.ensure_future(flaky_server(second, 0, executed))
        reply = await asyncio.wait_for(request, 5)
        assert isinstance(reply, ControlReply) and reply.ok and reply.req_id == "r1"
        again = await client.request(ControlRequest(req_id="r1", cmd="status"), "r1")
        assert again == reply
        assert executed == ["r1"]
        server.cancel()
        second.close(linger=0)
    finally:
        client.close()
        actx.destroy(linger=0)


async def test_client_gives_up_with_a_clear_error(workdir: Path) -> None:
    actx = zmq.asyncio.Context()
    client = LazyPirateClient(actx, f"ipc://{workdir}/nobody", timeout_ms=50, attempts=2)
    try:
        with pytest.raises(PeerUnavailable, match="after 2 attempts of 50 ms"):
            await client.request(ControlRequest(req_id="r", cmd="status"), "r")
    finally:
        client.close()
        actx.destroy(linger=0)
