"""tools/tap.py against a running supervisor: messages, JSON, stats, shared memory."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from karb import curve
from tests.support import REPO, SupervisorProc, free_ports, write_config

PROBES = [{"name": "src", "kind": "probe_source", "params": {"interval_us": 5000}},
          {"name": "sink", "kind": "probe_sink", "params": {"source": "src", "report_every": 20}}]


def tap(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "tools/tap.py", str(config), *args], cwd=REPO,
                          capture_output=True, text=True, timeout=60)


def test_tap_says_so_in_one_line_when_nothing_runs(workdir: Path) -> None:
    config = write_config(workdir, PROBES)
    result = tap(config, "--count", "1")
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0
    assert "nothing is running on run dir" in result.stderr


def test_tap_json_stats_and_shm(workdir: Path) -> None:
    config = write_config(workdir, PROBES, venues=[{"name": "upbit"}, {"name": "bithumb"}],
                          markets=["KRW-BTC", "KRW-ETH"])
    with SupervisorProc(config) as sup:
        sup.wait_running()
        heartbeats = tap(config, "--topic", "hb.", "--json", "--count", "4")
        assert heartbeats.returncode == 0, heartbeats.stderr
        lines = [json.loads(line) for line in heartbeats.stdout.splitlines()]
        assert len(lines) == 4
        for line in lines:
            assert line["topic"].startswith("hb.") and line["type"] == "hb"
            assert line["state"] == "RUNNING" and line["src"] in ("src", "sink")
            assert {"inc", "seq", "ts_event", "ts_init", "pid", "rss_bytes"} <= line.keys()

        stats = tap(config, "--stats", "--json", "--duration", "1.5")
        assert stats.returncode == 0, stats.stderr
        rows = {r["topic"]: r for r in json.loads(stats.stdout)["topics"]}
        assert rows["probe.src"]["rate_per_s"] > 50  # 200/s nominal
        assert rows["probe.src"]["gaps"] == 0
        assert "hb.sink" in rows and "probe_report.sink" in rows

        human = tap(config, "--topic", "probe.", "--count", "2")
        assert human.returncode == 0
        assert all("probe.src" in line and "src=src" in line for line in human.stdout.splitlines())

        shm = tap(config, "--shm", "--json")
        assert shm.returncode == 0, shm.stderr
        rows = json.loads(shm.stdout)["top_of_book"]
        assert [(r["venue"], r["market"]) for r in rows] == [
            ("upbit", "KRW-BTC"), ("upbit", "KRW-ETH"), ("bithumb", "KRW-BTC"), ("bithumb", "KRW-ETH")]
        assert all(r["flags"] == "EMPTY" for r in rows)  # nothing writes books yet


def test_tcp_transport_carries_the_same_bus(workdir: Path) -> None:
    base = free_ports(3 * len(PROBES))  # each actor binds base + 3i + 0..2
    curve.generate(workdir / "keys")
    config = write_config(workdir, PROBES, bus={"transport": "tcp", "tcp_base_port": base,
                                                "curve_keys_dir": str(workdir / "keys")})
    with SupervisorProc(config) as sup:
        sup.wait_running()
        result = tap(config, "--topic", "probe.", "--json", "--count", "3")
        assert result.returncode == 0, result.stderr
        assert len(result.stdout.splitlines()) == 3
        assert not (sup.run_dir / "bus").exists() or not any((sup.run_dir / "bus").iterdir())


def test_tap_into_a_closed_pipe_exits_quietly(workdir: Path) -> None:
    with SupervisorProc(write_config(workdir, PROBES)) as sup:
        sup.wait_running()
        proc = subprocess.Popen([sys.executable, "tools/tap.py", str(sup.config)], cwd=REPO,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert proc.stdout is not None
        proc.stdout.readline()
        proc.stdout.close()  # the reader goes away, as `| head -1` does
        assert proc.wait(20) == 0
        assert b"Traceback" not in proc.stderr.read()  # type: ignore[union-attr]
