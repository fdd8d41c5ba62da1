"""A seqlock reader never returns a torn record, even while the writer is SIGKILLed mid-write."""

from __future__ import annotations

import multiprocessing
import random
import time
from pathlib import Path

from karb.shm import VALID, TopOfBook, TopOfBookTable, segment_path

N_MARKETS = 4


def hammer(path: str) -> None:
    """Write records whose every field derives from one counter, as fast as possible."""
    table = TopOfBookTable.attach(Path(path), 1, N_MARKETS, writable=True)
    table.recover()
    n = int(time.monotonic_ns())
    while True:
        n += 1
        v = float(n)
        table.write(n % N_MARKETS, v, v + 1, v + 2, v + 3, n, n + 1, VALID, n + 2)


def consistent(top: TopOfBook) -> bool:
    bid, bid_sz, ask, ask_sz = top.bid_px, top.bid_size, top.ask_px, top.ask_size
    ts_event, ts_init = top.ts_event, top.ts_init
    recv_mono = top.recv_mono
    return (bid_sz == bid + 1 and ask == bid + 2 and ask_sz == bid + 3
            and ts_event == int(bid) and ts_init == ts_event + 1 and recv_mono == ts_event + 2)


def test_reader_never_sees_a_torn_record_while_writers_are_killed(workdir: Path) -> None:
    path = segment_path(workdir)
    table = TopOfBookTable.create(path, 1, N_MARKETS)
    ctx = multiprocessing.get_context("spawn")
    rng = random.Random(7)
    reads = unreadable = 0
    writer = None
    try:
        for _ in range(8):
            writer = ctx.Process(target=hammer, args=(str(path),), daemon=True)
            writer.start()
            deadline = time.monotonic() + rng.uniform(0.2, 0.5)
            while time.monotonic() < deadline:
                for slot in range(N_MARKETS):
                    top = table.read(slot)
                    if top is None:
                        unreadable += 1
                    elif top.flags == VALID:
                        assert consistent(top), f"torn record {top}"
                        reads += 1
            writer.kill()  # SIGKILL, at whatever instant it happens to be
            writer.join(5)
        assert reads > 1000
        # Slots a killed writer left odd are recovered by the next writer, never left torn.
        table_fixed = TopOfBookTable.attach(path, 1, N_MARKETS, writable=True)
        table_fixed.recover()
        assert all(table.read(s) is not None for s in range(N_MARKETS))
        table_fixed.close()
    finally:
        if writer is not None and writer.is_alive():
            writer.kill()
        table.close()
        table.unlink()
