from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from karb.shm import HEADER_SIZE, SLOT_SIZE, STALE, VALID, ShmError, TopOfBookTable, segment_path


@pytest.fixture
def table(workdir: Path) -> Iterator[TopOfBookTable]:
    t = TopOfBookTable.create(segment_path(workdir), n_venues=2, n_markets=3)
    yield t
    t.close()
    t.unlink()


def test_write_then_read_from_another_mapping(table: TopOfBookTable) -> None:
    slot = table.slot(1, 2)
    table.write(slot, 100.0, 1.5, 101.0, 2.5, 11, 12, VALID)
    reader = TopOfBookTable.attach(table.path, 2, 3)
    try:
        top = reader.read(slot)
        assert top is not None
        assert (top.bid_px, top.bid_size, top.ask_px, top.ask_size) == (100.0, 1.5, 101.0, 2.5)
        assert (top.ts_event, top.ts_init, top.flags, top.seq) == (11, 12, VALID, 2)
        empty = reader.read(table.slot(0, 0))
        assert empty is not None and empty.flags == 0  # untouched slots are empty
    finally:
        reader.close()


def test_attach_checks_shape_and_existence(table: TopOfBookTable, workdir: Path) -> None:
    with pytest.raises(ShmError, match="has 2 venues x 3 markets, the config 2 x 4"):
        TopOfBookTable.attach(table.path, 2, 4)
    with pytest.raises(ShmError, match="is the supervisor running"):
        TopOfBookTable.attach(workdir / "missing", 2, 3)
    with pytest.raises(IndexError):
        table.slot(2, 0)


def test_half_written_slot_is_unreadable_until_a_new_writer_recovers_it(table: TopOfBookTable) -> None:
    slot = table.slot(0, 1)
    table.write(slot, 1.0, 1.0, 2.0, 1.0, 1, 1, VALID)
    # What a writer killed between "seq odd" and "seq even" leaves behind:
    with open(table.path, "r+b") as raw:
        raw.seek(HEADER_SIZE + SLOT_SIZE * slot)
        raw.write(struct.pack("<Q", 3))
    assert table.read(slot) is None
    assert table.recover() == 1
    top = table.read(slot)
    assert top is not None and top.seq == 4 and top.flags == STALE
