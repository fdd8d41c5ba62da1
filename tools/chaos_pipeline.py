"""The pipeline ``tools/chaos.py`` runs: a copy of a sim config on a fresh run dir and free
ports, the real ``supervisor.py`` in a subprocess, the simulator's ``/_sim/`` endpoints and
a read-only look at the execution journal."""

from __future__ import annotations

import ctypes
import json
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import psutil
import yaml

from karb.config import load_config
from karb.shm import segment_path

REPO = Path(__file__).resolve().parent.parent
# Far more restarts than a run can make: the tool spaces its kills anyway, and a supervisor that
# gives up would end the run rather than test it (per-actor or global intensity alike).
MAX_RESTARTS = 100_000
# Short, so each actor's restart back-off (doubling per restart within the period) stays small.
PERIOD_S = 10.0
JOURNAL_TABLES = ("legs", "intents", "events", "halts")
PR_SET_PDEATHSIG = 1


def free_ports(count: int) -> int:
    """The first of ``count`` consecutive free ports on 127.0.0.1, below the ephemeral range."""
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(20_000, 32_000 - count)
        held: list[socket.socket] = []
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
    raise RuntimeError("no free block of ports on 127.0.0.1")


def chaos_config(source: Path, workdir: Path, seed: int) -> Path:
    """``source`` with its run dir in ``workdir``, free ports, explicit starting balances (the
    audit needs them exactly) and restart limits a chaos run cannot reach."""
    data = yaml.safe_load(source.read_text())
    if not data.get("sim"):
        raise ValueError(f"{source} has no sim: section; chaos runs only against the simulator")
    loaded = load_config(source)
    # The simulator's own default account, made explicit.
    from karb.sim.server import default_account
    sup = data.setdefault("supervisor", {})
    base = free_ports(3)
    sup.update(run_dir=str(workdir / "run"), status_port=base + 2,
               max_restarts=max(int(sup.get("max_restarts", 0)), MAX_RESTARTS),
               period_s=min(float(sup.get("period_s", PERIOD_S)), PERIOD_S))
    ports = {"upbit": base, "bithumb": base + 1}
    for venue in data.get("venues", []):
        port = ports[venue["name"]]
        venue["rest_url"] = f"http://127.0.0.1:{port}"
        venue["ws_url"] = f"ws://127.0.0.1:{port}/websocket/v1"
    sim = data["sim"]
    sim["seed"] = seed
    for name, port in ports.items():
        sim.setdefault(name, {})["port"] = port
    if not sim.get("accounts"):
        account = default_account(list(loaded.markets), dict(sim.get("prices") or {}))
        sim["accounts"] = [{"access_key": account.access_key, "secret_key": account.secret_key,
                            "balances": dict(account.balances)}]
    if data.get("bus", {}).get("transport") == "tcp":
        data["bus"]["tcp_base_port"] = free_ports(4 * len(data["actors"]) + 4)
    path = workdir / "chaos.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    load_config(path)  # still valid: fail here, in one line, rather than in the supervisor
    return path


