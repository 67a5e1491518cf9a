"""The file sources: JSONL and Parquet read through open_source, dead letters, window and limit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from shadow.replay.sources import open_source
from shadow.trace.deadletter import DeadLetterFile
from shadow.trace.jsonl import write_jsonl
from shadow.trace.parquet import write_parquet
from shadow.trace.record import encode
from shadow.trace.source import TraceSource
from tests.shadow.trace.samples import STEP, T0, dead_letters, ids, make_record, read_all


async def test_jsonl_bad_line_is_dead_lettered_and_reading_goes_on(
    tmp_path: Path, dead_letter: DeadLetterFile
) -> None:
    """Bad lines in the middle go to the dead-letter file with file:line; the rest arrive."""
    path = tmp_path / "traces.jsonl"
    lines = [encode(make_record(i)) for i in range(5)]
    lines.insert(2, b'{"v": 1, "trace_id": "broken"')
    lines.insert(4, b"")  # blank lines are skipped, not dead-lettered
    zero_time = b'{"trace_id": "z", "captured_at": 0, "request": {"method": "GET", "path": "/"}}'
    lines.insert(5, zero_time)  # valid JSON that fails validation
    path.write_bytes(b"\n".join(lines) + b"\n")

    items = await read_all(open_source(str(path), dead_letter=dead_letter))

    assert [item.record for item in items] == [make_record(i) for i in range(5)]
    assert all(item.position is None for item in items)
    not_json, invalid = dead_letters(dead_letter.path)
    assert not_json["source"] == f"{path}:3"
    assert "not JSON" in not_json["reason"]
    assert not_json["raw"] == '{"v": 1, "trace_id": "broken"'
    assert invalid["source"] == f"{path}:6"
    assert "captured_at is 0" in invalid["reason"]


async def test_jsonl_larger_than_one_batch_arrives_whole_and_in_order(
    tmp_path: Path, dead_letter: DeadLetterFile
) -> None:
    """A file of several worker-thread batches yields every record in file order."""
    path = tmp_path / "big.jsonl"
    write_jsonl(path, (make_record(i) for i in range(9000)))
    items = await read_all(open_source(str(path), dead_letter=dead_letter))
    assert ids(items) == [f"t{i:04d}" for i in range(9000)]


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
async def test_time_window_and_limit_filter_file_records(
    suffix: str, tmp_path: Path, dead_letter: DeadLetterFile
) -> None:
    """from is inclusive, to exclusive, and limit counts only records inside the window."""
    path = tmp_path / f"traces{suffix}"
    records = [make_record(i) for i in range(10)]
    if suffix == ".jsonl":
        write_jsonl(path, records)
    else:
        write_parquet(path, records)

    def window(**kw: Any) -> TraceSource:
        return open_source(str(path), dead_letter=dead_letter, **kw)

    inside = window(from_time_ns=T0 + 3 * STEP, to_time_ns=T0 + 7 * STEP)
    assert ids(await read_all(inside)) == ["t0003", "t0004", "t0005", "t0006"]
    assert ids(await read_all(window(limit=2))) == ["t0000", "t0001"]
    assert ids(await read_all(window(from_time_ns=T0 + 8 * STEP, limit=5))) == ["t0008", "t0009"]
