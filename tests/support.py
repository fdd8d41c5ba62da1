"""Shared test helpers: deadlines instead of sleeps, and a real supervisor in a subprocess."""

from __future__ import annotations

import asyncio
import json
import random
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import psutil
import yaml

from karb.shm import segment_path

REPO = Path(__file__).resolve().parent.parent
T = TypeVar("T")


def eventually(check: Callable[[], T | None], timeout: float = 10.0, interval: float = 0.01,
               what: str = "condition") -> T:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except (OSError, ValueError, KeyError, AssertionError) as exc:
            last_error = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}"
                         + (f" (last error: {last_error!r})" if last_error else ""))


async def eventually_async(check: Callable[[], T | None], timeout: float = 10.0,
                           interval: float = 0.01, what: str = "condition") -> T:
    """``eventually`` for coroutines: poll without blocking the event loop."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def free_ports(count: int = 1) -> int:
    """The first of ``count`` consecutive free TCP ports on 127.0.0.1, taken below the kernel's
    ephemeral range (32768+), where outgoing connections could take them before we bind."""
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(20_000, 32_000 - count)
        held = []
        try:
            for port in range(base, base + count):
                sock = socket.socket()
                held.append(sock)
                sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for sock in held:
                sock.close()
    raise RuntimeError("no free block of ports")


def short_tmp_dir() -> Path:
    """ipc paths must stay under 107 bytes, so run dirs live directly under /tmp."""
    return Path(tempfile.mkdtemp(prefix="karb-t-", dir="/tmp"))


def write_config(directory: Path, actors: list[dict[str, Any]], **sections: Any) -> Path:
    supervisor = {"run_dir": str(directory / "run"), "heartbeat_interval_ms": 100,
                  "heartbeat_timeout_ms": 600, "status_port": 0, "shutdown_timeout_ms": 2000}
    supervisor.update(sections.pop("supervisor", {}))
    data = {"supervisor": supervisor, "actors": actors, **sections}
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


class SupervisorProc:
    """``python supervisor.py CONFIG`` in a subprocess; kills the whole tree on close."""

    def __init__(self, config: Path) -> None:
        self.config = config
        self.run_dir = Path(yaml.safe_load(config.read_text())["supervisor"]["run_dir"])
        self.log_path = config.parent / f"supervisor-{time.monotonic_ns()}.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([sys.executable, str(REPO / "supervisor.py"), str(config)],
                                     cwd=REPO, stdout=self._log, stderr=subprocess.STDOUT)
        self._seen: set[int] = set()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def status(self) -> dict[str, Any]:
        info = json.loads((self.run_dir / "supervisor.json").read_text())
        with urllib.request.urlopen(info["status_url"], timeout=2) as resp:
            return json.load(resp)

    def actors(self) -> dict[str, dict[str, Any]]:
        found = {a["name"]: a for a in self.status()["actors"]}
        self._seen.update(a["pid"] for a in found.values() if a["pid"])
        return found

    def replaced(self, name: str, old_pid: int, timeout: float = 20.0) -> dict[str, Any]:
        """Wait for a new process of ``name`` to be RUNNING (one status snapshot per look)."""
        def check() -> dict[str, Any] | None:
            actor = self.actors()[name]
            return actor if actor["state"] == "RUNNING" and actor["pid"] not in (None, old_pid) else None
        return eventually(check, timeout, what=f"{name} replaced and RUNNING")

    def wait_running(self, timeout: float = 20.0) -> dict[str, dict[str, Any]]:
        def all_running() -> dict[str, dict[str, Any]] | None:
            assert self.proc.poll() is None, f"supervisor exited early:\n{self.log()}"
            actors = self.actors()
            return actors if all(a["state"] == "RUNNING" for a in actors.values()) else None
        return eventually(all_running, timeout, what="every actor RUNNING")

    def descendants(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def wait_exit(self, timeout: float = 20.0) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"supervisor still running after {timeout} s:\n{self.log()}") from None

    def close(self) -> None:
        """Stop the supervisor (SIGTERM, then SIGKILL) and kill whatever is left, including
        actors orphaned by a killed supervisor and the segment such a run leaves."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                pass
        victims = self.descendants()
        for pid in self._seen:
            try:
                victims.append(psutil.Process(pid))
            except psutil.NoSuchProcess:
                pass
        if self.proc.poll() is None:
            self.proc.kill()
        for victim in victims:
            try:
                victim.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(victims, timeout=5)
        self.proc.wait(5)
        self._log.close()
        segment_path(self.run_dir).unlink(missing_ok=True)

    def __enter__(self) -> SupervisorProc:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def pid_gone(pid: int) -> bool:
    try:
        proc = psutil.Process(pid)
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
