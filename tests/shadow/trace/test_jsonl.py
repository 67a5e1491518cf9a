"""JSONL trace files: writing all or nothing, reading with blank lines, CRLF and dead letters."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shadow.errors import TraceError, UsageError
from shadow.trace.deadletter import DeadLetterFile
from shadow.trace.jsonl import read_jsonl, write_jsonl
from shadow.trace.record import TraceRecord, encode
from tests.shadow.trace.samples import chat_record, valid_json


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_write_then_read_jsonl_gives_the_same_records(tmp_path: Path) -> None:
    """Records written to a JSONL file read back equal and in order."""
    records = [chat_record(f"t-{i}") for i in range(5)]
    path = tmp_path / "deep" / "traces.jsonl"
    assert write_jsonl(path, records) == 5
    assert list(read_jsonl(path)) == records
    assert len(path.read_bytes().splitlines()) == 5


def test_read_jsonl_skips_blank_lines_and_accepts_crlf(tmp_path: Path) -> None:
    """Blank lines are skipped and Windows line endings are accepted."""
    path = tmp_path / "traces.jsonl"
    path.write_bytes(b"\r\n" + encode(chat_record("a")) + b"\r\n\n  \n" + encode(chat_record("b")))
    assert [r.trace_id for r in read_jsonl(path)] == ["a", "b"]


def test_bad_lines_go_to_the_dead_letter_file_and_good_ones_are_read(tmp_path: Path) -> None:
    """Each bad line is dead-lettered with its reason, file:line and raw text; reading goes on."""
    path = tmp_path / "traces.jsonl"
    not_utf8 = b'{"trace_id": "\xff"}'
    path.write_bytes(
        b"\n".join(
            [
                encode(chat_record("good-1")),
                b"this is not json",
                b"",
                json.dumps({**valid_json(), "captured_at": "soon"}).encode(),
                not_utf8,
                encode(chat_record("good-2")),
            ]
        )
        + b"\n"
    )
    with DeadLetterFile(tmp_path / "dead" / "dead.jsonl") as dead:
        records = list(read_jsonl(path, dead_letter=dead))
        assert dead.count == 3
    assert [r.trace_id for r in records] == ["good-1", "good-2"]

    entries = _lines(tmp_path / "dead" / "dead.jsonl")
    assert [e["source"] for e in entries] == [f"{path}:2", f"{path}:4", f"{path}:5"]
    assert entries[0]["raw"] == "this is not json"
    assert "not JSON" in entries[0]["reason"]
    assert "`$.captured_at`" in entries[1]["reason"]
    assert json.loads(entries[1]["raw"])["captured_at"] == "soon"
    assert "raw" not in entries[2]
    assert base64.b64decode(entries[2]["raw_b64"]) == not_utf8
    assert all(isinstance(e["at"], float) for e in entries)


def test_clean_read_leaves_no_dead_letter_file(tmp_path: Path) -> None:
    """The dead-letter file is created only when something is dead-lettered."""
    path = tmp_path / "traces.jsonl"
    write_jsonl(path, [chat_record()])
    with DeadLetterFile(tmp_path / "dead.jsonl") as dead:
        assert list(read_jsonl(path, dead_letter=dead)) == [chat_record()]
    assert dead.count == 0
    assert not (tmp_path / "dead.jsonl").exists()


def test_bad_line_without_dead_letter_raises_naming_file_and_line(tmp_path: Path) -> None:
    """Without a dead-letter file, the first bad line raises TraceError naming file:line."""
    path = tmp_path / "traces.jsonl"
    path.write_bytes(encode(chat_record()) + b"\n\n" + b'{"v": 1}\n')
    records = read_jsonl(path)
    assert next(records) == chat_record()
    with pytest.raises(TraceError, match=re.escape(f"{path}:3: ")):
        next(records)


def test_reading_a_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    """A trace file that does not exist raises UsageError naming it."""
    with pytest.raises(UsageError, match="cannot read trace file"):
        list(read_jsonl(tmp_path / "missing.jsonl"))


def _failing(records: list[TraceRecord]) -> Iterator[TraceRecord]:
    yield from records
    raise RuntimeError("source broke")


def test_write_jsonl_is_all_or_nothing(tmp_path: Path) -> None:
    """If the records fail mid-way, no target file and no temporary file is left behind."""
    target = tmp_path / "traces.jsonl"
    with pytest.raises(RuntimeError, match="source broke"):
        write_jsonl(target, _failing([chat_record("a"), chat_record("b")]))
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_failed_write_keeps_the_previous_file(tmp_path: Path) -> None:
    """A failed rewrite leaves the earlier complete file untouched."""
    target = tmp_path / "traces.jsonl"
    write_jsonl(target, [chat_record("old")])
    before = target.read_bytes()
    with pytest.raises(RuntimeError):
        write_jsonl(target, _failing([chat_record("new")]))
    assert target.read_bytes() == before
    assert list(tmp_path.iterdir()) == [target]
