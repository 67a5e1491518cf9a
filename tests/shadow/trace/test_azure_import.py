"""Tests for ``shadow.trace.azure`` and ``shadow import azure``."""

from __future__ import annotations

import calendar
import collections
import itertools
import json
import subprocess
import sys
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from shadow.errors import TraceError, UsageError
from shadow.trace.azure import (
    INTENT_WEIGHTS,
    LONG_MIN_TOKENS,
    MEDIUM_MIN_TOKENS,
    TENANT_WEIGHTS,
    import_azure,
    read_azure_csv,
    select_rows,
    service_name,
    size_slice,
)
from shadow.trace.record import TraceRecord, decode, encode
from shadow.wire.tokens import count_tokens

REAL_CSV = Path(__file__).resolve().parents[2] / "data" / "azure_llm_code_2023.csv"
HEADER = "TIMESTAMP,ContextTokens,GeneratedTokens\n"


def _ns_from_text(stamp: str) -> int:
    """Epoch nanoseconds of a CSV timestamp, computed independently with ``decimal``."""
    whole, _, fraction = stamp.partition(".")
    seconds = calendar.timegm(datetime.strptime(whole, "%Y-%m-%d %H:%M:%S").timetuple())
    nanos = Decimal(f"0.{fraction or '0'}") * 10**9
    assert nanos == nanos.to_integral_value()
    return seconds * 10**9 + int(nanos)


def _csv_rows(path: Path) -> list[tuple[int, int, int]]:
    """(ns, context, generated) for every data row of a CSV, parsed from its text."""
    lines = path.read_text().splitlines()[1:]
    rows = []
    for line in lines:
        stamp, context, generated = line.split(",")
        rows.append((_ns_from_text(stamp), int(context), int(generated)))
    return rows


def _body(record: TraceRecord) -> dict[str, object]:
    """The request body of a record as a dict."""
    assert record.request.body is not None
    body: dict[str, object] = json.loads(record.request.body)
    return body


def _content(record: TraceRecord) -> str:
    """The user message of a record's request."""
    messages = _body(record)["messages"]
    assert isinstance(messages, list)
    content: str = messages[0]["content"]
    return content


def _write(tmp_path: Path, text: str, name: str = "trace.csv") -> Path:
    """Write a CSV into the test's directory and return its path."""
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def real_records() -> list[TraceRecord]:
    """The whole public Azure trace, imported once for the module."""
    return import_azure(REAL_CSV)


@pytest.fixture(scope="module")
def real_rows() -> list[tuple[int, int, int]]:
    """The public Azure trace's rows, parsed independently from its text."""
    return _csv_rows(REAL_CSV)


def test_real_file_gives_one_record_per_row_with_exact_gaps(
    real_records: list[TraceRecord], real_rows: list[tuple[int, int, int]]
) -> None:
    """The real file gives 8,819 records whose time gaps equal the CSV's to the nanosecond."""
    assert len(real_records) == len(real_rows) == 8_819
    assert real_records[0].captured_at == 1_700_158_623_979_960_000
    assert real_records[-1].captured_at == 1_700_162_059_928_016_000
    got = [b.captured_at - a.captured_at for a, b in itertools.pairwise(real_records)]
    want = [b[0] - a[0] for a, b in itertools.pairwise(real_rows)]
    assert got == want


def test_real_file_prompts_and_token_counts_match_the_csv(
    real_records: list[TraceRecord], real_rows: list[tuple[int, int, int]]
) -> None:
    """Every prompt has exactly ContextTokens tokens and max_tokens equals GeneratedTokens."""
    for record, (_, context, generated) in zip(real_records, real_rows, strict=True):
        body = _body(record)
        assert count_tokens(_content(record)) == context
        assert body["max_tokens"] == generated
        assert record.usage is not None
        assert (record.usage.prompt_tokens, record.usage.completion_tokens) == (context, generated)
        assert record.usage.estimated is False
        assert record.slices["size"] == size_slice(context)


