"""Recordings of the bus: hourly files of gzip members, one member per second, readable by zcat.

Layout. A recording is a directory of files named ``YYYYMMDDTHH.karb.gz`` (the UTC hour of
the records inside; sorting the names sorts the hours). Each file is a concatenation of
complete gzip members (RFC 1952; ``zcat`` and ``gzip.open`` read it whole). Each member
holds the records of one flush (one second by default), so a process killed at any moment
loses at most what it had not flushed yet. Every member's header carries one FEXTRA
subfield, ``SI1 SI2 = 'K' 'R'``, ``LEN = 4``, whose data is the member's total size in bytes
(uint32 little-endian, as the BGZF format of bioinformatics does it): a reader or a
restarted writer can walk from member to member without inflating them, and a torn tail
shows itself as a member that claims more bytes than the file has.

Records. Inflated, a member is a stream of msgpack objects, one per record, each an array
of three::

    [recv_ns: uint64, topic: str, payload: bin]

written with fixed type codes (``0x93``, ``0xcf`` + 8 bytes, ``0xd9`` + 1-byte length,
``0xc6`` + 4-byte length), so any msgpack reader iterates them (``msgpack.Unpacker`` over
``gzip.open(path)``) and ours finds record boundaries with ``struct`` alone. ``recv_ns`` is
the recorder's ``time.time_ns()`` when it read the message (it reads the bus in batches, so
up to its ``read_interval_ms`` late: replay timing belongs to the messages' own ``ts_init``); ``topic`` is the bus topic
(``md.upbit.KRW-BTC``); ``payload`` is the bus message exactly as published: msgpack of
``karb.messages`` (its ``ts_event``, ``src``, ``seq`` inside). Records are in arrival order.

Crash safety. The writer appends with ``O_APPEND`` and writes each member with one
``os.write``; it never fsyncs (a killed process loses nothing the kernel has; a lost machine
may lose more). On opening an existing file, a torn last member (a writer killed in the middle
of a write) is cut off first, so members appended after a restart stay readable by zcat.
:func:`read_records` tolerates a torn tail too: it yields every whole record it can inflate
from it and stops there.
"""

from __future__ import annotations

import os
import struct
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

from karb.messages import BusMessage, decode

SUFFIX = ".karb.gz"
HOUR_NS = 3600 * 10**9
# gzip header: ID1 ID2 CM FLG MTIME(4) XFL OS | XLEN(2) | SI1 SI2 LEN(2) member-size(4)
_HEADER = struct.Struct("<4sIBBH2sHI")
_HEADER_SIZE = _HEADER.size  # 20
_ID_CM_FLG = b"\x1f\x8b\x08\x04"  # deflate, FEXTRA only
_SUBFIELD = b"KR"
_TRAILER = struct.Struct("<II")  # CRC32, ISIZE
_OS_UNIX = 3
# Record header: fixarray(3), uint64 recv_ns, str8 topic length.
_REC = struct.Struct(">BBQBB")
_REC_SIZE = _REC.size  # 12
_BIN32 = struct.Struct(">BI")


class RecordingError(Exception):
    """A recording file that is not ours or is damaged before its tail."""


class Record(NamedTuple):
    recv_ns: int
    topic: bytes
    payload: bytes


