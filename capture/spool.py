"""The disk spool: where the sidecar spills encoded records while Kafka is down or slow.

A directory of append-only segment files ``seg-<20-digit sequence>.log``, oldest first, each a
run of frames::

    [length: u32 big-endian][crc32(payload): u32 big-endian][payload: length bytes]

The tee worker appends; the drainer calls :meth:`Spool.rotate` so the active segment becomes
readable, then reads, delivers and acks each of :meth:`Spool.closed_segments` in turn. The
class is synchronous and thread-safe: async callers wrap calls in ``asyncio.to_thread``, and
the counters and properties are plain reads, safe on the event loop.

- At-least-once. Only :meth:`Spool.ack` deletes a segment; :meth:`Spool.ack_partial` persists
  how far delivery got in ``seg-....log.offset`` (replaced atomically by rename). A crash
  re-delivers everything after the last persisted point, up to the whole segment.
- Records persist across restarts: a new ``Spool`` on the directory takes every segment it
  finds as closed and appends to a fresh one after them. One ``Spool`` per directory at a
  time, enforced with ``flock`` on ``.lock``.
- The write path never raises for a full spool or a failing disk: past ``max_bytes`` the rest
  of a batch is dropped; an ``OSError`` (ENOSPC, EIO) drops what was not written and cuts the
  partial frame away. Both count in ``dropped``; the error also in ``write_errors``.
- Corruption. On open, a frame that runs past the end of its file (a crash mid-write) is cut
  off, and so is a bad-CRC last frame of the newest segment. A bad CRC anywhere else is
  skipped when read; the rest of the segment is still delivered. Each bad frame counts once in
  ``corrupt_frames``. The CRC covers only the payload, so a damaged length field loses the rest
  of its segment, and an all-zero frame reads as a valid empty record (crc32 of b"" is 0).
"""

from __future__ import annotations

import contextlib
import enum
import fcntl
import itertools
import os
import struct
import threading
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from shadow.closing import Closing
from shadow.errors import CaptureError
from shadow.files import atomic_write, fsync_path

__all__ = ["Segment", "Spool"]

_HEADER = struct.Struct(">II")
_MAX_PAYLOAD = 0xFFFF_FFFF
_PREFIX, _SUFFIX, _OFFSET = "seg-", ".log", ".offset"


@dataclass(frozen=True, slots=True)
class Segment:
    """A closed segment as listed by :meth:`Spool.closed_segments`: the handle to read and ack.

    ``acked`` is how many of its records had been delivered when it was listed: ``read`` starts
    after them and ``ack_partial`` counts from there. ``records`` counts frames, bad ones too.
    """

    sequence: int
    path: Path
    records: int
    size: int
    acked: int


class _Status(enum.Enum):
    OK = "ok"
    BAD_CRC = "bad crc"
    TORN = "torn"


@dataclass(slots=True)
class _Seg:
    """The spool's own, mutable bookkeeping for one segment file."""

    sequence: int
    path: Path
    records: int = 0
    size: int = 0
    acked: int = 0


def _offset_path(path: Path) -> Path:
    return path.with_name(path.name + _OFFSET)


