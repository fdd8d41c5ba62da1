"""The command line: ``python supervisor.py [CONFIG]``."""

from __future__ import annotations

import argparse
import sys

import uvloop

from karb import logs
from karb.config import ConfigError, load_config
from karb.exitcodes import ExitCode
from karb.supervision.preflight import resolve_params
from karb.supervision.rundir import RunDir, RunDirBusy
from karb.supervision.supervisor import Supervisor


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="supervisor.py", description="Run the K-Arb actor pipeline described by CONFIG.")
    parser.add_argument("config", nargs="?", default="configs/sim.yaml",
                        help="YAML config (default: configs/sim.yaml, the built-in simulator)")
    args = parser.parse_args(argv)
    logs.configure()
    try:
        config = load_config(args.config)
        params = resolve_params(config)
        run_dir = RunDir(config.run_dir)
        run_dir.acquire()
    except (ConfigError, RunDirBusy) as exc:
        print(f"supervisor: {exc}", file=sys.stderr)
        return ExitCode.CONFIG
    return int(uvloop.run(Supervisor(config, params, run_dir).run()))