def _die_with_parent() -> None:
    """In the supervisor's process before exec: SIGTERM it if this tool dies (even SIGKILLed),
    so that no pipeline outlives the run."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class Pipeline:
    """``python supervisor.py CONFIG``; ``stop()`` ends it and everything it started."""

    def __init__(self, config_path: Path) -> None:
        self.config_path = config_path
        self.config = load_config(config_path)
        self.run_dir = Path(self.config.run_dir)
        self.log_path = config_path.parent / "supervisor.log"
        self.started_at = time.time()  # what it started is younger: never kill a recycled pid
        with open(self.log_path, "wb") as log:
            # preexec_fn is safe here: the tool has started no thread yet (zmq comes later).
            self.proc = subprocess.Popen(
                [sys.executable, str(REPO / "supervisor.py"), str(config_path)], cwd=REPO,
                stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
        self.seen_pids: set[int] = set()
        self.status_url = f"http://127.0.0.1:{self.config.supervisor.status_port}/api/status"
        self.rest: dict[str, str] = {v.name: v.rest_url for v in self.config.venues}
        assert self.config.sim is not None
        self.access_key = (self.config.sim.accounts[0].access_key if self.config.sim.accounts
                           else "sim-access")

    def actors(self) -> dict[str, dict[str, Any]]:
        with urllib.request.urlopen(self.status_url, timeout=2) as resp:
            found = {a["name"]: a for a in json.load(resp)["actors"]}
        self.seen_pids.update(a["pid"] for a in found.values() if a.get("pid"))
        return found

    def wait_running(self, timeout_s: float) -> dict[str, dict[str, Any]]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the supervisor exited with {self.proc.returncode} at start; "
                                   f"see {self.log_path}")
            try:
                actors = self.actors()
                if actors and all(a["state"] == "RUNNING" for a in actors.values()):
                    sim_json = self.run_dir / "sim.json"
                    if sim_json.exists():  # the ports the simulator really took
                        found = json.loads(sim_json.read_text())
                        self.rest.update({v: e["rest"] for v, e in found.items()})
                    return actors
            except (OSError, ValueError):
                pass
            time.sleep(0.2)
        raise RuntimeError(f"not every actor RUNNING after {timeout_s:.0f} s; see {self.log_path}")

    # -- the simulator ------------------------------------------------------------------------

    def post(self, venue: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        """(HTTP status, JSON body or text); a 4xx/5xx is returned, not raised."""
        req = urllib.request.Request(self.rest[venue] + path, data=json.dumps(body or {}).encode(),
                                     method="POST", headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                return resp.status, json.load(resp)
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(errors="replace")[:200]

    def get(self, venue: str, path: str) -> Any:
        with urllib.request.urlopen(self.rest[venue] + path, timeout=10) as resp:
            return json.load(resp)

    def prices(self) -> dict[str, float]:
        """Last trade price per market, from the first venue's public ticker."""
        venue = next(iter(self.rest))
        for attempt in range(5):  # the public API is rate limited; /_sim/ is not
            try:
                rows = self.get(venue, "/v1/ticker?markets=" + ",".join(self.config.markets))
                return {r["market"]: float(r["trade_price"]) for r in rows}
            except urllib.error.HTTPError:
                if attempt == 4:
                    raise
                time.sleep(0.5)
        raise AssertionError("unreachable")

    def initial_balances(self) -> dict[str, dict[str, float]]:
        assert self.config.sim is not None
        balances = dict(self.config.sim.accounts[0].balances)
        return {v: dict(balances) for v in self.rest}

    # -- the journal --------------------------------------------------------------------------

    def journal_path(self) -> Path:
        for actor in self.config.actors:
            if actor.kind == "execution":
                named = actor.params.get("journal_path") or actor.params.get("journal")
                if named:
                    return Path(named) if Path(named).is_absolute() else self.run_dir / named
        return self.run_dir / "journal.sqlite"

    def journal(self) -> dict[str, list[dict[str, Any]]]:
        """Every row of the tables the audit reads, read-only (a missing table reads empty)."""
        out: dict[str, list[dict[str, Any]]] = {t: [] for t in JOURNAL_TABLES}
        path = self.journal_path()
        if not path.exists():
            return out
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        db.row_factory = sqlite3.Row
        try:
            for table in JOURNAL_TABLES:
                try:
                    out[table] = [dict(r) for r in db.execute(f"SELECT * FROM {table}")]
                except sqlite3.OperationalError:
                    pass
        finally:
            db.close()
        return out

    # -- stopping -----------------------------------------------------------------------------

    def stop(self, timeout_s: float = 60.0) -> int | None:
        """SIGTERM and wait; None if it had to be killed. Then nothing it started is left."""
        code: int | None = self.proc.poll()
        if code is None:
            self.proc.terminate()
            try:
                code = self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                code = None
        victims = []
        try:
            victims = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            pass
        for pid in self.seen_pids:
            try:
                proc = psutil.Process(pid)
                if proc.create_time() >= self.started_at - 1:
                    victims.append(proc)
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
        segment_path(self.run_dir).unlink(missing_ok=True)
        return code


def scratch_dir() -> Path:
    """Directly under /tmp: ipc socket paths must stay under 107 bytes."""
    return Path(tempfile.mkdtemp(prefix="karb-chaos-", dir="/tmp"))


def remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)