def test_real_file_records_are_well_formed_chat_requests(real_records: list[TraceRecord]) -> None:
    """Records are unique, labelled chat completion requests whose header and body agree."""
    assert len({r.trace_id for r in real_records}) == len(real_records)
    assert real_records[0].trace_id == "azure-llm-code-2023-000001"
    assert real_records[-1].trace_id == "azure-llm-code-2023-008819"
    for record in real_records[:200]:
        assert record.service == "azure-llm-code-2023"
        assert record.response is None
        assert record.timing.latency_ms is None
        assert (record.request.method, record.request.path) == ("POST", "/v1/chat/completions")
        assert record.request.headers["content-type"] == "application/json"
        tenant, intent = record.slices["tenant"], record.slices["intent"]
        assert record.request.headers["x-tenant"] == tenant
        body = _body(record)
        assert body["model"] == record.slices["model"] == "shadow-large"
        assert body["metadata"] == {"intent": intent, "tenant": tenant}
        assert decode(encode(record)) == record


def test_real_file_labels_follow_the_documented_shares(real_records: list[TraceRecord]) -> None:
    """Tenant and intent shares over the real file are near the documented weights."""
    n = len(real_records)
    for key, weights in (("tenant", TENANT_WEIGHTS), ("intent", INTENT_WEIGHTS)):
        counts = collections.Counter(r.slices[key] for r in real_records)
        assert set(counts) == {name for name, _ in weights}
        for name, share in weights:
            assert abs(counts[name] / n - share) < 0.03, (key, name, counts[name] / n)


def test_window_and_limit_select_exactly_the_right_rows(
    real_records: list[TraceRecord], real_rows: list[tuple[int, int, int]]
) -> None:
    """A window and limit keep the rows in [t0 + start, t0 + start + length), first N of them."""
    t0 = real_rows[0][0]
    start, length, limit = 600 * 10**9, 90 * 10**9, 150
    wanted = [i for i, (ns, _, _) in enumerate(real_rows) if t0 + start <= ns < t0 + start + length]
    assert len(wanted) > limit
    windowed = import_azure(REAL_CSV, window_start=600, window_seconds=90)
    assert [r.trace_id for r in windowed] == [real_records[i].trace_id for i in wanted]
    limited = import_azure(REAL_CSV, window_start=600, window_seconds=90, limit=limit)
    assert limited == [real_records[i] for i in wanted[:limit]]
    assert import_azure(REAL_CSV, limit=3) == real_records[:3]


def test_window_boundaries_are_half_open(tmp_path: Path) -> None:
    """A record exactly at the window's end is left out; one exactly at its start is kept."""
    csv_path = _write(
        tmp_path,
        HEADER + "2024-01-01 00:00:00,5,5\n2024-01-01 00:00:01.5,5,5\n2024-01-01 00:00:03,5,5\n",
    )
    rows = read_azure_csv(csv_path)
    assert [r.row for r in select_rows(rows, window_start=1.5, window_seconds=1.5)] == [2]
    assert [r.row for r in select_rows(rows, window_start=1.5)] == [2, 3]
    assert select_rows(rows, window_start=3.5) == []


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"window_start": -1.0}, "window start"),
        ({"window_start": float("nan")}, "window start"),
        ({"window_seconds": 0.0}, "window length"),
        ({"limit": 0}, "limit"),
    ],
)
def test_bad_window_arguments_are_usage_errors(
    tmp_path: Path, kwargs: dict[str, Any], problem: str
) -> None:
    """Negative, NaN or empty windows and a zero limit are rejected naming the argument."""
    rows = read_azure_csv(_write(tmp_path, HEADER + "2024-01-01 00:00:00,5,5\n"))
    with pytest.raises(UsageError, match=problem):
        select_rows(rows, **kwargs)


def test_same_seed_gives_identical_records_and_seeds_redraw_synthetic_fields(
    real_records: list[TraceRecord],
) -> None:
    """The same seed repeats the output; another seed redraws prompts and labels only."""
    first = real_records[:300]
    assert [encode(r) for r in import_azure(REAL_CSV, limit=300)] == [encode(r) for r in first]
    other = import_azure(REAL_CSV, limit=300, seed=7)
    assert [r.captured_at for r in other] == [r.captured_at for r in first]
    assert [r.usage for r in other] == [r.usage for r in first]
    assert [r.slices["size"] for r in other] == [r.slices["size"] for r in first]
    assert all(_content(a) != _content(b) for a, b in zip(first, other, strict=True))
    assert [r.slices["tenant"] for r in other] != [r.slices["tenant"] for r in first]
    assert [r.slices["intent"] for r in other] != [r.slices["intent"] for r in first]