def file_name(recv_ns: int) -> str:
    """The file that holds records received at ``recv_ns``: ``YYYYMMDDTHH.karb.gz`` (UTC)."""
    return time.strftime("%Y%m%dT%H", time.gmtime(recv_ns // 10**9)) + SUFFIX


def encode_record(recv_ns: int, topic: bytes, payload: bytes) -> bytes:
    if len(topic) > 255:
        raise ValueError(f"topic longer than 255 bytes: {topic[:40]!r}...")
    return (_REC.pack(0x93, 0xCF, recv_ns, 0xD9, len(topic)) + topic
            + _BIN32.pack(0xC6, len(payload)) + payload)


def gzip_member(data: bytes, level: int) -> bytes:
    """One complete gzip member holding ``data``, with its size in the KR subfield."""
    comp = zlib.compressobj(level, zlib.DEFLATED, -15)
    body = comp.compress(data) + comp.flush()
    size = _HEADER_SIZE + len(body) + _TRAILER.size
    header = _HEADER.pack(_ID_CM_FLG, 0, 0, _OS_UNIX, 8, _SUBFIELD, 4, size)
    return header + body + _TRAILER.pack(zlib.crc32(data), len(data) & 0xFFFFFFFF)


class _Member(NamedTuple):
    offset: int
    size: int  # the size the header claims
    whole: bool  # the file holds all of it


def _members(blob: bytes | memoryview, path: Path) -> Iterator[_Member]:
    """Walk the member headers of a file's bytes; the last one may be torn (``whole`` False)."""
    offset, end = 0, len(blob)
    while offset < end:
        if end - offset < _HEADER_SIZE:
            yield _Member(offset, _HEADER_SIZE, False)
            return
        magic, _, _, _, xlen, si, sublen, size = _HEADER.unpack_from(blob, offset)
        if magic != _ID_CM_FLG or xlen != 8 or si != _SUBFIELD or sublen != 4 or size < _HEADER_SIZE:
            raise RecordingError(f"{path}: byte {offset}: not a K-Arb recording member")
        yield _Member(offset, size, offset + size <= end)
        offset += size


def repair_tail(path: Path) -> int:
    """Cut a torn last member off ``path`` (a writer killed mid-write); return bytes removed."""
    try:
        blob = path.read_bytes()
    except FileNotFoundError:
        return 0
    keep = 0
    for member in _members(blob, path):
        if not member.whole:
            break
        keep = member.offset + member.size
    if keep < len(blob):
        os.truncate(path, keep)
    return len(blob) - keep


class RecordWriter:
    """Buffers records and appends them to the hour's file as one gzip member per ``flush``."""

    def __init__(self, directory: Path, level: int = 1,
                 on_repair: Callable[[Path, int], None] | None = None) -> None:
        self.directory = directory
        self.level = level
        self.on_repair = on_repair  # told (file, bytes cut) when a torn tail is cut off
        self.directory.mkdir(parents=True, exist_ok=True)
        self._buf = bytearray()
        self._fd: int | None = None
        self._hour = -1
        self.path: Path | None = None
        self.records = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.members = 0
        self.repaired_bytes = 0

    def add(self, recv_ns: int, topic: bytes, payload: bytes) -> None:
        hour = recv_ns // HOUR_NS
        if hour != self._hour:
            self.flush()  # a member never spans two files
            self._open(hour, recv_ns)
        self._buf += encode_record(recv_ns, topic, payload)
        self.records += 1

    def flush(self) -> None:
        if not self._buf or self._fd is None:
            return
        data = bytes(self._buf)
        self._buf.clear()
        member = gzip_member(data, self.level)
        view = memoryview(member)
        while view:  # os.write on a regular file writes all of it, but say so rather than hope
            view = view[os.write(self._fd, view):]
        self.bytes_in += len(data)
        self.bytes_out += len(member)
        self.members += 1

    def close(self) -> None:
        self.flush()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _open(self, hour: int, recv_ns: int) -> None:
        if self._fd is not None:
            os.close(self._fd)
        self.path = self.directory / file_name(recv_ns)
        cut = repair_tail(self.path)
        if cut:
            self.repaired_bytes += cut
            if self.on_repair is not None:
                self.on_repair(self.path, cut)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._hour = hour


def recording_files(path: Path) -> list[Path]:
    """The files of a recording: ``path`` itself, or a directory's ``*.karb.gz`` by hour."""
    if path.is_dir():
        return sorted(path.glob("*" + SUFFIX))
    return [path]


def read_records(path: Path) -> Iterator[Record]:
    """Every record of a file or directory, in order; a torn tail ends a file quietly."""
    for file in recording_files(path):
        blob = file.read_bytes()
        for member in _members(blob, file):
            start = member.offset + _HEADER_SIZE
            if member.whole:
                body = blob[start:member.offset + member.size - _TRAILER.size]
                crc, _ = _TRAILER.unpack_from(blob, member.offset + member.size - _TRAILER.size)
                try:
                    data = zlib.decompress(body, -15)
                except zlib.error as exc:
                    raise RecordingError(f"{file}: byte {member.offset}: {exc}") from None
                if zlib.crc32(data) != crc:
                    raise RecordingError(f"{file}: byte {member.offset}: member fails its CRC")
            else:  # torn: inflate what is there; whole records in it are good bytes
                try:
                    data = zlib.decompressobj(-15).decompress(blob[start:])
                except zlib.error:
                    data = b""  # torn inside a block header: nothing in it to trust
            yield from _parse(data)


def _parse(data: bytes) -> Iterator[Record]:
    offset, end = 0, len(data)
    unpack = _REC.unpack_from
    while end - offset >= _REC_SIZE:
        _, _, recv_ns, _, tlen = unpack(data, offset)
        t0 = offset + _REC_SIZE
        p0 = t0 + tlen + 5
        if p0 > end:
            return
        plen = int.from_bytes(data[p0 - 4:p0], "big")
        if p0 + plen > end:
            return  # the torn end of a torn member
        yield Record(recv_ns, data[t0:t0 + tlen], data[p0:p0 + plen])
        offset = p0 + plen


def read_messages(path: Path) -> Iterator[tuple[int, bytes, BusMessage]]:
    """Like :func:`read_records`, with each payload decoded into its bus message."""
    for recv_ns, topic, payload in read_records(path):
        yield recv_ns, topic, decode(payload)
