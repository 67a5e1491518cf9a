"""Tests for the disk spool: order, caps, restarts, corruption and a failing disk."""

from __future__ import annotations

import asyncio
import errno
import os
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from capture.spool import Segment, Spool
from shadow.errors import CaptureError

MIB = 1024 * 1024


def _records(n: int, size: int = 20) -> list[bytes]:
    """Distinct records of ``size`` bytes (at least), numbered so order is checkable."""
    return [f"record {i:06d} ".encode().ljust(size, b".") for i in range(n)]


def _frame(payload: bytes) -> bytes:
    return struct.pack(">II", len(payload), zlib.crc32(payload)) + payload


def _drain(spool: Spool) -> list[bytes]:
    """Rotate, then read and ack every closed segment, oldest first."""
    spool.rotate()
    out: list[bytes] = []
    for segment in spool.closed_segments():
        out += spool.read(segment)
        spool.ack(segment)
    return out


def _segment_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("seg-*.log"))


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[Spool]:
    with Spool(tmp_path / "spool", max_bytes=MIB, segment_bytes=256) as opened:
        yield opened


# --- round trip ----------------------------------------------------------------------------------


def test_records_round_trip_in_order_across_many_segments(spool: Spool) -> None:
    """Records appended in batches come back in order from many small segments, then are gone."""
    records = _records(300, size=30)
    for start in range(0, len(records), 7):
        assert spool.append(records[start : start + 7]) == len(records[start : start + 7])
    assert spool.pending == 300
    assert spool.bytes_on_disk == sum(8 + len(r) for r in records)
    spool.rotate()
    segments = spool.closed_segments()
    assert len(segments) > 30
    assert [s.sequence for s in segments] == sorted(s.sequence for s in segments)
    assert all(s.size <= 256 for s in segments)
    assert sum(s.records for s in segments) == 300

    assert _drain(spool) == records
    assert spool.empty
    assert spool.pending == 0
    assert spool.bytes_on_disk == 0
    assert _segment_files(spool.directory) == []


def test_read_batches_splits_a_segment_into_bounded_lists(tmp_path: Path) -> None:
    """read_batches yields the same records as read, in lists of at most max_records."""
    with Spool(tmp_path, max_bytes=MIB) as spool:
        records = _records(23)
        spool.append(records)
        spool.rotate()
        [segment] = spool.closed_segments()
        batches = list(spool.read_batches(segment, 5))
        assert [len(b) for b in batches] == [5, 5, 5, 5, 3]
        assert [r for b in batches for r in b] == spool.read(segment) == records


def test_a_record_larger_than_a_segment_gets_a_segment_of_its_own(spool: Spool) -> None:
    """A frame bigger than segment_bytes is still written, alone in its segment."""
    big = b"x" * 1000
    assert spool.append([b"a", big, b"b"]) == 3
    spool.rotate()
    assert [s.records for s in spool.closed_segments()] == [1, 1, 1]
    assert _drain(spool) == [b"a", big, b"b"]


def test_rotate_without_new_data_closes_nothing(spool: Spool) -> None:
    """Rotating an empty spool, or twice in a row, creates no empty segments."""
    spool.rotate()
    assert spool.closed_segments() == []
    spool.append([b"one"])
    spool.rotate()
    spool.rotate()
    assert len(spool.closed_segments()) == 1


def test_the_active_segment_cannot_be_read_or_acked(spool: Spool) -> None:
    """Reading or acking the segment still being written is a ValueError: rotate first."""
    spool.append([b"one"])
    active = Segment(sequence=1, path=spool.directory / "seg-1.log", records=1, size=11, acked=0)
    with pytest.raises(ValueError, match="rotate"):
        spool.read(active)
    with pytest.raises(ValueError, match="rotate"):
        spool.ack(active)


def test_ack_is_idempotent_and_an_acked_segment_cannot_be_read(spool: Spool) -> None:
    """Acking twice is harmless; reading an acked segment says it is gone."""
    spool.append([b"one"])
    spool.rotate()
    [segment] = spool.closed_segments()
    spool.ack(segment)
    spool.ack(segment)
    with pytest.raises(ValueError, match="acked"):
        spool.read(segment)


# --- byte cap ------------------------------------------------------------------------------------


def test_records_past_the_byte_cap_are_dropped_and_counted(tmp_path: Path) -> None:
    """With room for ten 100-byte frames, the 11th and later are dropped and counted, not raised."""
    with Spool(tmp_path, max_bytes=1000, segment_bytes=300) as spool:
        records = _records(15, size=92)  # 8 + 92 = 100 bytes a frame
        assert spool.append(records) == 10
        assert spool.dropped == 5
        assert spool.bytes_on_disk == 1000
        assert spool.append([b"x"]) == 0
        assert spool.dropped == 6
        assert _drain(spool) == records[:10]
        assert spool.append(records[10:]) == 5  # draining frees the room again


