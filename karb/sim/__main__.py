"""``python -m karb.sim CONFIG``: serve both simulated venues until Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

import uvloop

from karb import logs
from karb.config import ConfigError, load_config
from karb.sim.server import SimServer


async def serve(server: SimServer) -> None:
    endpoints = await server.start()
    for endpoint in endpoints.values():
        print(f"karb.sim {endpoint.venue} rest={endpoint.rest} ws={endpoint.ws}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    market = asyncio.create_task(server.run_market())
    try:
        await stop.wait()
    finally:
        market.cancel()
        await server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m karb.sim",
                                     description="Serve Upbit- and Bithumb-compatible exchanges on loopback.")
    parser.add_argument("config", nargs="?", default="configs/sim.yaml")
    args = parser.parse_args(argv)
    logs.configure()
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"karb.sim: {exc}", file=sys.stderr)
        return 2
    uvloop.run(serve(SimServer(config)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
