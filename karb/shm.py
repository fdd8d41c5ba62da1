"""Shared-memory top-of-book table: one segment per run, one 128-byte slot per (venue, market).

The supervisor creates the segment (a file in ``/dev/shm`` opened and mapped directly with
``mmap``: the multiprocessing resource tracker would unlink it when an attaching process exits,
cpython #82300) and removes it at exit. The book actor is the only writer; strategy, execution,
``tools/tap.py --shm`` and the status page read it. Restarting the book actor does not move the
segment, so readers keep their mapping.

Byte layout (little-endian, native alignment)::

    header, 64 bytes at offset 0
      0  magic      8s   b"KARBTOB1"
      8  version    u32  2
     12  slot_size  u32  128
     16  n_slots    u32  n_venues * n_markets
     20  n_venues   u32
     24  n_markets  u32
     28  (reserved) u32
     32  created_ns i64  time.time_ns() at creation
     40  (reserved) 24 bytes

    slot i at offset 64 + 128 * i, i = venue_index * n_markets + market_index (config order)
      0  seq        u64  seqlock counter: odd while a write is in progress
      8  bid_px     f64
     16  bid_size   f64
     24  ask_px     f64
     32  ask_size   f64
     40  ts_event   i64  ns, the venue's time of the book
     48  ts_init    i64  ns, when the feed received it
     56  flags      u64  VALID | CROSSED | STALE
     64  recv_mono  i64  ns, time.monotonic_ns() when the feed received it: the one clock
                         that staleness may be judged by across processes (wall clocks step)
     72  (padding)  56 bytes, so slots stay cache-line aligned

Seqlock protocol. Writer: read ``seq``; store ``seq + 1`` (odd); store the fields; store
``seq + 2`` (even). Reader: read ``seq``; if odd, retry; copy the slot; read ``seq`` again; if it
changed, retry. Each store and load is a single aligned 8-byte access (atomic on x86-64 and
arm64), and x86-64 keeps stores in order and loads in order, which is all the protocol needs.

Crash safety. A reader killed mid-read changes nothing. A writer killed mid-write leaves ``seq``
odd: readers give up after a bounded number of retries and report the slot unreadable (never a
torn record), and the next writer's :meth:`TopOfBookTable.recover` marks such slots STALE and
makes ``seq`` even again.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import struct
import time
from pathlib import Path
from typing import NamedTuple

MAGIC = b"KARBTOB1"
VERSION = 2
HEADER_SIZE = 64
SLOT_SIZE = 128

VALID = 1
CROSSED = 2
STALE = 4

_HEADER = struct.Struct("<8sIIIIIIq24x")
_SEQ = struct.Struct("<Q")
_BODY = struct.Struct("<ddddqqQq")  # everything after seq
_SLOT = struct.Struct("<QddddqqQq56x")
assert _HEADER.size == HEADER_SIZE and _SLOT.size == SLOT_SIZE

# Enough for a writer preempted mid-write to finish; past it the slot counts as unreadable.
READ_RETRIES = 10_000

SHM_DIR = Path("/dev/shm")


class ShmError(Exception):
    """The segment is missing or does not match the config."""


class TopOfBook(NamedTuple):
    seq: int
    bid_px: float
    bid_size: float
    ask_px: float
    ask_size: float
    ts_event: int
    ts_init: int
    flags: int
    recv_mono: int


def segment_path(run_dir: Path) -> Path:
    """The segment of one run dir: the name is derived from the dir, so every process finds it."""
    digest = hashlib.sha1(str(run_dir.resolve()).encode()).hexdigest()[:16]
    return SHM_DIR / f"karb-{digest}.tob"


class TopOfBookTable:
    """A mapped top-of-book segment. Create with :meth:`create`, open with :meth:`attach`."""

    def __init__(self, path: Path, mm: mmap.mmap, n_venues: int, n_markets: int) -> None:
        self.path = path
        self._mm = mm
        self.n_venues = n_venues
        self.n_markets = n_markets
        self.n_slots = n_venues * n_markets

    @classmethod
    def create(cls, path: Path, n_venues: int, n_markets: int) -> TopOfBookTable:
        """Create (replacing any leftover of a killed run) and zero the segment."""
        n_slots = n_venues * n_markets
        size = HEADER_SIZE + SLOT_SIZE * max(n_slots, 1)
        path.unlink(missing_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.ftruncate(fd, size)
            mm = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        _HEADER.pack_into(mm, 0, MAGIC, VERSION, SLOT_SIZE, n_slots, n_venues, n_markets, 0,
                          time.time_ns())
        return cls(path, mm, n_venues, n_markets)

    @classmethod
    def attach(cls, path: Path, n_venues: int, n_markets: int, writable: bool = False
               ) -> TopOfBookTable:
        """Map an existing segment and check it has the shape the config expects."""
        try:
            fd = os.open(path, os.O_RDWR if writable else os.O_RDONLY)
        except FileNotFoundError:
            raise ShmError(f"no top-of-book segment at {path}: is the supervisor running?") from None
        try:
            size = os.fstat(fd).st_size
            if size < HEADER_SIZE:
                raise ShmError(f"{path} is too small to be a top-of-book segment")
            access = mmap.ACCESS_WRITE if writable else mmap.ACCESS_READ
            mm = mmap.mmap(fd, size, access=access)
        finally:
            os.close(fd)
        magic, version, slot_size, n_slots, nv, nm, _, _ = _HEADER.unpack_from(mm, 0)
        if magic != MAGIC or version != VERSION or slot_size != SLOT_SIZE:
            mm.close()
            raise ShmError(f"{path} is not a version-{VERSION} top-of-book segment")
        if (nv, nm) != (n_venues, n_markets):
            mm.close()
            raise ShmError(f"{path} has {nv} venues x {nm} markets, the config {n_venues} x {n_markets}")
        return cls(path, mm, nv, nm)

    def slot(self, venue_index: int, market_index: int) -> int:
        if not (0 <= venue_index < self.n_venues and 0 <= market_index < self.n_markets):
            raise IndexError(f"no slot for venue {venue_index}, market {market_index}")
        return venue_index * self.n_markets + market_index

    # -- writer side (one writer per slot) -------------------------------------------------

    def write(self, slot: int, bid_px: float, bid_size: float, ask_px: float, ask_size: float,
              ts_event: int, ts_init: int, flags: int, recv_mono: int = 0) -> None:
        mm = self._mm
        off = HEADER_SIZE + SLOT_SIZE * slot
        seq = _SEQ.unpack_from(mm, off)[0]
        _SEQ.pack_into(mm, off, seq + 1)
        _BODY.pack_into(mm, off + 8, bid_px, bid_size, ask_px, ask_size, ts_event, ts_init, flags,
                        recv_mono)
        _SEQ.pack_into(mm, off, seq + 2)

    def recover(self) -> int:
        """For a new writer: finish the writes a killed writer left half done (mark them STALE,
        even ``seq``). Returns how many slots needed it."""
        mm = self._mm
        fixed = 0
        for slot in range(self.n_slots):
            off = HEADER_SIZE + SLOT_SIZE * slot
            seq = _SEQ.unpack_from(mm, off)[0]
            if seq & 1:
                _BODY.pack_into(mm, off + 8, 0.0, 0.0, 0.0, 0.0, 0, 0, STALE, 0)
                _SEQ.pack_into(mm, off, seq + 1)
                fixed += 1
        return fixed

    # -- reader side -------------------------------------------------------------------------

    def read(self, slot: int) -> TopOfBook | None:
        """A consistent copy of one slot, or None if a write never finished (writer killed)."""
        mm = self._mm
        off = HEADER_SIZE + SLOT_SIZE * slot
        unpack_seq = _SEQ.unpack_from
        unpack_slot = _SLOT.unpack_from
        for _ in range(READ_RETRIES):
            seq = unpack_seq(mm, off)[0]
            if seq & 1:
                continue
            record = unpack_slot(mm, off)
            if unpack_seq(mm, off)[0] == seq == record[0]:
                return TopOfBook._make(record)
        return None

    def close(self) -> None:
        self._mm.close()

    def unlink(self) -> None:
        self.path.unlink(missing_ok=True)
