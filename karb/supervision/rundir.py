"""The run dir: owned by exactly one supervisor at a time (a lock file), holding the bus and
control ipc files, the record of child pids, and ``supervisor.json`` (pid, status URL).

Binding an ipc path another live process holds silently steals it, so the lock is what makes
ipc endpoints safe. ``flock`` is released by the kernel when its holder dies, even by SIGKILL;
the next supervisor then reaps whatever children the dead one left (by pid *and* start time,
so a recycled pid is never killed) before it starts its own.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
from pathlib import Path

import psutil

log = logging.getLogger(__name__)

LOCK_FILE = "supervisor.lock"
CHILDREN_FILE = "children.json"
INFO_FILE = "supervisor.json"
SOCKET_DIRS = ("bus", "ctl")


class RunDirBusy(Exception):
    """Another supervisor holds this run dir."""


class RunDir:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock_fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise RunDirBusy naming the holder's pid."""
        self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise RunDirBusy(f"run dir {self.path} is in use by the supervisor with pid "
                                 f"{holder}; stop it first or use another supervisor.run_dir") from None
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd

    def prepare(self) -> None:
        """Make the run dir ready for a fresh start: reap stragglers, clear stale sockets."""
        self.reap_stragglers()
        for name in SOCKET_DIRS:
            folder = self.path / name
            folder.mkdir(exist_ok=True)
            for stale in folder.iterdir():
                stale.unlink(missing_ok=True)

    def reap_stragglers(self) -> int:
        """Kill children recorded by an earlier supervisor of this run dir that still run."""
        record = self.path / CHILDREN_FILE
        try:
            entries = json.loads(record.read_text())
        except (FileNotFoundError, ValueError):
            return 0
        killed = []
        for entry in entries:
            try:
                proc = psutil.Process(entry["pid"])
                if abs(proc.create_time() - entry["create_time"]) > 0.01:
                    continue  # the pid was recycled: not ours
                proc.kill()
                killed.append(proc)
                log.warning("killed leftover %s (pid %d) of a previous supervisor",
                            entry["name"], entry["pid"])
            except (psutil.NoSuchProcess, psutil.AccessDenied, KeyError, TypeError):
                continue
        psutil.wait_procs(killed, timeout=2)
        record.unlink(missing_ok=True)
        return len(killed)

    def record_children(self, children: dict[str, int]) -> None:
        """Remember live child pids (name → pid) so a successor can reap them."""
        entries = []
        for name, pid in children.items():
            try:
                entries.append({"name": name, "pid": pid,
                                "create_time": psutil.Process(pid).create_time()})
            except psutil.NoSuchProcess:
                continue
        _write_atomic(self.path / CHILDREN_FILE, json.dumps(entries))

    def write_info(self, info: dict[str, object]) -> None:
        _write_atomic(self.path / INFO_FILE, json.dumps(info))

    def release(self) -> None:
        """Remove what this run left and drop the lock (the lock file itself stays)."""
        for name in SOCKET_DIRS:
            folder = self.path / name
            if folder.is_dir():
                for stale in folder.iterdir():
                    stale.unlink(missing_ok=True)
                folder.rmdir()
        (self.path / CHILDREN_FILE).unlink(missing_ok=True)
        (self.path / INFO_FILE).unlink(missing_ok=True)
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None


def supervisor_running(path: Path) -> bool:
    """True if a live supervisor holds the run dir at ``path``."""
    try:
        fd = os.open(path / LOCK_FILE, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
