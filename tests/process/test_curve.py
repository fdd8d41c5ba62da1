"""CurveZMQ over tcp: only a client holding an admitted key gets anything through — bus,
control commands, service requests (intents) — and the key command writes private files."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import zmq
import zmq.auth

from karb import curve
from karb.bus import control_endpoint, pub_endpoint, service_endpoint
from karb.config import load_config
from karb.messages import ControlReply, ControlRequest, decode, encode
from tests.support import REPO, SupervisorProc, free_ports, write_config

ACTORS: list[dict[str, Any]] = [{"name": "src", "kind": "probe_source", "params": {"interval_us": 5000}},
          {"name": "svc", "kind": "tests.process.actors:Service"}]
SILENCE_MS = 700  # what a refused client waits for an answer that must not come


def make_keys(workdir: Path) -> Path:
    keys = workdir / "keys"
    result = subprocess.run([sys.executable, "-m", "karb.curve", str(keys)], cwd=REPO,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    return keys


def client_socket(ctx: zmq.Context, kind: int, server_public: bytes | None,
                  keypair: tuple[bytes, bytes] | None) -> zmq.Socket:
    sock = ctx.socket(kind)
    sock.setsockopt(zmq.LINGER, 0)
    if keypair is not None and server_public is not None:
        sock.setsockopt(zmq.CURVE_PUBLICKEY, keypair[0])
        sock.setsockopt(zmq.CURVE_SECRETKEY, keypair[1])
        sock.setsockopt(zmq.CURVE_SERVERKEY, server_public)
    return sock


def gets_through(ctx: zmq.Context, cfg_path: Path, server_public: bytes | None,
                 keypair: tuple[bytes, bytes] | None) -> dict[str, bool]:
    """What a client with ``keypair`` (None: no CURVE at all) receives from each socket kind."""
    cfg = load_config(cfg_path)
    got: dict[str, bool] = {}
    sub = client_socket(ctx, zmq.SUB, server_public, keypair)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(pub_endpoint(cfg, "src"))
    got["publisher"] = bool(sub.poll(SILENCE_MS))
    sub.close()
    for name, endpoint in (("control", control_endpoint(cfg, "svc")),
                           ("service", service_endpoint(cfg, "svc"))):
        req = client_socket(ctx, zmq.REQ, server_public, keypair)
        req.connect(endpoint)
        req.send(encode(ControlRequest(req_id=f"t-{name}", cmd="status")))
        answered = bool(req.poll(SILENCE_MS))
        if answered:
            reply = decode(req.recv())
            assert isinstance(reply, ControlReply) and reply.req_id == f"t-{name}"
        got[name] = answered
        req.close()
    return got


def test_key_command_writes_a_private_keys_dir(workdir: Path) -> None:
    keys = make_keys(workdir)
    assert stat.S_IMODE(keys.stat().st_mode) == 0o700
    assert stat.S_IMODE((keys / "clients").stat().st_mode) == 0o700
    files = [*keys.glob("*.key*"), *(keys / "clients").glob("*.key*")]
    assert len(files) == 4
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)
    again = subprocess.run([sys.executable, "-m", "karb.curve", str(keys)], cwd=REPO,
                           capture_output=True, text=True, timeout=60, check=False)
    assert again.returncode == 2 and "already holds keys" in again.stderr


def test_over_tcp_only_the_admitted_key_gets_anything_through(workdir: Path) -> None:
    keys = make_keys(workdir)
    base = free_ports(3 * len(ACTORS))
    config = write_config(workdir, ACTORS, bus={"transport": "tcp", "tcp_base_port": base,
                                                "curve_keys_dir": str(keys)})
    loaded = curve.load(str(keys))
    stranger = zmq.curve_keypair()
    ctx = zmq.Context()
    try:
        with SupervisorProc(config) as sup:
            sup.wait_running()  # the supervisor's own heartbeat subscription is a client too
            admitted = gets_through(ctx, config, loaded.server_public,
                                    (loaded.client_public, loaded.client_secret))
            assert admitted == {"publisher": True, "control": True, "service": True}
            assert gets_through(ctx, config, loaded.server_public, stranger) == {
                "publisher": False, "control": False, "service": False}
            assert gets_through(ctx, config, None, None) == {
                "publisher": False, "control": False, "service": False}
            # tools use the client key from the config's keys dir
            tap = subprocess.run([sys.executable, "tools/tap.py", str(config), "--topic",
                                  "probe.", "--count", "2"], cwd=REPO, capture_output=True,
                                 text=True, timeout=60, check=False)
            assert tap.returncode == 0, tap.stderr
            assert len(tap.stdout.splitlines()) == 2
            # and the refused clients disturbed nothing
            assert all(a["state"] == "RUNNING" for a in sup.actors().values())
    finally:
        ctx.destroy(linger=0)
