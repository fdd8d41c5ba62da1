"""The supervision tree: start actors in order, watch them, restart them, stop them in reverse.

- Children are forked from a multiprocessing forkserver that preloaded the modules they need,
  so a restart costs a fork, not an interpreter start (``forkserver.py``: it ignores SIGTERM and
  SIGINT, and is reaped before the exit code is returned).
- An exit is seen at once (the process sentinel is a file descriptor on the event loop); a hang
  is seen by missed heartbeats (``hb.<actor>`` older than ``heartbeat_timeout_ms``) and answered
  with SIGKILL, after which the exit path restarts it.
- Restart type per child, exponential back-off with jitter, and an intensity limit per child
  with a backstop over all (``restart.py``): past it the supervisor stops everything in order
  and exits with ``ExitCode.RESTART_INTENSITY``, naming the child.
- SIGTERM / SIGINT, to us alone or to the whole process group: from that moment an exit is a
  stop, never a crash to restart; stop in reverse order (the ``stop`` command on each child's
  control socket, ``shutdown_timeout_ms``, SIGKILL), exit 0. Children leave those signals to us.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import time
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from typing import Any, Literal

import psutil
import zmq

from karb import bus, topics
from karb.actors.base import ChildSpec
from karb.actors.runner import run_actor
from karb.config import ActorSpec, Config
from karb.exitcodes import ExitCode
from karb.messages import BusMessage, ControlRequest, Heartbeat, encode
from karb.ops.hub import OpsHub
from karb.supervision import forkserver
from karb.supervision.restart import RestartPolicy, should_restart
from karb.supervision.rundir import RunDir
from karb.shm import TopOfBookTable, segment_path
from karb.supervision.status_http import StatusServer

log = logging.getLogger("karb.supervisor")

# How often liveness is checked; bounds how late a hang is noticed after heartbeat_timeout_ms.
CHECK_INTERVAL_S = 0.02
STATS_INTERVAL_S = 1.0


# DOWN: not running (before the first start, or waiting out a restart back-off) · STARTING:
# spawned, no RUNNING heartbeat yet · RUNNING · HUNG: SIGKILLed for a missed heartbeat (or no
# RUNNING in time after a restart), its exit not seen yet; restarted once it is · STOPPING: asked
# to stop · EXITED: ended and not to be restarted (a stop, or a clean exit of a transient or
# temporary actor) · FAILED: ended abnormally and its restart type says not to restart.
ChildState = Literal["DOWN", "STARTING", "RUNNING", "HUNG", "STOPPING", "EXITED", "FAILED"]


@dataclass
class Child:
    spec: ActorSpec
    params: Any
    incarnation: int = 0
    process: BaseProcess | None = None
    pid: int | None = None
    state: ChildState = "DOWN"
    restarts: int = 0
    spawned_at: float = 0.0
    last_heartbeat_at: float = 0.0
    last_heartbeat: Heartbeat | None = None
    ps: psutil.Process | None = None
    cpu_percent: float = 0.0
    rss_bytes: int = 0
    running: asyncio.Event = field(default_factory=asyncio.Event)
    exited: asyncio.Event = field(default_factory=asyncio.Event)
    restart_timer: asyncio.TimerHandle | None = None

    @property
    def name(self) -> str:
        return self.spec.name


class Supervisor:
    def __init__(self, config: Config, params: dict[str, Any], run_dir: RunDir) -> None:
        self.config = config
        self.cfg = config.supervisor
        self.run_dir = run_dir
        self.children = [Child(spec, params[spec.name]) for spec in config.actors]
        self._by_name = {c.name: c for c in self.children}
        self.policy = RestartPolicy(self.cfg, config.restart_backstop)
        self.exit_code = ExitCode.OK
        self._stopping = False
        self._stop_requested: asyncio.Event | None = None
        self._mp = multiprocessing.get_context("forkserver")
        self.ops = OpsHub(config, self.status)  # /metrics, the page, alerts, sd_notify
        self._status = StatusServer(self.status, self.ops.add_routes)
        self._started_at = time.monotonic()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ctx: zmq.Context | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    async def run(self) -> int:
        loop = self._loop = asyncio.get_running_loop()
        self._stop_requested = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop, signal.Signals(sig).name)
        # supervisor.py blocks them until now: one that came during start is handled here.
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})
        self.run_dir.prepare()
        table = TopOfBookTable.create(segment_path(self.config.run_dir),
                                      len(self.config.venues), len(self.config.markets))
        ctx = self._ctx = zmq.Context()
        bus.secure_context(ctx, self.config.bus)
        sub = bus.Subscriber(ctx, self.config.bus, self._on_message, on_error=self._on_handler_error)
        try:
            sub.connect(bus.pub_endpoint(self.config, c.name) for c in self.children)
            sub.subscribe([topics.HEARTBEAT, *self.ops.prefixes()])
            self.ops.attach_table(table)
            sub.attach(loop)
            if not await self._start_status():
                return self.exit_code
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._watch_liveness())
                tg.create_task(self._collect_stats())
                tg.create_task(self.ops.run())
                await self._start_all()
                if all(c.state == "RUNNING" for c in self.children):
                    self.ops.ready()
                await self._stop_requested.wait()
                await self._stop_all()
                raise _Done
        except* _Done:
            pass
        finally:
            await self._stop_all()  # after an unexpected error too: leave nothing behind
            sub.close()
            ctx.destroy(linger=0)
            await self._status.stop()
            table.close()
            table.unlink()
            self.run_dir.release()
        log.info("supervisor exits with %d (%s)", self.exit_code, ExitCode(self.exit_code).name)
        return self.exit_code

    async def _start_status(self) -> bool:
        port = self.cfg.status_port
        url = ""
        if port is not None:
            try:
                port = await self._status.start(port)
            except OSError as exc:
                log.error("supervisor.status_port: 127.0.0.1:%s cannot be used (%s); pick another "
                          "port, 0 for any, or null for none", port, exc.strerror)
                self.exit_code = ExitCode.CONFIG
                return False
            url = f"http://127.0.0.1:{port}/api/status"
            log.info("status at %s; page at http://127.0.0.1:%d/ and metrics at /metrics "
                     "(bound to loopback only)", url, port)
        self.run_dir.write_info({"pid": os.getpid(), "status_url": url, "config": self.config.path})
        return True

    async def _start_all(self) -> None:
        """Start in config order, each only after the previous one reported RUNNING."""
        assert self._stop_requested is not None
        for child in self.children:
            if self._stop_requested.is_set():
                return
            self._spawn(child)
            timeout = self.cfg.start_timeout_ms / 1000
            try:
                await asyncio.wait_for(self._until_running_or_stop(child), timeout)
            except TimeoutError:
                self.fail(ExitCode.START_TIMEOUT, f"actor {child.name} did not report RUNNING "
                          f"within {self.cfg.start_timeout_ms} ms (supervisor.start_timeout_ms)")
                return
        if not self._stop_requested.is_set():
            log.info("all %d actors running", len(self.children))

    async def _until_running_or_stop(self, child: Child) -> None:
        assert self._stop_requested is not None
        waits = {asyncio.ensure_future(child.running.wait()),
                 asyncio.ensure_future(self._stop_requested.wait())}
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()

    def request_stop(self, reason: str) -> None:
        if self._stop_requested is not None and not self._stop_requested.is_set():
            log.info("stopping all actors: %s", reason)
            self.ops.stopping()
            self._stop_requested.set()
            # From this moment an exit is a stop, never a crash to restart.
            self._stopping = True
            for child in self.children:
                if child.restart_timer is not None:
                    child.restart_timer.cancel()
                    child.restart_timer = None

    def _on_handler_error(self, exc: BaseException) -> None:
        log.error("supervisor's heartbeat handler failed", exc_info=exc)
        self.fail(ExitCode.ERROR, "internal error: stopping")

    def fail(self, code: ExitCode, reason: str) -> None:
        """Stop everything in order and exit with ``code``."""
        if self.exit_code == ExitCode.OK:
            self.exit_code = code
        log.error("%s", reason)
        self.request_stop(code.name.lower().replace("_", " "))

    async def _stop_all(self) -> None:
        self._stopping = True
        for child in reversed(self.children):
            if child.restart_timer is not None:
                child.restart_timer.cancel()
                child.restart_timer = None
            await self._stop_child(child)

    async def _stop_child(self, child: Child) -> None:
        if child.process is None or child.pid is None or child.exited.is_set():
            return
        child.state = "STOPPING"
        grace = self.cfg.shutdown_timeout_ms / 1000
        # The stop command, not a signal: a SIGTERM sent to the whole process group is pending
        # in the actor at this moment, and a second SIGTERM would merge with it (standard
        # signals do not queue), so the actor could not tell ours from the outside one. A
        # request on its control socket cannot be lost that way; it waits for a starting
        # actor's socket to be bound, and it is authenticated like any control client.
        assert self._ctx is not None
        sock = self._ctx.socket(zmq.REQ)
        try:
            sock.setsockopt(zmq.LINGER, 0)
            bus.secure_client(sock, self.config.bus)
            sock.connect(bus.control_endpoint(self.config, child.name))
            sock.send(encode(ControlRequest(req_id=f"supervisor-stop-{child.incarnation}",
                                            cmd="stop")), zmq.NOBLOCK)
            await asyncio.wait_for(child.exited.wait(), grace)
        except TimeoutError:
            log.warning("actor %s did not stop within %d ms: SIGKILL", child.name,
                        self.cfg.shutdown_timeout_ms)
            _signal(child.pid, signal.SIGKILL)
            await child.exited.wait()
        finally:
            sock.close(linger=0)

    # -- spawning and exits ----------------------------------------------------------------------

    def _spawn(self, child: Child) -> None:
        child.restart_timer = None
        if self._stopping:
            return
        child.incarnation += 1
        spec = ChildSpec(name=child.name, incarnation=child.incarnation,
                         supervisor_pid=os.getpid(), config=self.config, params=child.params)
        proc = self._mp.Process(target=run_actor, args=(spec,), name=child.name)
        child.running.clear()
        child.exited.clear()
        child.state = "STARTING"
        child.last_heartbeat = None
        child.spawned_at = time.monotonic()
        try:
            if forkserver.is_running():
                proc.start()
            else:  # someone killed it: the new one must ignore stop signals too
                with forkserver.stop_signals_ignored_by_spawned():
                    proc.start()
        except Exception as exc:  # e.g. the forkserver died; it is restarted on the next try
            log.error("could not start %s: %r", child.name, exc)
            child.process, child.pid = None, None
            child.exited.set()
            self._after_failure(child, "failed to start")
            return
        assert proc.pid is not None  # started
        child.process, child.pid = proc, proc.pid
        child.ps = _ps(proc.pid)
        assert self._loop is not None
        self._loop.add_reader(proc.sentinel, self._on_exit, child, proc)
        self._record_children()
        log.info("started %s (pid %d, incarnation %d)", child.name, proc.pid, child.incarnation)

    def _on_exit(self, child: Child, proc: BaseProcess) -> None:
        assert self._loop is not None
        self._loop.remove_reader(proc.sentinel)
        proc.join(0)
        code = proc.exitcode
        proc.close()
        if child.process is not proc:
            return
        child.process, child.pid = None, None
        child.exited.set()
        how = f"signal {signal.Signals(-code).name}" if code is not None and code < 0 else f"code {code}"
        if self._stopping or child.state == "STOPPING":
            child.state = "EXITED"
            log.info("%s stopped (%s)", child.name, how)
            return
        if not should_restart(child.spec.restart, code):
            child.state = "EXITED" if code == 0 else "FAILED"
            log.info("%s exited (%s); restart type %s: not restarted", child.name, how,
                     child.spec.restart)
            return
        self._after_failure(child, f"died ({how})")

    def _after_failure(self, child: Child, how: str) -> None:
        """Restart ``child`` after back-off, unless that breaks the intensity limit."""
        assert self._loop is not None
        child.state = "DOWN"
        log.warning("%s %s", child.name, how)
        now = time.monotonic()
        exceeded = self.policy.record(child.name, now)
        if exceeded is not None:
            self.fail(ExitCode.RESTART_INTENSITY, f"{exceeded}; giving up")
            return
        child.restarts += 1
        delay = self.policy.backoff_s(child.name)
        log.info("restarting %s in %.0f ms", child.name, delay * 1000)
        child.restart_timer = self._loop.call_later(delay, self._spawn, child)

    def _record_children(self) -> None:
        self.run_dir.record_children({c.name: c.pid for c in self.children
                                      if c.pid is not None and c.process is not None})

    # -- heartbeats and liveness ----------------------------------------------------------------

    def _on_message(self, topic: bytes, msg: BusMessage) -> None:
        if not isinstance(msg, Heartbeat):
            self.ops.on_message(topic, msg)
            return
        child = self._by_name.get(msg.src)
        if child is None or msg.inc != child.incarnation or child.state in ("DOWN", "EXITED"):
            return  # a stale heartbeat of an earlier incarnation
        child.last_heartbeat = msg
        child.last_heartbeat_at = time.monotonic()
        if msg.state == "RUNNING" and child.state == "STARTING":
            child.state = "RUNNING"
            child.running.set()
            log.info("%s running (pid %d, incarnation %d, %.1f ms after spawn)", child.name,
                     msg.pid, msg.inc, (child.last_heartbeat_at - child.spawned_at) * 1000)

    async def _watch_liveness(self) -> None:
        timeout = self.cfg.heartbeat_timeout_ms / 1000
        start_timeout = self.cfg.start_timeout_ms / 1000
        while True:
            await asyncio.sleep(CHECK_INTERVAL_S)
            now = time.monotonic()
            for child in self.children:
                if child.state == "RUNNING" and now - child.last_heartbeat_at > timeout:
                    self._kill_hung(child, f"no heartbeat for {(now - child.last_heartbeat_at) * 1000:.0f} ms")
                elif (child.state == "STARTING" and child.restarts
                      and now - child.spawned_at > start_timeout):
                    self._kill_hung(child, "did not report RUNNING after a restart within "
                                    f"{self.cfg.start_timeout_ms} ms")

    def _kill_hung(self, child: Child, why: str) -> None:
        assert child.pid is not None
        log.warning("%s (pid %d) is hung: %s; killing it", child.name, child.pid, why)
        child.state = "HUNG"
        _signal(child.pid, signal.SIGKILL)

    async def _collect_stats(self) -> None:
        while True:
            for child in self.children:
                if child.ps is not None and child.state in ("RUNNING", "STARTING"):
                    try:
                        child.cpu_percent = child.ps.cpu_percent(None)
                        child.rss_bytes = child.ps.memory_info().rss
                    except psutil.Error:
                        pass
            await asyncio.sleep(STATS_INTERVAL_S)

    def status(self) -> dict[str, Any]:
        now = time.monotonic()
        actors = []
        for c in self.children:
            hb = c.last_heartbeat
            actors.append({
                "name": c.name, "pid": c.pid, "state": c.state, "incarnation": c.incarnation,
                "restarts": c.restarts,
                "heartbeat_age_ms": round((now - c.last_heartbeat_at) * 1000, 1) if hb else None,
                "rss_bytes": c.rss_bytes, "cpu_percent": c.cpu_percent,
                "loop_lag_us": hb.loop_lag_us if hb else None,
                "msgs_in": hb.msgs_in if hb else 0, "msgs_out": hb.msgs_out if hb else 0,
                "gaps": hb.gaps if hb else 0, "extra": hb.extra if hb else {},
            })
        return {"supervisor": {"pid": os.getpid(), "run_dir": str(self.run_dir.path),
                               "config": self.config.path, "stopping": self._stopping,
                               "uptime_s": round(now - self._started_at, 1),
                               "restarts_in_period": self.policy.recent(now)},
                "actors": actors}


class _Done(Exception):
    """Ends the supervisor's TaskGroup once every actor has stopped."""


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _ps(pid: int) -> psutil.Process | None:
    try:
        proc = psutil.Process(pid)
        proc.cpu_percent(None)  # first call primes the counter
        return proc
    except psutil.Error:
        return None