def test_a_record_that_does_not_fit_drops_the_rest_of_its_batch(tmp_path: Path) -> None:
    """The accepted records are exactly the first n of a batch, so a caller knows which ones."""
    with Spool(tmp_path, max_bytes=100) as spool:
        assert spool.append([b"a" * 40, b"b" * 60, b"c"]) == 1
        assert spool.dropped == 2
        assert _drain(spool) == [b"a" * 40]


# --- restarts ------------------------------------------------------------------------------------


def test_a_new_spool_resumes_pending_records_and_partial_offsets(tmp_path: Path) -> None:
    """A restart sees the earlier run's records, resumes after its partial ack, appends after."""
    records = _records(40)
    with Spool(tmp_path, max_bytes=MIB, segment_bytes=300) as first:
        first.append(records[:30])
        first.rotate()
        oldest = first.closed_segments()[0]
        first.ack_partial(oldest, 3)
        first.append(records[30:])  # still in the active segment at shutdown
        assert (oldest.path.parent / (oldest.path.name + ".offset")).read_bytes() == b"3"

    with Spool(tmp_path, max_bytes=MIB, segment_bytes=300) as second:
        assert second.pending == 37
        assert second.bytes_on_disk == sum(8 + len(r) for r in records)
        resumed = second.closed_segments()[0]
        assert resumed.sequence == oldest.sequence
        assert resumed.acked == 3
        second.append([b"after restart"])
        assert _drain(second) == [*records[3:], b"after restart"]
        assert list(tmp_path.glob("seg-*")) == []


def test_ack_partial_counts_from_the_handle_and_never_moves_back(spool: Spool) -> None:
    """ack_partial(n) covers the first n records read() yields; a stale handle cannot rewind."""
    spool.append(_records(5))
    spool.rotate()
    [segment] = spool.closed_segments()
    spool.ack_partial(segment, 2)
    [resumed] = spool.closed_segments()
    assert resumed.acked == 2
    assert spool.read(resumed) == _records(5)[2:]
    spool.ack_partial(resumed, 1)  # offset 3
    spool.ack_partial(segment, 2)  # stale handle: offset 2 is behind, ignored
    assert spool.closed_segments()[0].acked == 3
    assert spool.pending == 2
    with pytest.raises(ValueError, match="n_records has value 4"):
        spool.ack_partial(resumed, 4)


def test_crash_debris_is_cleared_on_open(tmp_path: Path) -> None:
    """Empty segments, half-renamed offsets and offsets of deleted segments are removed."""
    (tmp_path / f"seg-{1:020d}.log").write_bytes(b"")
    (tmp_path / f"seg-{2:020d}.log.offset").write_bytes(b"5")
    (tmp_path / f"seg-{3:020d}.log").write_bytes(_frame(b"kept"))
    (tmp_path / f"seg-{3:020d}.log.offset.tmp").write_bytes(b"1")
    (tmp_path / "notes.txt").write_bytes(b"not ours")
    with Spool(tmp_path, max_bytes=MIB) as spool:
        names = sorted(p.name for p in tmp_path.iterdir())
        assert names == [".lock", "notes.txt", f"seg-{3:020d}.log"]
        assert _drain(spool) == [b"kept"]


def test_a_second_spool_on_the_same_directory_is_refused(tmp_path: Path) -> None:
    """Two spools appending to one directory would interleave segments, so the second fails."""
    with Spool(tmp_path, max_bytes=MIB), pytest.raises(CaptureError, match="in use"):
        Spool(tmp_path, max_bytes=MIB)
    Spool(tmp_path, max_bytes=MIB).close()  # released on close


# --- corruption ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "tail",
    [
        pytest.param(_frame(b"x" * 100)[:3], id="partial-header"),
        pytest.param(_frame(b"x" * 100)[:60], id="partial-payload"),
        pytest.param(_frame(b"x" * 100)[:-1] + b"!", id="whole-frame-bad-crc"),
    ],
)
def test_a_torn_tail_is_truncated_on_open_and_counted(tmp_path: Path, tail: bytes) -> None:
    """A crash mid-write leaves a bad last frame; open cuts it off, keeps the earlier records."""
    records = _records(5)
    with Spool(tmp_path, max_bytes=MIB) as spool:
        spool.append(records)
    [path] = _segment_files(tmp_path)
    good_size = path.stat().st_size
    with path.open("ab") as f:
        f.write(tail)

    with Spool(tmp_path, max_bytes=MIB) as spool:
        assert spool.corrupt_frames == 1
        assert path.stat().st_size == good_size
        assert spool.pending == 5
        assert spool.bytes_on_disk == good_size
        assert _drain(spool) == records


