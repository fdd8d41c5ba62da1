#!/usr/bin/env python3
"""Run K-Arb: ``python supervisor.py configs/sim.yaml`` (see README.md)."""

import signal

# Until the supervisor's handlers are in place a SIGTERM/SIGINT waits (pending) instead of
# killing a half-started supervisor: Ctrl-C or `timeout` during start is an orderly stop too.
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})

import sys  # noqa: E402

from karb.supervision.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
