"""Fixtures of the trace-source tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from shadow.trace.deadletter import DeadLetterFile


@pytest.fixture
def dead_letter(tmp_path: Path) -> Iterator[DeadLetterFile]:
    """A dead-letter file in the test's folder, closed afterwards."""
    with DeadLetterFile(tmp_path / "dead.jsonl") as dlf:
        yield dlf