def test_a_segment_holding_only_a_torn_frame_is_removed_on_open(tmp_path: Path) -> None:
    """A crash during a segment's first write leaves nothing worth keeping."""
    (tmp_path / f"seg-{7:020d}.log").write_bytes(_frame(b"payload")[:5])
    with Spool(tmp_path, max_bytes=MIB) as spool:
        assert spool.corrupt_frames == 1
        assert spool.empty
        assert _segment_files(tmp_path) == []
        spool.append([b"next"])
        spool.rotate()
        assert spool.closed_segments()[0].sequence == 8  # sequences never go back


def test_a_bad_crc_inside_a_segment_skips_that_record_only(spool: Spool) -> None:
    """A corrupted payload mid-segment is skipped and counted once; the records after it survive."""
    spool.append([b"first", b"second", b"third"])
    spool.rotate()
    [segment] = spool.closed_segments()
    data = bytearray(segment.path.read_bytes())
    data[len(_frame(b"first")) + 8] ^= 0xFF  # first payload byte of "second"
    segment.path.write_bytes(bytes(data))

    assert spool.read(segment) == [b"first", b"third"]
    assert spool.corrupt_frames == 1
    assert spool.read(segment) == [b"first", b"third"]
    assert spool.corrupt_frames == 1  # the same bad frame is not counted twice
    spool.ack(segment)
    assert spool.empty


def test_a_bad_crc_is_not_counted_against_a_partial_ack(spool: Spool) -> None:
    """ack_partial counts delivered records, so a skipped bad frame does not shift the offset."""
    spool.append([b"bad", b"good-1", b"good-2"])
    spool.rotate()
    [segment] = spool.closed_segments()
    data = bytearray(segment.path.read_bytes())
    data[8] ^= 0xFF
    segment.path.write_bytes(bytes(data))
    assert spool.read(segment) == [b"good-1", b"good-2"]
    spool.ack_partial(segment, 1)
    assert spool.read(spool.closed_segments()[0]) == [b"good-2"]


def test_a_length_running_past_the_end_is_cut_off_in_any_segment(tmp_path: Path) -> None:
    """A frame overrunning its file is cut off on open even in an older segment, and counted."""
    older = tmp_path / f"seg-{1:020d}.log"
    older.write_bytes(_frame(b"one") + struct.pack(">II", 1_000_000, 0) + b"junk")
    (tmp_path / f"seg-{2:020d}.log").write_bytes(_frame(b"two"))
    with Spool(tmp_path, max_bytes=MIB) as spool:
        assert spool.corrupt_frames == 1
        assert older.read_bytes() == _frame(b"one")
        assert spool.pending == 2
        assert _drain(spool) == [b"one", b"two"]


# --- a failing disk ------------------------------------------------------------------------------


