"""How the supervisor stops, however the signal arrives, and what it leaves: the real
``supervisor.py`` in a process group of its own, as under a terminal, ``timeout`` or systemd."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from karb.exitcodes import ExitCode
from karb.shm import segment_path
from tests.support import (REPO, SupervisorProc, cmdline, eventually, process_group,
                           write_config)

IDLE = "tests.process.actors:Idle"
NAMES = ("alpha", "beta", "gamma")


def idle_config(workdir: Path, **sections: object) -> Path:
    return write_config(workdir, [{"name": n, "kind": IDLE} for n in NAMES], **sections)


def assert_clean_stop(sup: SupervisorProc, code: int) -> None:
    """Exit 0, every actor stopped with code 0 in reverse order, nothing restarted, no traceback,
    and nothing left in the supervisor's process group at the moment its exit code is known."""
    left = process_group(sup.pid)
    log = sup.log()
    assert code == ExitCode.OK, log
    assert left == [], f"processes left in the group at exit: {left}\n{log}"
    order = [log.find(f"{n} stopped (code 0)") for n in reversed(NAMES)]
    assert -1 not in order and order == sorted(order), log
    assert "restarting" not in log and "died" not in log, log
    assert "Traceback" not in log, log


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_to_the_whole_group_stops_in_reverse_order_and_exits_zero(
        workdir: Path, sig: signal.Signals) -> None:
    config = idle_config(workdir)
    with SupervisorProc(config, own_group=True) as sup:
        actors = sup.wait_running()
        # Process titles: one readable line per process in ps, top and /proc.
        assert cmdline(sup.pid) == f"karb: supervisor [{config}]"
        for name, actor in actors.items():
            assert cmdline(actor["pid"]) == f"karb: {name} [{config}]"
        os.killpg(sup.pid, sig)  # what Ctrl-C, timeout and systemd deliver
        assert_clean_stop(sup, sup.wait_exit(20))
        # the actors got it too, and left it to the supervisor (alpha, stopped last, surely)
        assert f"karb.alpha: {sig.name} from pid" in sup.log()


def test_signal_to_one_actor_is_left_to_the_supervisor(workdir: Path) -> None:
    with SupervisorProc(idle_config(workdir), own_group=True) as sup:
        beta = sup.wait_running()["beta"]
        os.kill(beta["pid"], signal.SIGTERM)
        eventually(lambda: "left to the supervisor" in sup.log(), 5, what="the refusal logged")
        assert sup.actors()["beta"]["pid"] == beta["pid"]
        os.kill(sup.pid, signal.SIGTERM)
        assert_clean_stop(sup, sup.wait_exit(20))


def test_start_stop_cycles_leave_no_traceback_and_no_process(workdir: Path) -> None:
    """Stops land at every moment of a start: importing, starting the forkserver, running."""
    config = write_config(workdir, [{"name": "alpha", "kind": IDLE}])
    for cycle in range(12):  # three rounds of the four moments
        with SupervisorProc(config, own_group=True) as sup:
            if cycle % 4 == 3:
                sup.wait_running()
            else:  # while importing, starting the forkserver, starting the actor
                time.sleep(0.05 + 0.25 * (cycle % 4) + 0.01 * cycle)
            os.killpg(sup.pid, signal.SIGTERM)
            code = sup.wait_exit(10)
            left = process_group(sup.pid)
            log = f"cycle {cycle}:\n{sup.log()}"
            assert code == ExitCode.OK, log
            assert left == [], log
            assert "Traceback" not in log and "restarting" not in log, log


def test_actor_raising_in_on_message_is_not_deaf_but_dies_and_is_replaced(
        workdir: Path) -> None:
    actors: list[dict[str, Any]] = [{"name": "source", "kind": "probe_source", "params": {"interval_us": 20_000}},
              {"name": "fragile", "kind": "tests.process.actors:RaisesOnMessage",
               "params": {"source": "source", "at": 5}}]
    with SupervisorProc(write_config(workdir, actors)) as sup:
        first = eventually(lambda: (a := sup.actors()["fragile"])["pid"] and a, 20,
                           what="fragile started")
        second = sup.replaced("fragile", first["pid"])
        assert second["incarnation"] == 2
        eventually(lambda: sup.actors()["fragile"]["msgs_in"] > 5, 10,
                   what="the new incarnation receiving")
        log = sup.log()
        assert "fragile died (code 1)" in log, log
        assert log.count("Traceback") == 1, log
        assert log.count("RuntimeError: injected on_message failure") == 1, log
        assert "Exception in callback" not in log


def test_no_message_reaches_a_handler_once_on_stop_has_begun(workdir: Path) -> None:
    actors: list[dict[str, Any]] = [
        {"name": "source", "kind": "probe_source", "params": {"interval_us": 1000}},
        {"name": "closer", "kind": "tests.process.actors:ClosesOnStop",
         "params": {"source": "source"}}]
    with SupervisorProc(write_config(workdir, actors)) as sup:
        sup.wait_running()
        eventually(lambda: sup.actors()["closer"]["msgs_in"] > 50, 10, what="messages flowing")
        os.kill(sup.pid, signal.SIGTERM)
        assert sup.wait_exit(20) == ExitCode.OK
        log = sup.log()
        assert "closer stopped (code 0)" in log and "Traceback" not in log, log


def test_run_dir_and_everything_in_it_is_private(workdir: Path) -> None:
    actors: list[dict[str, Any]] = [{"name": "source", "kind": "probe_source"},
              {"name": "sink", "kind": "probe_sink", "params": {"source": "source"}}]
    with SupervisorProc(write_config(workdir, actors)) as sup:
        sup.wait_running()
        run = sup.run_dir
        assert stat.S_IMODE(run.stat().st_mode) == 0o700
        for folder in ("bus", "ctl"):
            assert stat.S_IMODE((run / folder).stat().st_mode) == 0o700
        files = [run / "supervisor.lock", run / "supervisor.json", run / "children.json",
                 segment_path(run), *(run / "bus").iterdir(), *(run / "ctl").iterdir()]
        assert len(files) == 4 + 4
        for path in files:
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        # the status server: loopback only, and read-only
        url = json.loads((run / "supervisor.json").read_text())["status_url"]
        assert url.startswith("http://127.0.0.1:")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(urllib.request.Request(url, data=b"{}", method="POST"), timeout=5)
        assert refused.value.code == 405


@pytest.mark.parametrize("why", ["world-writable", "foreign"])
def test_unsafe_run_dir_is_refused_in_one_line(workdir: Path, why: str) -> None:
    if why == "world-writable":
        run = workdir / "run"
        run.mkdir(mode=0o700)
        os.chmod(run, 0o777)
        expected = "is group- or world-writable (mode 0777): run chmod 700"
    elif os.getuid() == 0:  # root can hand a dir to another user
        run = workdir / "run"
        run.mkdir(mode=0o700)
        os.chown(run, 65534, 65534)
        expected = "belongs to uid 65534, not to you (uid 0)"
    else:
        run = Path("/")  # root's
        expected = "belongs to uid 0"
    config = idle_config(workdir, supervisor={"run_dir": str(run)})
    result = subprocess.run([sys.executable, "supervisor.py", str(config)], cwd=REPO,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == ExitCode.CONFIG
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], result.stderr
