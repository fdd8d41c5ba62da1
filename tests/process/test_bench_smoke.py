"""tools/bench.py keeps working: one cheap bench, its JSON and its table (no timing asserted)."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.support import REPO


def test_bench_prints_json_and_a_table() -> None:
    # shm only: the parse bench alone takes ~11 s; what is smoke-tested here is the program
    out = subprocess.run([sys.executable, "tools/bench.py", "--only", "shm", "--json"], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    figures = json.loads(out.stdout)
    assert {"shm_write_ns", "shm_read_ns"} <= figures.keys()
    assert all(isinstance(v, (int, float)) and v > 0 for v in figures.values())
    table = subprocess.run([sys.executable, "tools/bench.py", "--only", "shm"], cwd=REPO,
                           capture_output=True, text=True, timeout=120)
    assert table.returncode == 0 and "shm_read_ns" in table.stdout