@pytest.mark.parametrize("partial", [False, True], ids=["nothing-written", "half-written"])
def test_enospc_drops_the_batch_without_raising(
    spool: Spool, monkeypatch: pytest.MonkeyPatch, partial: bool
) -> None:
    """A full disk drops and counts the batch, leaves no partial frame, and later appends work."""
    spool.append([b"before"])
    real_write = os.write
    calls = 0

    def full_disk(fd: int, data: bytes | memoryview) -> int:
        nonlocal calls
        calls += 1
        if partial and calls == 1:
            return real_write(fd, bytes(data)[: len(data) // 2])
        if calls == (2 if partial else 1):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", full_disk)
    assert spool.append(_records(4)) == 0
    assert spool.dropped == 4
    assert spool.write_errors == 1
    assert spool.pending == 1
    assert spool.append([b"after"]) == 1
    monkeypatch.undo()

    assert spool.bytes_on_disk == sum(s.stat().st_size for s in _segment_files(spool.directory))
    assert _drain(spool) == [b"before", b"after"]
    assert spool.corrupt_frames == 0


def test_a_partial_frame_that_cannot_be_cut_off_ends_its_segment(
    spool: Spool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the truncate after a failed write fails too, readers stop before the torn bytes."""
    spool.append([b"before"])
    real_write = os.write
    calls = 0

    def half_then_full(fd: int, data: bytes | memoryview) -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            return real_write(fd, bytes(data)[: len(data) // 2])  # one whole frame and a half
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def broken_truncate(fd: int, length: int) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(os, "write", half_then_full)
    monkeypatch.setattr(os, "ftruncate", broken_truncate)
    assert spool.append(_records(3)) == 0
    monkeypatch.undo()
    assert spool.append([b"after"]) == 1
    assert len(spool.closed_segments()) == 1  # the torn segment takes no more appends
    assert _drain(spool) == [b"before", b"after"]
    assert spool.pending == 0


def test_a_failed_offset_write_is_counted_not_raised(
    spool: Spool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Losing an offset only widens re-delivery after a crash, so it counts as a write error."""
    spool.append(_records(3))
    spool.rotate()
    [segment] = spool.closed_segments()

    def no_rename(src: object, dst: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "replace", no_rename)
    spool.ack_partial(segment, 2)
    monkeypatch.undo()
    assert spool.write_errors == 1
    assert spool.pending == 1  # delivered all the same
    assert spool.read(spool.closed_segments()[0]) == _records(3)[2:]


def test_a_directory_that_cannot_be_used_is_a_capture_error(tmp_path: Path) -> None:
    """Opening a spool where a file stands is one clear CaptureError naming the path."""
    (tmp_path / "spool").write_bytes(b"")
    with pytest.raises(CaptureError, match=r"cannot open spool .*spool"):
        Spool(tmp_path / "spool", max_bytes=MIB)


def test_a_failure_to_create_a_segment_drops_without_raising(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When even opening a new segment fails, the batch is dropped and counted."""
    with Spool(tmp_path, max_bytes=MIB) as spool:

        def no_inodes(*args: object, **kwargs: object) -> int:
            raise OSError(errno.ENOSPC, "no inodes left")

        monkeypatch.setattr(os, "open", no_inodes)
        assert spool.append([b"a", b"b"]) == 0
        monkeypatch.undo()
        assert (spool.dropped, spool.write_errors) == (2, 1)
        assert spool.append([b"c"]) == 1
        assert _drain(spool) == [b"c"]


# --- lifecycle -----------------------------------------------------------------------------------


def test_close_is_safe_twice_and_a_closed_spool_refuses_appends(tmp_path: Path) -> None:
    """close() twice is fine; appending afterwards is a programming error (ValueError)."""
    spool = Spool(tmp_path, max_bytes=MIB)
    spool.append([b"kept"])
    spool.close()
    spool.close()
    with pytest.raises(ValueError, match="closed"):
        spool.append([b"late"])
    with Spool(tmp_path, max_bytes=MIB) as reopened:
        assert _drain(reopened) == [b"kept"]


def test_fsync_mode_round_trips(tmp_path: Path) -> None:
    """With fsync on, appends, partial acks and acks behave the same."""
    with Spool(tmp_path, max_bytes=MIB, segment_bytes=64, fsync=True) as spool:
        spool.append(_records(10))
        spool.rotate()
        first = spool.closed_segments()[0]
        spool.ack_partial(first, 1)
        assert _drain(spool) == _records(10)[1:]


@pytest.mark.parametrize(("key", "value"), [("max_bytes", 0), ("segment_bytes", -1)])
def test_bad_sizes_are_refused_with_the_key_and_value(tmp_path: Path, key: str, value: int) -> None:
    """A non-positive size names the argument and the value."""
    sizes = {"max_bytes": MIB, "segment_bytes": MIB, key: value}
    with pytest.raises(ValueError, match=f"{key} has value {value}"):
        Spool(tmp_path, max_bytes=sizes["max_bytes"], segment_bytes=sizes["segment_bytes"])


async def test_an_appender_and_a_drainer_in_threads_keep_order(tmp_path: Path) -> None:
    """A tee worker and a drainer calling through asyncio.to_thread lose and reorder nothing."""
    records = _records(3000)
    drained: list[bytes] = []
    with Spool(tmp_path, max_bytes=64 * MIB, segment_bytes=2048) as spool:

        async def produce() -> None:
            for start in range(0, len(records), 50):
                await asyncio.to_thread(spool.append, records[start : start + 50])

        producer = asyncio.create_task(produce())
        while True:
            finished = producer.done()
            drained += await asyncio.to_thread(_drain, spool)
            if finished:
                break
        await producer
        assert drained == records
        assert spool.empty


# --- property ------------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    records=st.lists(st.binary(max_size=300), max_size=60),
    batch=st.integers(min_value=1, max_value=17),
    segment_bytes=st.integers(min_value=1, max_value=1000),
)
def test_any_byte_strings_round_trip_in_order(
    tmp_path_factory: pytest.TempPathFactory,
    records: list[bytes],
    batch: int,
    segment_bytes: int,
) -> None:
    """Any records, empty and binary included, come back in order whatever the sizes."""
    directory = tmp_path_factory.mktemp("spool")
    with Spool(directory, max_bytes=MIB, segment_bytes=segment_bytes) as spool:
        for start in range(0, len(records), batch):
            spool.append(records[start : start + batch])
        assert spool.pending == len(records)
        assert _drain(spool) == records
        assert spool.empty
        assert spool.bytes_on_disk == 0
