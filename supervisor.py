#!/usr/bin/env python3
"""Run K-Arb: ``python supervisor.py configs/sim.yaml`` (see README.md)."""

import sys

from karb.supervision.cli import main

if __name__ == "__main__":
    sys.exit(main())
