"""open_source picks the source a spec names (or says why not); load_sorted orders a bounded read.

The sources themselves are tested beside them: tests/shadow/trace/test_readers.py (files) and
tests/shadow/kafka/test_source.py (Kafka).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path

import pytest

from shadow.errors import UsageError
from shadow.replay.sources import SourceItem, load_sorted, open_source
from shadow.trace.deadletter import DeadLetterFile
from tests.shadow.trace.samples import T0, ids, make_record


@pytest.fixture
def dead_letter(tmp_path: Path) -> Iterator[DeadLetterFile]:
    """A dead-letter file in the test's folder, closed afterwards."""
    with DeadLetterFile(tmp_path / "dead.jsonl") as dlf:
        yield dlf


# Specs ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec",
    [
        "traces.csv",
        "traces",
        "http://127.0.0.1:9092/topic",
        "kafka://127.0.0.1/topic",
        "kafka://127.0.0.1:9092/",
        "kafka://127.0.0.1:9092/bad topic",
        "kafka://127.0.0.1:99999/topic",
    ],
)
def test_unknown_spec_is_a_usage_error_naming_it_and_the_forms(
    spec: str, dead_letter: DeadLetterFile
) -> None:
    """Anything but .jsonl, .parquet or kafka://HOST:PORT/TOPIC is one line: what and the forms."""
    with pytest.raises(UsageError, match=r"kafka://HOST:PORT\[,HOST:PORT\]/TOPIC") as info:
        open_source(spec, dead_letter=dead_letter)
    assert repr(spec) in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("name", ["missing.jsonl", "missing.parquet"])
def test_missing_file_is_a_usage_error_naming_it(
    name: str, tmp_path: Path, dead_letter: DeadLetterFile
) -> None:
    """A trace file that does not exist is named in the error."""
    with pytest.raises(UsageError, match=rf"{tmp_path / name} does not exist"):
        open_source(str(tmp_path / name), dead_letter=dead_letter)


def test_bad_limit_and_empty_window_are_usage_errors(dead_letter: DeadLetterFile) -> None:
    """limit < 1 and a window whose start is not before its end name the values."""
    with pytest.raises(UsageError, match="limit is 0"):
        open_source("x.jsonl", dead_letter=dead_letter, limit=0)
    with pytest.raises(UsageError, match=r"\[5, 5\) is empty"):
        open_source("x.jsonl", dead_letter=dead_letter, from_time_ns=5, to_time_ns=5)


# Ordering ---------------------------------------------------------------------------------------


class ListSource:
    """An in-memory TraceSource (the real part adds nothing to sorting)."""

    name = "list"

    def __init__(self, items: Sequence[SourceItem]) -> None:
        self.items = list(items)

    async def __aiter__(self) -> AsyncIterator[SourceItem]:
        for item in self.items:
            yield item

    async def commit(self, positions: Sequence[tuple[str, int, int]]) -> None:
        pass

    async def aclose(self) -> None:
        pass


async def test_load_sorted_orders_by_captured_at_keeping_ties_in_source_order() -> None:
    """Items come back sorted by captured_at; equal times keep their arrival order."""
    times = [5, 1, 3, 1, 4, 5, 2]
    items = [
        SourceItem(make_record(i, captured_at=T0 + t), ("t", i % 2, i)) for i, t in enumerate(times)
    ]
    ordered = await load_sorted(ListSource(items))
    assert ids(ordered) == ["t0001", "t0003", "t0006", "t0002", "t0004", "t0000", "t0005"]
    earliest = await load_sorted(ListSource(items), limit=4)
    assert ids(earliest) == ["t0001", "t0003", "t0006", "t0002"]
