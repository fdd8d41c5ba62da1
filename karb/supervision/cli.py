"""The command line: ``python supervisor.py [CONFIG]``."""

from __future__ import annotations

import argparse
import os
import sys

import uvloop
from setproctitle import setproctitle

from karb import logs
from karb.config import ConfigError, load_config
from karb.actors.registry import preload_modules
from karb.exitcodes import ExitCode
from karb.supervision import forkserver
from karb.supervision.preflight import resolve_params
from karb.supervision.rundir import RunDir, RunDirError
from karb.supervision.supervisor import Supervisor


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="supervisor.py", description="Run the K-Arb actor pipeline described by CONFIG.")
    parser.add_argument("config", nargs="?", default="configs/sim.yaml",
                        help="YAML config (default: configs/sim.yaml, the built-in simulator)")
    args = parser.parse_args(argv)
    # Before anything is created: the run dir, its sockets, the journal, the lock and info
    # files and the shared-memory segment are the user's alone (inherited by every actor).
    os.umask(0o077)
    setproctitle(f"karb: supervisor [{args.config}]")
    logs.configure()
    try:
        config = load_config(args.config)
        params = resolve_params(config)
        run_dir = RunDir(config.run_dir)
        run_dir.acquire()
    except (ConfigError, RunDirError) as exc:
        print(f"supervisor: {exc}", file=sys.stderr)
        return ExitCode.CONFIG
    forkserver.start(preload_modules(spec.kind for spec in config.actors))
    try:
        return int(uvloop.run(Supervisor(config, params, run_dir).run()))
    finally:
        # The exit code is returned only once nothing of ours is left in the process group.
        forkserver.stop()
