"""Parquet trace files: the nested layout round-trips, other layouts convert, bad rows are named."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from shadow.errors import UsageError
from shadow.replay.sources import open_source
from shadow.trace.deadletter import DeadLetterFile
from shadow.trace.parquet import parquet_schema, write_parquet
from shadow.trace.record import HttpRequest, TraceRecord, encode
from tests.shadow.trace.samples import T0, dead_letters, ids, make_record, read_all


def test_the_schema_has_one_column_per_record_field_and_maps_as_key_value_lists() -> None:
    """parquet_schema follows TraceRecord: every field a column, dicts as lists of structs."""
    schema = parquet_schema()
    assert list(schema) == list(TraceRecord.__struct_fields__)
    assert schema["slices"] == pl.List(pl.Struct({"key": pl.String(), "value": pl.String()}))
    assert schema["captured_at"] == pl.Int64()


def test_written_files_have_the_schema_even_when_empty(tmp_path: Path) -> None:
    """An empty write still produces a file with every column, atomically and nothing beside it."""
    path = tmp_path / "empty.parquet"
    assert write_parquet(path, []) == 0
    assert pl.read_parquet(path).schema == pl.Schema(parquet_schema())
    assert list(tmp_path.iterdir()) == [path]


async def test_parquet_nested_round_trip_keeps_every_field(
    tmp_path: Path, dead_letter: DeadLetterFile
) -> None:
    """write_parquet then open_source gives equal records, binary bodies and empty maps included."""
    records = [
        make_record(0),
        make_record(1, body=b"\xff\xfe\x00binary"),
        TraceRecord(
            trace_id="bare",
            captured_at=T0,
            request=HttpRequest(method="GET", path="/health"),
        ),
    ]
    assert records[1].request.body_b64 is not None
    path = tmp_path / "traces.parquet"

    assert write_parquet(path, records) == 3

    items = await read_all(open_source(str(path), dead_letter=dead_letter))
    assert [item.record for item in items] == records
    assert items[1].record.request.body_bytes() == b"\xff\xfe\x00binary"
    assert not dead_letter.path.exists()


async def test_parquet_record_column_of_json_text(
    tmp_path: Path, dead_letter: DeadLetterFile
) -> None:
    """A single `record` column of JSON text is decoded; a bad row is dead-lettered by row."""
    path = tmp_path / "records.parquet"
    texts = [encode(make_record(i)).decode() for i in range(3)]
    texts.insert(1, '{"v": 1}')
    pl.DataFrame({"record": texts}).write_parquet(path)

    items = await read_all(open_source(str(path), dead_letter=dead_letter))

    assert ids(items) == ["t0000", "t0001", "t0002"]
    (entry,) = dead_letters(dead_letter.path)
    assert entry["source"] == f"{path}:2"
    assert "missing required field" in entry["reason"]


async def test_parquet_from_another_tool_converts_and_bad_rows_are_dead_lettered(
    tmp_path: Path, dead_letter: DeadLetterFile
) -> None:
    """Struct-encoded maps, extra columns and nulls convert; a row failing validation does not."""
    path = tmp_path / "other.parquet"
    pl.DataFrame(
        [
            {
                "trace_id": "ok",
                "captured_at": T0,
                "request": {"method": "POST", "path": "/v1", "headers": {"a": "1", "b": None}},
                "slices": {"tenant": "x"},
                "extra_column": 42,
            },
            {
                "trace_id": "bad",
                "captured_at": T0,
                "request": {"method": "POST", "path": "no-slash", "headers": {"a": None, "b": "2"}},
                "slices": {"tenant": None},
                "extra_column": None,
            },
        ]
    ).write_parquet(path)

    items = await read_all(open_source(str(path), dead_letter=dead_letter))

    (item,) = items
    assert item.record.request.headers == {"a": "1"}
    assert item.record.slices == {"tenant": "x"}
    (entry,) = dead_letters(dead_letter.path)
    assert entry["source"] == f"{path}:2"
    assert "must start with '/'" in entry["reason"]
    assert '"trace_id":"bad"' in entry["raw"]


async def test_a_file_that_is_not_parquet_is_a_usage_error(
    tmp_path: Path, dead_letter: DeadLetterFile
) -> None:
    """A .parquet file polars cannot read gives one line naming the file."""
    path = tmp_path / "fake.parquet"
    path.write_text("not parquet at all\n")
    with pytest.raises(UsageError, match=rf"cannot read Parquet file {path}: ") as info:
        await read_all(open_source(str(path), dead_letter=dead_letter))
    assert "\n" not in str(info.value)
