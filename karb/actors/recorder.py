"""``recorder``: the bus to hourly files in the run dir, for replay and for the record.

Optional in any config. It subscribes to the chosen topic families on every other actor's
publisher (publishers that never send them cost nothing) and appends each message, as
published, to ``<run_dir>/<directory>/YYYYMMDDTHH.karb.gz``: one gzip member per
``flush_interval_ms``, so a SIGKILL loses at most that plus ``read_interval_ms`` (the
bus is read in batches; a second in all with the defaults). The file format, and the reader
(:func:`karb.recording.read_records`), are in :mod:`karb.recording`; ``zcat`` reads the files.

It records the normalised books (``md``) and our own ``sig`` / ``ord`` / ``fill`` / ``pos`` by
default; ``tob``, ``depth`` and ``alert`` can be added. Heartbeats are never recorded.
A restarted recorder appends to the same hour's file after cutting off a torn last member.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Literal

import msgspec

from karb import topics
from karb.actors.base import Actor
from karb.messages import BusMessage, encode
from karb.recording import RecordWriter

Family = Literal["md", "sig", "ord", "fill", "pos", "tob", "depth", "alert", "trade"]

PREFIXES: dict[str, bytes] = {
    "md": topics.MARKET_DATA, "sig": topics.SIGNAL, "ord": topics.ORDER, "fill": topics.FILL,
    "pos": topics.POSITION, "tob": topics.TOP_OF_BOOK, "depth": topics.DEPTH,
    "alert": topics.ALERT, "trade": topics.TRADE,
}


class RecorderParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    record: list[Family] = msgspec.field(default_factory=lambda: ["md", "sig", "ord", "fill", "pos"])
    directory: str = "recording"  # under the run dir, unless absolute
    # The buffer is written as one gzip member this often. A SIGKILL loses at most this plus
    # read_interval_ms (messages still queued in ZeroMQ): a second with the defaults.
    flush_interval_ms: int = 900
    # zlib level: 1 is the cheapest in CPU; higher levels save little on float-heavy books.
    compress_level: int = 1
    # The bus is read in batches this often, not on every message: a wake-up per message
    # was most of the recorder's CPU. ``recv_ns`` is when a batch was read, so up to this late.
    read_interval_ms: int = 100

    def __post_init__(self) -> None:
        if not self.record:
            raise ValueError("record must name at least one of " + ", ".join(PREFIXES))
        if self.flush_interval_ms <= 0 or self.read_interval_ms <= 0:
            raise ValueError("flush_interval_ms and read_interval_ms must be greater than 0")
        if self.read_interval_ms > self.flush_interval_ms:
            raise ValueError("read_interval_ms must not exceed flush_interval_ms")
        if not 1 <= self.compress_level <= 9:
            raise ValueError("compress_level must be 1 to 9")


class Recorder(Actor):
    Params = RecorderParams

    def subscriptions(self) -> list[tuple[str, bytes]]:
        prefixes = [PREFIXES[f] for f in dict.fromkeys(self.params.record)]
        return [(actor.name, prefix) for actor in self.config.actors if actor.name != self.name
                for prefix in prefixes]

    def subscriber_poll_interval_s(self) -> float | None:
        return self.params.read_interval_ms / 1000

    async def on_start(self) -> None:
        directory = self.config.run_dir / self.params.directory
        self.writer = RecordWriter(directory, self.params.compress_level, self._repaired)
        self.write_errors = 0
        self.spawn(self._flusher(), name="flush")
        self.log.info("recording %s to %s", ", ".join(self.params.record), directory)

    def on_message(self, topic: bytes, msg: BusMessage) -> None:
        # The subscriber decoded it; encoding again gives the bytes that were published.
        try:
            self.writer.add(time.time_ns(), topic, encode(msg))
        except OSError as exc:  # opening the next hour's file
            self._write_failed(exc)

    async def _flusher(self) -> None:
        interval = self.params.flush_interval_ms / 1000
        while True:
            await asyncio.sleep(interval)
            try:
                self.writer.flush()
            except OSError as exc:
                self._write_failed(exc)

    def _write_failed(self, exc: OSError) -> None:
        # A recorder is an observer: a full disk costs records (counted, logged), never a
        # crash loop whose restarts could exhaust the supervisor's intensity and stop trading.
        self.write_errors += 1
        if self.write_errors == 1 or self.write_errors % 60 == 0:
            self.log.error("cannot write the recording (%s): records lost (%d failures)",
                           exc.strerror or exc, self.write_errors)

    def _repaired(self, path: Path, cut: int) -> None:
        self.log.warning("%s: cut off a torn last member (%d bytes) a killed recorder left",
                         path.name, cut)

    async def on_stop(self) -> None:
        self.writer.close()

    def heartbeat_extra(self) -> dict[str, float]:
        w = self.writer if hasattr(self, "writer") else None
        if w is None:
            return {}
        return {"records": float(w.records), "bytes_in": float(w.bytes_in),
                "bytes_out": float(w.bytes_out), "members": float(w.members),
                "repaired_bytes": float(w.repaired_bytes),
                "write_errors": float(self.write_errors)}
