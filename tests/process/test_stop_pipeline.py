"""The whole pipeline against the simulator, stopped as ``timeout`` and systemd stop it, and with
every actor killed once: a crash of each is survivable, a stop is orderly."""

from __future__ import annotations

import os
import signal
import stat
from pathlib import Path

from karb.exitcodes import ExitCode
from tests.process.pipeline import Venues, pipeline_config, rows
from tests.support import SupervisorProc, cmdline, eventually, process_group

MARKETS = ["KRW-ETH", "KRW-XRP"]
ORDER = ["sim", "feed.upbit", "feed.bithumb", "book", "execution", "strategy"]


def test_sigterm_to_the_process_group_mid_trading_stops_in_reverse_order(workdir: Path) -> None:
    config = pipeline_config(workdir, MARKETS)
    with SupervisorProc(config, own_group=True) as sup:
        actors = sup.wait_running(30)
        assert {name: cmdline(a["pid"]) for name, a in actors.items()} == {
            name: f"karb: {name} [{config}]" for name in ORDER}
        Venues(sup).dislocate("bithumb", "KRW-ETH", 80, 3000)
        eventually(lambda: rows(sup, "SELECT 1 FROM intents WHERE state != 'REJECTED'"), 15,
                   what="trading")
        journal = sup.run_dir / "journal.sqlite"
        assert stat.S_IMODE(journal.stat().st_mode) == 0o600
        os.killpg(sup.pid, signal.SIGTERM)  # as `timeout` and systemd's control-group kill do
        code = sup.wait_exit(30)
        left = process_group(sup.pid)
        log = sup.log()
        assert code == ExitCode.OK, log
        assert left == [], f"left in the process group at exit: {left}\n{log}"
        stops = [log.find(f"supervisor: {name} stopped (code 0)") for name in reversed(ORDER)]
        assert -1 not in stops and stops == sorted(stops), log
        assert "restarting" not in log and "died" not in log, log
        assert "Traceback" not in log, log


def test_sigkill_of_every_actor_a_second_apart_is_survived(workdir: Path) -> None:
    with SupervisorProc(pipeline_config(workdir, MARKETS)) as sup:
        before = sup.wait_running(30)
        for name in ORDER:  # six unrelated crashes within period_s are not a crash loop
            old = sup.actors()[name]["pid"]
            os.kill(old, signal.SIGKILL)
            sup.replaced(name, old)
        after = sup.wait_running(30)
        assert sup.proc.poll() is None
        for name in ORDER:
            assert after[name]["pid"] != before[name]["pid"], name
            assert after[name]["incarnation"] == before[name]["incarnation"] + 1, name
        assert "restart intensity exceeded" not in sup.log()
        assert sup.status()["supervisor"]["restarts_in_period"] == len(ORDER)
