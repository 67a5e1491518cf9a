"""The dead-letter file: appended to, never truncated, and safe to close twice."""

from __future__ import annotations

import json
from pathlib import Path

from shadow.trace.deadletter import DeadLetterFile


def test_dead_letter_file_appends_and_closes_twice(tmp_path: Path) -> None:
    """DeadLetterFile appends to an existing file and close() is safe to call twice."""
    path = tmp_path / "dead.jsonl"
    for reason in ("first", "second"):
        dead = DeadLetterFile(path)
        dead.write(b"raw", reason=reason, source="topic/0@7")
        dead.close()
        dead.close()
    entries = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(e["reason"], e["source"], e["raw"]) for e in entries] == [
        ("first", "topic/0@7", "raw"),
        ("second", "topic/0@7", "raw"),
    ]