@pytest.mark.parametrize(
    ("context", "size"),
    [
        (0, "short"),
        (MEDIUM_MIN_TOKENS - 1, "short"),
        (MEDIUM_MIN_TOKENS, "medium"),
        (LONG_MIN_TOKENS - 1, "medium"),
        (LONG_MIN_TOKENS, "long"),
        (70_000, "long"),
    ],
)
def test_size_slice_thresholds_and_exact_prompt_lengths(
    tmp_path: Path, context: int, size: str
) -> None:
    """Context lengths at each threshold get the right size and a prompt of exactly that length."""
    (record,) = import_azure(_write(tmp_path, HEADER + f"2024-01-01 00:00:00,{context},3\n"))
    assert record.slices["size"] == size
    assert count_tokens(_content(record)) == context


def test_zero_counts_keep_usage_and_ask_for_one_token(tmp_path: Path) -> None:
    """A row of 0 tokens sends an empty message and max_tokens 1, and records usage 0/0."""
    (record,) = import_azure(_write(tmp_path, HEADER + "2024-01-01 00:00:00,0,0\n"))
    assert _content(record) == ""
    assert _body(record)["max_tokens"] == 1
    assert record.usage is not None
    assert (record.usage.prompt_tokens, record.usage.completion_tokens) == (0, 0)


@pytest.mark.parametrize(
    ("stamp", "ns"),
    [
        ("2024-01-01 00:00:00", 1_704_067_200_000_000_000),
        ("2024-01-01 00:00:00.5", 1_704_067_200_500_000_000),
        ("2024-01-01T00:00:00.123456789", 1_704_067_200_123_456_789),
        ("2024-01-01 00:00:00.0000001Z", 1_704_067_200_000_000_100),
        ("2024-01-01T00:00:00.25+00:00", 1_704_067_200_250_000_000),
    ],
)
def test_timestamp_forms_parse_to_exact_nanoseconds(tmp_path: Path, stamp: str, ns: int) -> None:
    """Each accepted timestamp form gives the exact UTC epoch nanoseconds."""
    (row,) = read_azure_csv(_write(tmp_path, HEADER + f"{stamp},1,1\n"))
    assert row.captured_at == ns


def test_column_order_does_not_matter(tmp_path: Path) -> None:
    """Columns are found by name, so a reordered header reads the same values."""
    csv_path = _write(
        tmp_path, "GeneratedTokens,TIMESTAMP,ContextTokens\n7,2024-01-01 00:00:00,9\n"
    )
    (row,) = read_azure_csv(csv_path)
    assert (row.context_tokens, row.generated_tokens) == (9, 7)


def test_service_name_is_a_slug_of_the_file_stem() -> None:
    """The service is the file stem as a slug, prefixed with azure- when it lacks it."""
    assert service_name("data/azure_llm_code_2023.csv") == "azure-llm-code-2023"
    assert service_name("Conv Trace.csv") == "azure-conv-trace"


