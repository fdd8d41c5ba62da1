"""Crash injection against the real ``supervisor.py``: kill, stop and break actors, and the
supervisor itself, then check what survives and that nothing is left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from karb.exitcodes import ExitCode
from karb.shm import segment_path
from tests.support import REPO, SupervisorProc, eventually, pid_gone, write_config

IDLE = "tests.process.actors:Idle"


def three_idle(workdir: Path, **sections: object) -> Path:
    actors = [{"name": n, "kind": IDLE} for n in ("alpha", "beta", "gamma")]
    return write_config(workdir, actors, **sections)


def assert_nothing_left(sup: SupervisorProc, pids: list[int]) -> None:
    eventually(lambda: all(pid_gone(p) for p in pids), 5, what="every actor process gone")
    bus_dir = sup.run_dir / "bus"
    assert not bus_dir.exists() or not any(bus_dir.iterdir()), "ipc files left behind"
    assert not segment_path(sup.run_dir).exists(), "shared-memory segment left behind"


def test_sigkill_each_actor_is_replaced_and_the_others_never_stop(workdir: Path) -> None:
    with SupervisorProc(three_idle(workdir)) as sup:
        before = sup.wait_running()
        for name in before:
            victim = sup.actors()[name]
            others = {n: (a["pid"], a["incarnation"]) for n, a in sup.actors().items() if n != name}
            os.kill(victim["pid"], signal.SIGKILL)

            def replaced(name: str = name, victim: dict = victim) -> dict | None:
                now = sup.actors()[name]
                return now if (now["state"] == "RUNNING" and now["pid"] != victim["pid"]) else None

            now = eventually(replaced, 10, what=f"{name} replaced")
            assert now["incarnation"] == victim["incarnation"] + 1
            assert now["restarts"] == victim["restarts"] + 1
            after = {n: (a["pid"], a["incarnation"]) for n, a in sup.actors().items() if n != name}
            assert after == others, "a sibling was restarted too"
        assert "died (signal SIGKILL)" in sup.log()


def test_sigstopped_actor_is_declared_hung_killed_and_replaced(workdir: Path) -> None:
    with SupervisorProc(three_idle(workdir)) as sup:
        victim = sup.wait_running()["beta"]
        os.kill(victim["pid"], signal.SIGSTOP)
        now = eventually(lambda: (a := sup.actors()["beta"])["state"] == "RUNNING"
                         and a["pid"] != victim["pid"] and a, 10, what="hung beta replaced")
        assert now["incarnation"] == victim["incarnation"] + 1
        assert pid_gone(victim["pid"])
        assert "beta (pid %d) is hung: no heartbeat" % victim["pid"] in sup.log()


def test_actor_crashing_on_start_exhausts_intensity_and_stops_in_order(workdir: Path) -> None:
    actors = [{"name": "steady", "kind": IDLE},
              {"name": "broken", "kind": "tests.process.actors:CrashOnStart"}]
    config = write_config(workdir, actors, supervisor={"max_restarts": 3, "period_s": 30,
                                                        "backoff_initial_ms": 20})
    with SupervisorProc(config) as sup:
        code = sup.wait_exit(30)
        log = sup.log()
        assert code == ExitCode.RESTART_INTENSITY, log
        assert log.count("injected start failure") == 4  # first start + 3 restarts
        assert "restarting broken in" in log
        assert "restart intensity exceeded: actor broken needed more than 3 restarts" in log
        assert "steady stopped (code 0)" in log  # stopped in order, not abandoned
        assert_nothing_left(sup, [])


def test_sigterm_stops_everything_in_reverse_order_and_exits_zero(workdir: Path) -> None:
    with SupervisorProc(three_idle(workdir)) as sup:
        pids = [a["pid"] for a in sup.wait_running().values()]
        os.kill(sup.pid, signal.SIGTERM)
        assert sup.wait_exit(20) == 0
        log = sup.log()
        order = [log.index(f"{n} stopped (code 0)") for n in ("gamma", "beta", "alpha")]
        assert order == sorted(order), "not stopped in reverse start order"
        assert_nothing_left(sup, pids)
        assert sup.descendants() == []


def test_actor_ignoring_sigterm_is_killed_after_the_shutdown_timeout(workdir: Path) -> None:
    actors = [{"name": "stubborn", "kind": "tests.process.actors:IgnoresTerm"}]
    config = write_config(workdir, actors, supervisor={"shutdown_timeout_ms": 300})
    with SupervisorProc(config) as sup:
        pid = sup.wait_running()["stubborn"]["pid"]
        os.kill(sup.pid, signal.SIGINT)
        assert sup.wait_exit(20) == 0
        assert "did not stop within 300 ms: SIGKILL" in sup.log()
        assert_nothing_left(sup, [pid])


def test_sigkill_supervisor_takes_every_child_down_and_a_new_one_starts_clean(
        workdir: Path) -> None:
    config = three_idle(workdir)
    with SupervisorProc(config) as first:
        pids = [a["pid"] for a in first.wait_running().values()]
        descendants = [p.pid for p in first.descendants()]
        os.kill(first.pid, signal.SIGKILL)
        first.wait_exit(5)
        eventually(lambda: all(pid_gone(p) for p in pids + descendants), 2.0,
                   what="every child gone within 2 s of the supervisor's death")
    with SupervisorProc(config) as second:
        second.wait_running()
        os.kill(second.pid, signal.SIGTERM)
        assert second.wait_exit(20) == 0
        assert_nothing_left(second, [])


def test_second_supervisor_on_the_same_run_dir_refuses_to_start(workdir: Path) -> None:
    config = three_idle(workdir)
    with SupervisorProc(config) as first:
        first.wait_running()
        second = subprocess.run([sys.executable, "supervisor.py", str(config)], cwd=REPO,
                                capture_output=True, text=True, timeout=30)
        assert second.returncode == ExitCode.CONFIG
        assert f"is in use by the supervisor with pid {first.pid}" in second.stderr
        assert first.proc.poll() is None
        assert all(a["state"] == "RUNNING" for a in first.actors().values())


def test_status_api_reports_every_actor(workdir: Path) -> None:
    with SupervisorProc(three_idle(workdir)) as sup:
        sup.wait_running()
        status = eventually(lambda: (s := sup.status())["actors"][0]["rss_bytes"] > 0 and s, 5,
                            what="stats collected")
        assert status["supervisor"]["pid"] == sup.pid
        for actor in status["actors"]:
            assert {"name", "pid", "state", "incarnation", "restarts", "heartbeat_age_ms",
                    "rss_bytes", "cpu_percent"} <= actor.keys()
            assert actor["heartbeat_age_ms"] < 600


def test_control_socket_answers_status_and_stop(workdir: Path) -> None:
    import asyncio

    import zmq.asyncio

    from karb.bus import LazyPirateClient, control_endpoint
    from karb.config import load_config
    from karb.messages import ControlReply, ControlRequest

    actors = [{"name": "keeper", "kind": IDLE},
              {"name": "quitter", "kind": IDLE, "restart": "transient"}]
    config_path = write_config(workdir, actors)
    config = load_config(config_path)

    async def ask(name: str, cmd: str) -> ControlReply:
        actx = zmq.asyncio.Context()
        client = LazyPirateClient(actx, control_endpoint(config, name), timeout_ms=1000)
        try:
            reply = await client.request(ControlRequest(req_id=f"{name}-{cmd}", cmd=cmd),
                                         f"{name}-{cmd}")
            assert isinstance(reply, ControlReply)
            return reply
        finally:
            client.close()
            actx.destroy(linger=0)

    with SupervisorProc(config_path) as sup:
        running = sup.wait_running()
        status = asyncio.run(ask("keeper", "status"))
        assert status.ok and status.status is not None
        assert (status.status.pid, status.status.state) == (running["keeper"]["pid"], "RUNNING")
        assert asyncio.run(ask("quitter", "stop")).ok
        eventually(lambda: sup.actors()["quitter"]["state"] == "EXITED", 10,
                   what="quitter exited after a stop command")
        assert "quitter exited (code 0); restart type transient: not restarted" in sup.log()
        assert sup.actors()["keeper"]["pid"] == running["keeper"]["pid"]


def test_a_new_supervisor_reaps_what_its_killed_predecessor_left(workdir: Path) -> None:
    config = three_idle(workdir)
    with SupervisorProc(config) as first:
        stuck = first.wait_running()["beta"]["pid"]
        os.kill(stuck, signal.SIGSTOP)  # frozen: survives the parent-death signal
        os.kill(first.pid, signal.SIGKILL)
        first.wait_exit(5)
        assert not pid_gone(stuck), "the stopped child should still be there"
        with SupervisorProc(config) as second:
            second.wait_running()
            assert pid_gone(stuck)
            assert f"killed leftover beta (pid {stuck}) of a previous supervisor" in second.log()
