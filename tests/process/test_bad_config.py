"""A bad config gets one line naming the file, the key and the fix, and exit code 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from karb.exitcodes import ExitCode
from tests.support import REPO

GOOD_ACTOR = "  - {name: a, kind: 'tests.process.actors:Idle'}\n"

CASES = [
    ("unknown key", "supervisor:\n  hearbeat_interval_ms: 100\nactors:\n" + GOOD_ACTOR,
     "supervisor.hearbeat_interval_ms: unknown key (allowed here: run_dir, heartbeat_interval_ms"),
    ("wrong type", "supervisor:\n  heartbeat_interval_ms: fast\nactors:\n" + GOOD_ACTOR,
     "supervisor.heartbeat_interval_ms: expected `int`, got `str`"),
    ("missing key", "actors:\n  - {kind: probe_source}\n", "actors[0].name: required key is missing"),
    ("rule broken", "supervisor: {heartbeat_interval_ms: 500, heartbeat_timeout_ms: 600}\n"
     "actors:\n" + GOOD_ACTOR, "supervisor.heartbeat_timeout_ms: must be more than twice"),
    ("bad enum", "actors:\n  - {name: a, kind: probe_source, restart: sometimes}\n",
     "actors[0].restart: invalid enum value 'sometimes'"),
    ("unknown kind", "actors:\n  - {name: a, kind: nosuch}\n",
     "actors[0].kind: unknown actor kind 'nosuch' (built-in: "),
    ("bad params", "actors:\n  - {name: a, kind: probe_sink, params: {sorce: x}}\n",
     "actors[0].params.sorce: unknown key (allowed here: source, report_every)"),
    ("yaml syntax", "actors: [\n  - a: b: c\n", "invalid YAML"),
    ("not a mapping", "- just\n- a list\n", "expected a mapping of sections at the top"),
    ("bad market", "markets: [btc]\nactors:\n" + GOOD_ACTOR, "market 'btc' must look like KRW-BTC"),
    ("tcp without keys", "bus: {transport: tcp}\nactors:\n" + GOOD_ACTOR,
     "bus.curve_keys_dir: is required with transport: tcp"),
    ("missing keys", "bus: {transport: tcp, curve_keys_dir: /nonexistent/keys}\nactors:\n"
     + GOOD_ACTOR, "bus.curve_keys_dir: /nonexistent/keys: No such file or directory; generate"),
]


@pytest.mark.parametrize("text,expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_config_is_one_clear_line_and_exit_2(workdir: Path, text: str, expected: str) -> None:
    config = workdir / "bad.yaml"
    config.write_text(text)
    result = subprocess.run([sys.executable, "supervisor.py", str(config)], cwd=REPO,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == ExitCode.CONFIG
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(config) in lines[0]
    assert expected in lines[0]
    assert "Traceback" not in result.stderr


def test_missing_config_file_is_one_line(workdir: Path) -> None:
    result = subprocess.run([sys.executable, "supervisor.py", str(workdir / "nope.yaml")],
                            cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == ExitCode.CONFIG
    assert result.stderr.strip().endswith("cannot read file (No such file or directory)")
