"""CurveZMQ for the bus: who may subscribe, submit an intent or send a control command.

Over ``bus.transport: tcp`` anyone who reaches a port could otherwise trade through us, so a tcp
config must name ``bus.curve_keys_dir`` (with ipc it is optional: the 0700 run dir already
keeps other local users out). Layout, written by ``python -m karb.curve DIR``::

    DIR/server.key, DIR/server.key_secret            every socket that binds (PUB, control, intents)
    DIR/clients/client.key, .../client.key_secret    the actors', supervisor's and tools' key
    DIR/clients/*.key                                the public keys allowed to connect

Every socket an actor's context makes is a CURVE *server* by default (context options), so a
socket nobody remembered to secure fails closed; connecting sockets become clients with
:func:`secure_client`. A ZAP handler in every actor admits only the public keys in
``DIR/clients``: a client with any other key gets no message, reply or acknowledgement.
"""

from __future__ import annotations

import functools
import os
import stat
import sys
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

SERVER = "server"
CLIENT = "client"
CLIENTS_DIR = "clients"
GENERATE = "python -m karb.curve DIR"


class CurveKeyError(Exception):
    """The keys dir cannot be used; ``str()`` is one line naming the cause and the fix."""


@dataclass(frozen=True)
class CurveKeys:
    server_public: bytes
    server_secret: bytes
    client_public: bytes
    client_secret: bytes
    clients_dir: Path


def generate(directory: Path) -> None:
    """Create the server and client keypairs in ``directory`` (0700, files 0600)."""
    if (directory / f"{SERVER}.key_secret").exists():
        raise CurveKeyError(f"{directory} already holds keys; remove it first to make new ones")
    old = os.umask(0o077)
    try:
        clients = directory / CLIENTS_DIR
        clients.mkdir(mode=0o700, parents=True, exist_ok=True)
        zmq.auth.create_certificates(directory, SERVER)
        zmq.auth.create_certificates(clients, CLIENT)
    finally:
        os.umask(old)
    for path in (directory, clients):
        os.chmod(path, 0o700)
    for path in [*directory.glob("*.key*"), *clients.glob("*.key*")]:
        os.chmod(path, 0o600)


@functools.lru_cache(maxsize=4)
def load(keys_dir: str) -> CurveKeys:
    """Read and check the keys in ``keys_dir``; CurveKeyError names what is wrong."""
    directory = Path(keys_dir)
    try:
        st = directory.stat()
    except OSError as exc:
        raise CurveKeyError(f"{directory}: {exc.strerror}; generate keys with {GENERATE}") from None
    if st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise CurveKeyError(f"{directory} must be yours and private (mode "
                            f"{stat.S_IMODE(st.st_mode):04o}): chmod 700 {directory}")
    server_public, server_secret = _read(directory / f"{SERVER}.key_secret")
    client_public, client_secret = _read(directory / CLIENTS_DIR / f"{CLIENT}.key_secret")
    return CurveKeys(server_public, server_secret, client_public, client_secret,
                     directory / CLIENTS_DIR)


def _read(path: Path) -> tuple[bytes, bytes]:
    try:
        mode = path.stat().st_mode
        public, secret = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise CurveKeyError(f"cannot read {path} ({exc}); generate keys with {GENERATE}") from None
    if mode & 0o077:
        raise CurveKeyError(f"{path} is readable by others: chmod 600 {path}")
    if secret is None:
        raise CurveKeyError(f"{path} holds no secret key; generate keys with {GENERATE}")
    return public, secret


def start_authenticator(ctx: zmq.Context, keys: CurveKeys) -> ThreadAuthenticator:
    """Admit only clients whose public key is in ``keys.clients_dir`` (call before binding,
    and before :func:`secure_context`: the handler's own inproc socket needs no keys)."""
    auth = ThreadAuthenticator(ctx)
    auth.start()
    auth.configure_curve(domain="*", location=str(keys.clients_dir))
    return auth


def secure_context(ctx: zmq.Context, keys: CurveKeys) -> None:
    """Make every socket ``ctx`` creates from now on a CURVE server."""
    ctx.setsockopt(zmq.CURVE_SERVER, 1)
    ctx.setsockopt(zmq.CURVE_SECRETKEY, keys.server_secret)
    ctx.setsockopt(zmq.CURVE_PUBLICKEY, keys.server_public)


def secure_client(sock: zmq.Socket, keys: CurveKeys) -> None:
    """Make ``sock`` (before it connects) a CURVE client holding our client key."""
    sock.setsockopt(zmq.CURVE_SERVER, 0)
    sock.setsockopt(zmq.CURVE_PUBLICKEY, keys.client_public)
    sock.setsockopt(zmq.CURVE_SECRETKEY, keys.client_secret)
    sock.setsockopt(zmq.CURVE_SERVERKEY, keys.server_public)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0].startswith("-"):
        print(f"usage: {GENERATE}   (then set bus.curve_keys_dir: DIR)", file=sys.stderr)
        return 2
    directory = Path(args[0])
    try:
        generate(directory)
    except (CurveKeyError, OSError) as exc:
        print(f"curve: {exc}", file=sys.stderr)
        return 2
    print(f"keys written to {directory} (0700; copy {directory}/clients/client.key* to a host "
          f"that runs tools, and its public key into {directory}/{CLIENTS_DIR}/ to admit it)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
