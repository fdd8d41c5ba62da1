"""The recorder under the supervisor: SIGKILLed mid-file, its file still reads up to the last
second, and its replacement appends to the same hour's file readably."""

from __future__ import annotations

import gzip
import os
import signal
import time
from pathlib import Path
from typing import Any

from karb.messages import BookUpdate
from karb.recording import read_messages, recording_files
from tests.support import SupervisorProc, eventually, free_ports, write_config

MARKETS = ["KRW-BTC", "KRW-ETH"]


def config(workdir: Path) -> Path:
    up = free_ports(2)
    bt = up + 1
    venues = [{"name": n, "rest_url": f"http://127.0.0.1:{p}",
               "ws_url": f"ws://127.0.0.1:{p}/websocket/v1", "credentials": "sim"}
              for n, p in (("upbit", up), ("bithumb", bt))]
    sim = {"seed": 3, "step_ms": 100, "dislocation": {"rate_per_min": 0.0},
           "upbit": {"port": up}, "bithumb": {"port": bt}}
    actors: list[dict[str, Any]] = [{"name": "sim", "kind": "sim"},
              {"name": "feed.upbit", "kind": "feed", "params": {"venue": "upbit"}},
              {"name": "feed.bithumb", "kind": "feed", "params": {"venue": "bithumb"}},
              {"name": "recorder", "kind": "recorder", "params": {}}]
    return write_config(workdir, actors, venues=venues, markets=MARKETS, sim=sim)


def books(directory: Path) -> list[tuple[int, BookUpdate]]:
    return [(ts, msg) for ts, _, msg in read_messages(directory) if isinstance(msg, BookUpdate)]


def test_a_sigkilled_recorder_loses_at_most_the_last_second(workdir: Path) -> None:
    with SupervisorProc(config(workdir)) as sup:
        actors = sup.wait_running()
        directory = sup.run_dir / "recording"
        # Two flushes at least: the file holds a second or more of books from both venues.
        eventually(lambda: len({m.venue for _, m in books(directory)}) == 2
                   and books(directory)[-1][0] - books(directory)[0][0] > 1.2e9,
                   timeout=15, what="two seconds of books on disk")
        pid = actors["recorder"]["pid"]
        os.kill(pid, signal.SIGKILL)
        killed_ns = time.time_ns()
        before = books(directory)  # the killed recorder's file, read as it was left
        assert before[-1][0] >= killed_ns - 1.5e9, "more than the last second was lost"
        assert [ts for ts, _ in before] == sorted(ts for ts, _ in before)

        sup.replaced("recorder", pid)
        after = eventually(lambda: [b for b in books(directory) if b[0] > killed_ns],
                           timeout=10, what="books recorded by the restarted recorder")
        assert {m.venue for _, m in after} <= {"upbit", "bithumb"}
        for file in recording_files(directory):  # what zcat would do: every member whole
            gzip.decompress(file.read_bytes())
