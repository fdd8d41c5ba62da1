from __future__ import annotations

import gzip
import re
from pathlib import Path

import pytest

from karb.messages import BookUpdate, Signal, encode
from karb.recording import (
    HOUR_NS,
    RecordingError,
    RecordWriter,
    encode_record,
    file_name,
    read_messages,
    read_records,
    recording_files,
    repair_tail,
)

T0 = 1_795_000_000 * 10**9  # 2026-11-18T11:06:40Z


def book(i: int) -> BookUpdate:
    return BookUpdate(venue="upbit", market="KRW-BTC", ts_event=T0 + i, ts_init=T0 + i, seq=i,
                      bids=[(100_000_000.0 - 1000 * k - i, 0.1 + k) for k in range(15)],
                      asks=[(100_001_000.0 + 1000 * k + i, 0.2 + k) for k in range(15)])


def write(directory: Path, members: int, per_member: int, start: int = 0) -> list[tuple[int, bytes, bytes]]:
    writer = RecordWriter(directory)
    written = []
    for m in range(members):
        for r in range(per_member):
            i = start + m * per_member + r
            rec = (T0 + i * 1_000_000, b"md.upbit.KRW-BTC", encode(book(i)))
            writer.add(*rec)
            written.append(rec)
        writer.flush()
    writer.close()
    return written


def test_records_come_back_in_order_and_zcat_reads_the_same_bytes(tmp_path: Path) -> None:
    written = write(tmp_path, members=3, per_member=50)
    sig = Signal(market="KRW-BTC", buy_venue="upbit", sell_venue="bithumb", best_ask=1.0,
                 best_bid=2.0, gross_bps=10.0, net_bps=1.0, volume=0.1, buy_limit=1.0,
                 sell_limit=2.0, expected_pnl_krw=3.0, decision="sent")
    writer = RecordWriter(tmp_path)
    writer.add(T0 + 10**9, b"sig.KRW-BTC", encode(sig))
    writer.close()
    assert [tuple(r) for r in read_records(tmp_path)] == written + [
        (T0 + 10**9, b"sig.KRW-BTC", encode(sig))]
    messages = list(read_messages(tmp_path))
    assert messages[0][2] == book(0) and messages[-1][2] == sig
    (file,) = recording_files(tmp_path)
    assert file.name == file_name(T0) == "20261118T11.karb.gz"
    # gzip's own reader (what zcat does) sees the documented msgpack records, members joined.
    assert gzip.decompress(file.read_bytes()) == b"".join(
        encode_record(*r) for r in written + [(T0 + 10**9, b"sig.KRW-BTC", encode(sig))])


def test_a_torn_tail_reads_up_to_the_last_whole_member_wherever_the_cut_falls(tmp_path: Path) -> None:
    written = write(tmp_path, members=4, per_member=40)
    (file,) = recording_files(tmp_path)
    whole = file.read_bytes()
    # Where the last member starts: the size of the file holding only the first three.
    write(tmp_path / "three", members=3, per_member=40)
    last_start = recording_files(tmp_path / "three")[0].stat().st_size
    for cut in list(range(last_start, len(whole), 97)) + [len(whole) - 1, last_start + 5]:
        file.write_bytes(whole[:cut])
        got = [tuple(r) for r in read_records(file)]
        assert 120 <= len(got) <= 160, cut
        assert got == written[:len(got)], cut  # a prefix: nothing invented, nothing reordered


def test_a_restarted_writer_cuts_the_torn_member_and_appends_readably(tmp_path: Path) -> None:
    first = write(tmp_path, members=2, per_member=30)
    (file,) = recording_files(tmp_path)
    torn = file.read_bytes()
    file.write_bytes(torn + torn[:60])  # a member killed after 60 bytes of its write
    seen: list[int] = []
    writer = RecordWriter(tmp_path, on_repair=lambda path, cut: seen.append(cut))
    later = (T0 + 5 * 10**9, b"md.bithumb.KRW-BTC", encode(book(999)))
    writer.add(*later)
    writer.close()
    assert seen == [60] and writer.repaired_bytes == 60
    assert [tuple(r) for r in read_records(tmp_path)] == first + [later]
    assert gzip.decompress(file.read_bytes()).endswith(encode_record(*later))
    assert repair_tail(file) == 0


def test_records_of_the_next_hour_go_to_the_next_file_and_read_in_order(tmp_path: Path) -> None:
    writer = RecordWriter(tmp_path)
    hour_end = (T0 // HOUR_NS + 1) * HOUR_NS
    recs = [(hour_end - 2, b"pos", b"\x01"), (hour_end - 1, b"pos", b"\x02"),
            (hour_end, b"pos", b"\x03")]
    for rec in recs:
        writer.add(*rec)
    writer.close()
    files = recording_files(tmp_path)
    assert [f.name for f in files] == ["20261118T11.karb.gz", "20261118T12.karb.gz"]
    assert [tuple(r) for r in read_records(tmp_path)] == recs


def test_damage_before_the_tail_is_an_error_not_silence(tmp_path: Path) -> None:
    write(tmp_path, members=3, per_member=20)
    (file,) = recording_files(tmp_path)
    blob = bytearray(file.read_bytes())
    blob[40] ^= 0xFF  # inside the first member's deflate data
    file.write_bytes(bytes(blob))
    with pytest.raises(RecordingError, match="byte 0"):
        list(read_records(file))
    file.write_bytes(b"not a recording at all")
    with pytest.raises(RecordingError, match="not a K-Arb recording"):
        list(read_records(file))


def test_recorder_params_are_typed_and_unknown_keys_refused() -> None:
    from karb.actors.recorder import Recorder
    from karb.config import ActorSpec, ConfigError, convert_params

    ok = convert_params(ActorSpec(name="recorder", kind="recorder",
                                  params={"record": ["md", "fill"], "flush_interval_ms": 500}),
                        Recorder.Params, 3)
    assert ok.record == ["md", "fill"] and ok.read_interval_ms == 100
    for params, says in (({"record": ["heartbeats"]}, "actors[3].params.record[0]"),
                         ({"flush_s": 1}, "actors[3].params.flush_s: unknown key"),
                         ({"compress_level": 0}, "compress_level must be 1 to 9")):
        with pytest.raises(ConfigError, match=re.escape(says)):
            convert_params(ActorSpec(name="recorder", kind="recorder", params=params),
                           Recorder.Params, 3)