def _frames(f: BinaryIO, size: int, *, verify: bool) -> Iterator[tuple[int, _Status, bytes]]:
    """Yield ``(position, status, payload)`` per frame; a torn frame is the last one yielded.

    Without ``verify`` payloads are skipped unread (returned empty) and every whole frame is OK.
    """
    pos = 0
    while pos < size:
        if pos + _HEADER.size > size:
            yield pos, _Status.TORN, b""
            return
        length, crc = _HEADER.unpack(f.read(_HEADER.size))
        end = pos + _HEADER.size + length
        if end > size:  # checked before reading, so a garbage length never allocates gigabytes
            yield pos, _Status.TORN, b""
            return
        if not verify:
            f.seek(end)
            yield pos, _Status.OK, b""
        else:
            payload = f.read(length)
            yield pos, _Status.OK if zlib.crc32(payload) == crc else _Status.BAD_CRC, payload
        pos = end


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class Spool(Closing):
    """Append-only on-disk record spool in segment files, drained oldest first.

    Args:
        directory: where the segment files live; created if missing.
        max_bytes: cap on segment bytes on disk; records that would pass it are dropped.
        segment_bytes: the active segment is closed when the next frame would take it past this.
        fsync: fsync data, offsets and new directory entries, to survive power loss as well as
            a process crash.
    """

    def __init__(
        self,
        directory: Path,
        *,
        max_bytes: int,
        segment_bytes: int = 16 * 1024 * 1024,
        fsync: bool = False,
    ) -> None:
        for name, value in (("max_bytes", max_bytes), ("segment_bytes", segment_bytes)):
            if value <= 0:
                raise ValueError(f"Spool {name} has value {value}; it must be > 0")
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.fsync = fsync
        self.dropped = 0
        self.write_errors = 0
        self.corrupt_frames = 0
        self._lock = threading.Lock()
        self._segments: dict[int, _Seg] = {}  # closed, oldest first
        self._active: _Seg | None = None
        self._fd: int | None = None
        self._bytes = 0
        self._pending = 0
        self._next_sequence = 1
        self._seen_corrupt: set[tuple[int, int]] = set()
        self._is_closed = False
        try:
            self._lock_fd = self._lock_directory()
            try:
                self._load()
            except BaseException:
                os.close(self._lock_fd)
                raise
        except OSError as exc:
            raise CaptureError(f"cannot open spool {self.directory}: {exc}") from exc

    # -- write side -----------------------------------------------------------------------------

    def append(self, records: Sequence[bytes]) -> int:
        """Append records in order and return how many were written; never raises for disk trouble.

        Records are taken in order until one would take the spool past ``max_bytes``; it and the
        rest of the batch are dropped, so the accepted records are exactly the first ``n``.
        """
        with self._lock:
            self._check_open()
            room, fit = self.max_bytes - self._bytes, 0
            for record in records:
                room -= _HEADER.size + len(record)
                if room < 0 or len(record) > _MAX_PAYLOAD:
                    break
                fit += 1
            written = 0
            while written < fit:
                try:
                    written += self._write_some(records, written, fit)
                except OSError:
                    self.write_errors += 1
                    self._discard_partial()
                    break
            self.dropped += len(records) - written
            return written

    def rotate(self) -> None:
        """Close the active segment if it holds data, so the drainer can read it."""
        with self._lock:
            self._check_open()
            if self._active is not None and self._active.size:
                self._close_active()

    def _write_some(self, records: Sequence[bytes], start: int, stop: int) -> int:
        """Write as many of ``records[start:stop]`` as fit the active segment; return the count."""
        seg, fd = self._active, self._fd
        first = _HEADER.size + len(records[start])
        if seg is not None and seg.size and seg.size + first > self.segment_bytes:
            self._close_active()
            seg = None
        if seg is None or fd is None:
            seg, fd = self._open_active()
        parts: list[bytes] = []
        size, end = seg.size, start
        while end < stop:
            record = records[end]
            if size and size + _HEADER.size + len(record) > self.segment_bytes:
                break
            parts += (_HEADER.pack(len(record), zlib.crc32(record)), record)
            size += _HEADER.size + len(record)
            end += 1
        _write_all(fd, b"".join(parts))
        if self.fsync:
            os.fsync(fd)
        self._bytes += size - seg.size
        self._pending += end - start
        seg.size, seg.records = size, seg.records + end - start
        return end - start

    def _open_active(self) -> tuple[_Seg, int]:
        sequence = self._next_sequence
        self._next_sequence += 1  # even on failure: never retry a name that may exist
        path = self.directory / f"{_PREFIX}{sequence:020d}{_SUFFIX}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        self._active, self._fd = _Seg(sequence, path), fd
        if self.fsync:
            fsync_path(self.directory)
        return self._active, fd

    def _close_active(self) -> None:
        seg, fd = self._active, self._fd
        self._active = self._fd = None
        if seg is not None and seg.size:
            self._segments[seg.sequence] = seg
        with contextlib.suppress(OSError):
            if fd is not None:
                os.close(fd)
            if seg is not None and not seg.size:
                seg.path.unlink()

    def _discard_partial(self) -> None:
        """After a failed write, cut the active segment back to its last whole frame."""
        seg, fd = self._active, self._fd
        if seg is None or fd is None:
            return  # failed before a segment was opened
        try:
            os.ftruncate(fd, seg.size)
        except OSError:
            # The torn bytes stay past seg.size, where readers never look (and the next open cuts
            # them off); nothing may be appended after them, so this segment is done.
            self._close_active()

    # -- drain side -----------------------------------------------------------------------------

    def closed_segments(self) -> list[Segment]:
        """The segments ready to drain, oldest first."""
        with self._lock:
            return [
                Segment(seg.sequence, seg.path, seg.records, seg.size, seg.acked)
                for seg in self._segments.values()
            ]

    def read(self, segment: Segment) -> list[bytes]:
        """Every record of ``segment`` after ``segment.acked``, in order, bad frames skipped."""
        return list(self._records(segment))

    def read_batches(self, segment: Segment, max_records: int = 500) -> Iterator[list[bytes]]:
        """The records :meth:`read` returns, in lists of at most ``max_records``."""
        if max_records <= 0:
            raise ValueError(f"max_records has value {max_records}; it must be > 0")
        records = self._records(segment)
        return iter(lambda: list(itertools.islice(records, max_records)), [])

    def ack(self, segment: Segment) -> None:
        """Delete a fully delivered segment and its offset file; acking it again does nothing."""
        with self._lock:
            seg = self._lookup(segment)
            if seg is None:
                return
            try:
                seg.path.unlink(missing_ok=True)
                _offset_path(seg.path).unlink(missing_ok=True)
            except OSError as exc:
                raise CaptureError(f"cannot delete spool segment {seg.path}: {exc}") from exc
            del self._segments[seg.sequence]
            self._bytes -= seg.size
            self._pending -= seg.records - seg.acked

    def ack_partial(self, segment: Segment, n_records: int) -> None:
        """Record that the first ``n_records`` records ``read(segment)`` yields were delivered.

        The offset is persisted in the segment's ``.offset`` file so a restart resumes after
        them. Failing to write it only widens re-delivery after a crash, so that is counted in
        ``write_errors``, not raised. A stale handle or a repeated call never moves it back.
        """
        with self._lock:
            seg = self._lookup(segment)
            if not 0 <= n_records <= segment.records - segment.acked:
                raise ValueError(
                    f"n_records has value {n_records}; {segment.path.name} has "
                    f"{segment.records - segment.acked} records after its offset {segment.acked}"
                )
            offset = segment.acked + n_records
            if seg is None or offset <= seg.acked:
                return
            self._pending -= offset - seg.acked
            seg.acked = offset
            path = _offset_path(seg.path)
            tmp = path.with_name(path.name + ".tmp")  # a fixed name: _load clears it after a crash
            try:
                with atomic_write(path, fsync=self.fsync, tmp=tmp) as f:
                    f.write(b"%d" % offset)
            except OSError:
                self.write_errors += 1

    def _lookup(self, segment: Segment) -> _Seg | None:
        """The segment's state, or None once acked; ValueError if it was never closed."""
        self._check_open()
        seg = self._segments.get(segment.sequence)
        active = self._active is not None and self._active.sequence == segment.sequence
        if active or (seg is None and segment.sequence >= self._next_sequence):
            raise ValueError(f"{segment.path.name} is not closed yet; rotate() first")
        return seg

    def _records(self, segment: Segment) -> Iterator[bytes]:
        """Check the handle now, then read lazily: good records after ``segment.acked``."""
        with self._lock:
            seg = self._lookup(segment)
        if seg is None:
            raise ValueError(f"{segment.path.name} was acked; it is gone")
        return self._scan(seg.sequence, seg.path, seg.size, skip=segment.acked)

    def _scan(self, sequence: int, path: Path, size: int, *, skip: int) -> Iterator[bytes]:
        with path.open("rb") as f:
            for pos, status, payload in _frames(f, size, verify=True):
                if status is _Status.OK and skip:
                    skip -= 1
                elif status is _Status.OK:
                    yield payload
                else:
                    with self._lock:  # count each bad frame once, however often it is read
                        if (sequence, pos) not in self._seen_corrupt:
                            self._seen_corrupt.add((sequence, pos))
                            self.corrupt_frames += 1

    # -- state ----------------------------------------------------------------------------------

    @property
    def bytes_on_disk(self) -> int:
        """Bytes of segment files on disk, including delivered records of partly acked ones."""
        return self._bytes

    @property
    def pending(self) -> int:
        """Records not yet acked (counting frames that will turn out corrupt when read)."""
        return self._pending

    @property
    def empty(self) -> bool:
        """Whether nothing is left to drain."""
        return self._pending == 0

    def close(self) -> None:
        """Close the active segment and release the directory; safe to call twice."""
        with self._lock:
            if self._is_closed:
                return
            self._is_closed = True
            self._close_active()
            os.close(self._lock_fd)

    # -- opening --------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._is_closed:
            raise ValueError(f"spool {self.directory} is closed")

    def _lock_directory(self) -> int:
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.directory / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise CaptureError(
                f"spool {self.directory} is in use by another Spool; give each sidecar its own"
            ) from None
        return fd

    def _load(self) -> None:
        """Adopt the segments a previous run left, oldest first, and clear crash debris."""
        logs: dict[int, Path] = {}
        offsets: list[Path] = []
        for path in self.directory.iterdir():
            name = path.name
            if not name.startswith(_PREFIX):
                continue
            if name.endswith(_SUFFIX + _OFFSET + ".tmp"):  # a rename a crash cut short
                path.unlink()
            elif name.endswith(_SUFFIX + _OFFSET):
                offsets.append(path)
            elif name.endswith(_SUFFIX) and (digits := name[4:-4]).isascii() and digits.isdigit():
                logs[int(digits)] = path
        owners = {_offset_path(path) for path in logs.values()}
        for path in offsets:
            if path not in owners:  # its segment was acked just before a crash
                path.unlink()
        for sequence in sorted(logs):
            self._adopt(_Seg(sequence, logs[sequence]), newest=sequence == max(logs))
        self._next_sequence = max(logs, default=0) + 1

    def _adopt(self, seg: _Seg, *, newest: bool) -> None:
        """Count a segment's frames; cut off a torn tail, and a bad-CRC tail of the newest."""
        size = seg.path.stat().st_size
        cut, torn, last_pos, last_status = size, False, 0, _Status.OK
        with seg.path.open("rb") as f:
            for pos, status, _ in _frames(f, size, verify=newest):
                if status is _Status.TORN:  # past its end nothing can be parsed: cut it off
                    cut, torn = pos, True
                    break
                seg.records += 1
                last_pos, last_status = pos, status
        bad_tail = newest and last_status is _Status.BAD_CRC
        if bad_tail:
            cut, seg.records = last_pos, seg.records - 1
        if cut < size:
            self.corrupt_frames += torn + bad_tail
            os.truncate(seg.path, cut)
        if cut == 0:
            seg.path.unlink()
            _offset_path(seg.path).unlink(missing_ok=True)
            return
        with contextlib.suppress(OSError, ValueError):  # no offset file, or garbage: from 0
            seg.acked = max(0, min(int(_offset_path(seg.path).read_bytes()), seg.records))
        seg.size = cut
        self._segments[seg.sequence] = seg
        self._bytes += cut
        self._pending += seg.records - seg.acked