_GOOD = "2024-01-01 00:00:00,5,5\n"


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("", r"bad\.csv is empty"),
        (HEADER, r"bad\.csv has the header but no data rows"),
        ("time,prompt,output\n" + _GOOD, r"bad\.csv is not an Azure LLM trace CSV"),
        ("TIMESTAMP,ContextTokens\n2024-01-01 00:00:00,5\n", r"not an Azure LLM trace CSV"),
        (HEADER + _GOOD + "2024-01-01 00:00:01,5\n", r"bad\.csv row 2 \(line 3\): has 2 columns"),
        (HEADER + _GOOD + "2024-01-01 00:00:01,5,abc\n", r"row 2 .*GeneratedTokens 'abc' is not"),
        (HEADER + "2024-01-01 00:00:01,-3,5\n", r"row 1 .*ContextTokens '-3' is not a non-neg"),
        (HEADER + "2024-01-01 00:00:01,5.0,5\n", r"row 1 .*ContextTokens '5.0' is not"),
        (HEADER + "2024-01-01 00:00:01,99999999,5\n", r"row 1 .*more than 10,000,000"),
        (HEADER + "yesterday,5,5\n", r"row 1 .*TIMESTAMP 'yesterday' is not a UTC time"),
        (HEADER + "2024-01-01 00:00:00+01:00,5,5\n", r"row 1 .*is not a UTC time"),
        (HEADER + "2024-01-01 00:00:00.1234567891,5,5\n", r"row 1 .*is not a UTC time"),
        (HEADER + "2024-02-30 00:00:00,5,5\n", r"row 1 .*not a valid date and time"),
        (HEADER + "1969-12-31 23:59:59,5,5\n", r"row 1 .*not after 1970"),
        (HEADER + _GOOD * 3 + "2023-12-31 23:59:59,5,5\n", r"row 4 .*goes backwards"),
    ],
)
def test_bad_csvs_raise_one_line_trace_errors(tmp_path: Path, text: str, pattern: str) -> None:
    """Empty, foreign-format and bad-row files raise a one-line TraceError naming the row."""
    with pytest.raises(TraceError, match=pattern) as excinfo:
        read_azure_csv(_write(tmp_path, text, name="bad.csv"))
    assert "\n" not in str(excinfo.value)


def test_non_utf8_csv_is_a_trace_error(tmp_path: Path) -> None:
    """A file that is not UTF-8 text raises a TraceError naming the file."""
    csv_path = tmp_path / "latin.csv"
    csv_path.write_bytes(HEADER.encode() + b"2024-01-01 00:00:00,5,5\xff\n")
    with pytest.raises(TraceError, match=r"latin\.csv is not UTF-8 text"):
        read_azure_csv(csv_path)


def test_missing_csv_is_a_usage_error(tmp_path: Path) -> None:
    """A CSV that does not exist raises a UsageError naming it."""
    with pytest.raises(UsageError, match=r"cannot read Azure trace CSV .*nope\.csv"):
        read_azure_csv(tmp_path / "nope.csv")


def _shadow(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """Run the shadow CLI in a subprocess and capture its output."""
    return subprocess.run(
        [sys.executable, "-m", "shadow", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_cli_writes_decodable_jsonl(tmp_path: Path) -> None:
    """`shadow import azure` writes one valid TraceRecord per selected row and says so."""
    csv_path = _write(
        tmp_path,
        HEADER + "".join(f"2024-01-01 00:00:{s:02d}.25,{10 * s},{s}\n" for s in range(10)),
    )
    out = tmp_path / "out" / "traces.jsonl"
    result = _shadow(
        "import", "azure", csv_path, "--out", out, "--window-start", "2", "--limit", "5"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "wrote 5 records (2024-01-01T00:00:02.250000000Z..2024-01-01T00:00:06.250000000Z, "
        f"span 4.000 s) to {out}"
    ]
    records = [decode(line) for line in out.read_bytes().splitlines()]
    assert records == import_azure(csv_path, window_start=2, limit=5)
    assert [r.trace_id for r in records] == [f"azure-trace-{n:06d}" for n in range(3, 8)]


@pytest.mark.parametrize(
    ("text", "extra", "message"),
    [
        (HEADER + _GOOD + "2024-01-01 00:00:01,5,abc\n", [], "row 2 (line 3)"),
        (None, [], "cannot read Azure trace CSV"),
        (HEADER + _GOOD, ["--window-start", "10"], "no records of"),
    ],
)
def test_cli_bad_input_exits_2_with_one_line_and_no_file(
    tmp_path: Path, text: str | None, extra: list[str], message: str
) -> None:
    """A bad row, a missing CSV or an empty window exit 2 with one stderr line and no output."""
    csv_path = tmp_path / "bad.csv"
    if text is not None:
        csv_path.write_text(text)
    out = tmp_path / "traces.jsonl"
    result = _shadow("import", "azure", csv_path, "--out", out, *extra)
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith("shadow: error: ")
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists()
    assert list(tmp_path.iterdir()) == ([csv_path] if text is not None else [])
