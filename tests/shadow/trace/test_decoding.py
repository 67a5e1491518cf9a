"""The one decoding loop: rows become records, failures are dead-lettered, window and limit hold."""

from __future__ import annotations

import pytest

from shadow.errors import TraceError, UsageError
from shadow.trace.deadletter import DeadLetterFile
from shadow.trace.decoding import Row, RowReader, Window, decode_row
from shadow.trace.record import encode
from tests.shadow.trace.samples import STEP, T0, dead_letters, make_record


def rows(count: int) -> list[Row]:
    """``count`` good rows with origins ``f:1``, ``f:2``, ..."""
    return [decode_row(f"f:{i + 1}", encode(make_record(i))) for i in range(count)]


def test_decode_row_keeps_the_record_or_the_reason_and_the_raw_bytes() -> None:
    """A good row carries its record; a bad one the decoder's reason and the bytes to keep."""
    good = decode_row("f:1", encode(make_record(0)))
    assert good.result == make_record(0)
    bad = decode_row("f:2", b'{"v": 1}\n', raw=b'{"v": 1}')
    assert isinstance(bad.result, str)
    assert "missing required field" in bad.result
    assert bad.raw == b'{"v": 1}'
    assert decode_row("f:3", '{"v": 1}').raw == b'{"v": 1}'


def test_failed_rows_go_to_the_dead_letter_file_with_origin_and_reason(
    dead_letter: DeadLetterFile,
) -> None:
    """A failed row is written with its origin, reason and raw bytes; good rows pass through."""
    reader = RowReader(dead_letter=dead_letter, window=Window())
    mixed = [*rows(2), Row("topic/0@7", b"junk", "invalid TraceRecord: not JSON (x)")]
    assert [r.trace_id for r in reader.records(mixed)] == ["t0000", "t0001"]
    (entry,) = dead_letters(dead_letter.path)
    assert (entry["source"], entry["raw"]) == ("topic/0@7", "junk")
    assert entry["reason"] == "invalid TraceRecord: not JSON (x)"
    assert reader.count == 2


def test_without_a_dead_letter_file_the_first_failed_row_raises_naming_its_origin() -> None:
    """A reader without a dead-letter file raises TraceError prefixed with the row's origin."""
    reader = RowReader(dead_letter=None, window=Window())
    records = reader.records([*rows(1), Row("f:2", b"", "invalid TraceRecord: bad")])
    assert next(records) == make_record(0)
    with pytest.raises(TraceError, match=r"^f:2: invalid TraceRecord: bad$"):
        next(records)


def test_window_and_limit_keep_only_the_records_asked_for(dead_letter: DeadLetterFile) -> None:
    """from is inclusive, to exclusive; the limit counts kept records and then stops the read."""
    window = Window(from_time_ns=T0 + 2 * STEP, to_time_ns=T0 + 8 * STEP, limit=3)
    reader = RowReader(dead_letter=dead_letter, window=window)
    source = iter(rows(10))
    kept = [record.trace_id for record in reader.records(source)]
    assert kept == ["t0002", "t0003", "t0004"]
    assert reader.full
    assert [row.origin for row in source] == [f"f:{i}" for i in range(6, 11)]  # left unread
    assert list(reader.records(rows(10))) == []  # a full reader keeps nothing more


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"limit": 0}, "limit is 0; it must be >= 1"),
        ({"from_time_ns": 5, "to_time_ns": 5}, r"the time range \[5, 5\) is empty"),
        ({"from_time_ns": 6, "to_time_ns": 5}, r"the time range \[6, 5\) is empty"),
    ],
)
def test_an_impossible_window_is_a_usage_error(kwargs: dict[str, int], message: str) -> None:
    """A limit below 1 or an empty time range is refused, naming the values."""
    with pytest.raises(UsageError, match=message):
        Window(**kwargs)
