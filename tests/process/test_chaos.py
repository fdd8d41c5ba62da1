"""tools/chaos.py --duration 30 --faults: random SIGKILLs and network faults while trading, then
the money agrees three ways (venue orders, venue balances, journal) and the supervisor stops
cleanly. The figures to reach by hand (600 s) are in issue 8."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

from tests.support import REPO

MONEY_CHECKS = ("LOST", "DUPLICATES", "PHANTOMS", "FILL-MISMATCH", "UNHEDGED",
                "BALANCE-MISMATCH", "JOURNAL-BALANCE-MISMATCH")
DURATION_S = 30
# start (~5 s) + chaos + quiesce (at most 60 s) + audit + supervisor stop (at most 60 s)
TIMEOUT_S = DURATION_S + 150


def test_chaos_with_faults_loses_no_money() -> None:
    proc = subprocess.Popen([sys.executable, "tools/chaos.py", "--duration", str(DURATION_S),
                             "--faults", "--json", "--keep", "never"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = proc.communicate(timeout=TIMEOUT_S)
    finally:
        if proc.poll() is None:  # the tool stops its pipeline on SIGTERM (and dies with it)
            proc.send_signal(signal.SIGTERM)
            try:
                proc.communicate(timeout=90)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
    assert stdout.strip(), f"no report (exit {proc.returncode}):\n{stderr}"
    out = json.loads(stdout)
    summary = {k: out[k] for k in (*MONEY_CHECKS, "supervisor_exit", "kills", "faults",
                                   "crashes_by_actor", "intents_by_state", "halts")}
    assert out["kills"] > 0 and out["faults"] > 0, summary
    assert sum(out["intents_by_state"].values()) > 0, summary
    assert {k: out[k] for k in MONEY_CHECKS} == dict.fromkeys(MONEY_CHECKS, 0), \
        json.dumps(out["details"], indent=1)
    assert out["supervisor_exit"] == 0, summary
    assert proc.returncode == 0, stderr
