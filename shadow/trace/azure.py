"""Import the Azure LLM inference trace (CSV) as TraceRecords.

The Azure Public Dataset's LLM inference traces (AzureLLMInferenceDataset2023, CC-BY 4.0; Patel et
al., "Splitwise: Efficient generative LLM inference using phase splitting", ISCA 2024) hold one
request per row and no text::

    TIMESTAMP,ContextTokens,GeneratedTokens
    2023-11-16 18:17:03.9799600,4808,10

Each row becomes a synthetic chat completion request (``POST /v1/chat/completions``) that keeps
the recorded shape exactly:

- ``captured_at``: TIMESTAMP as UTC epoch nanoseconds, computed with integers only (never a
  float), so the gap between two records equals the source's to the nanosecond. Accepted:
  ``YYYY-MM-DD HH:MM:SS[.F]`` with 1 to 9 fractional digits, a space or ``T`` between date and
  time, optionally ending in ``Z`` or ``+00:00``; a time without a zone is UTC. The file must be
  in time order (equal timestamps are fine).
- prompt: one user message of exactly ContextTokens tokens under
  :func:`shadow.wire.tokens.count_tokens`; 0 gives an empty message, so the count stays exact. The
  words are a slice of a :data:`POOL_WORDS`-word pseudo-random sequence over
  :data:`~shadow.wire.tokens.VOCABULARY` (drawn from the seed), taken at a per-row offset, wrapping.
- ``max_tokens``: GeneratedTokens, but at least 1 (chat APIs reject 0). ``usage`` keeps the
  recorded counts unchanged (``estimated=False``).
- streamed by default (``"stream": true, "stream_options": {"include_usage": true}``), as chat
  and code assistants ask, so a replay measures TTFT and TPOT and reads the usage chunk;
  ``stream=False`` writes plain requests.
- slices: ``size`` from ContextTokens (``short`` < :data:`MEDIUM_MIN_TOKENS` <= ``medium`` <
  :data:`LONG_MIN_TOKENS` <= ``long``); ``tenant`` and ``intent`` drawn from
  :data:`TENANT_WEIGHTS` and :data:`INTENT_WEIGHTS` (also sent as the ``x-tenant`` header and
  the body's ``metadata``); ``model``, the requested model; and the request features of
  :mod:`shadow.wire.features` (``turns`` 1, ``prompt_size`` from ContextTokens, ``tools`` and
  ``tool_calls`` no, ``stream``, ``format`` openai).

Everything synthetic (prompt offset, tenant, intent) comes from a generator seeded with an
integer derived from ``(seed, row)`` by BLAKE2b, ``row`` being the 1-based data row of the file
(the header is not a row). So a row's record is the same whichever window or limit selects it,
and another seed redraws prompts, tenants and intents while the recorded fields (time, token
counts, size) stay.
"""

from __future__ import annotations

import bisect
import csv
import hashlib
import itertools
import math
import random
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec

from shadow.errors import TraceError, UsageError
from shadow.sim.profiles import ROUTED_CONTEXT_THRESHOLD
from shadow.trace.record import HttpRequest, TraceRecord, Usage, body_fields
from shadow.wire.features import request_features
from shadow.wire.tokens import VOCABULARY

__all__ = [
    "COLUMNS",
    "DEFAULT_MODEL",
    "INTENT_WEIGHTS",
    "LONG_MIN_TOKENS",
    "MAX_TOKENS",
    "MEDIUM_MIN_TOKENS",
    "POOL_WORDS",
    "TENANT_WEIGHTS",
    "AzureRow",
    "import_azure",
    "iter_records",
    "read_azure_csv",
    "select_rows",
    "service_name",
    "size_slice",
]

COLUMNS = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")
"""The header of an Azure LLM inference trace CSV (any column order)."""

DEFAULT_MODEL = "shadow-large"

MEDIUM_MIN_TOKENS = ROUTED_CONTEXT_THRESHOLD + 1
"""Fewer context tokens (at most 1,024) is ``short``: exactly the prompts the ``routed`` mock
profile may send to its small model (longer ones always go to large)."""

LONG_MIN_TOKENS = 4_096
"""This many context tokens or more is ``long``; in between is ``medium``."""

TENANT_WEIGHTS: tuple[tuple[str, float], ...] = (
    ("acme", 0.50),
    ("globex", 0.25),
    ("initech", 0.15),
    ("umbrella", 0.10),
)
"""Share of requests per synthetic tenant (the trace has none)."""

INTENT_WEIGHTS: tuple[tuple[str, float], ...] = (
    ("complete", 0.55),
    ("explain", 0.15),
    ("refactor", 0.12),
    ("debug", 0.10),
    ("test", 0.08),
)
"""Share of requests per synthetic intent of a code assistant (the trace has none)."""

POOL_WORDS = 65_536
"""Length of the word sequence prompts are sliced from."""

MAX_TOKENS = 10_000_000
"""Largest token count accepted in a row: a guard against typos that would exhaust memory."""

_TIMESTAMP = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:Z|\+00:00)?", re.ASCII
)
_COUNT = re.compile(r"\d+", re.ASCII)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SECOND = timedelta(seconds=1)
_NS = 1_000_000_000
_PATH = "/v1/chat/completions"


@dataclass(frozen=True, kw_only=True, slots=True)
class AzureRow:
    """One validated data row of the CSV."""

    row: int
    """1-based data row number in the file (the header is not counted)."""
    captured_at: int
    """TIMESTAMP as UTC epoch nanoseconds."""
    context_tokens: int
    generated_tokens: int


def read_azure_csv(path: str | Path) -> list[AzureRow]:
    """Read and validate a whole Azure LLM trace CSV, in file order.

    Raises:
        UsageError: the file cannot be opened.
        TraceError: the file is empty, not this format, or a row is bad; the one-line message
            names the file, the row (and its line) and the problem.
    """
    path = Path(path)
    try:
        fh = path.open(encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise UsageError(f"cannot read Azure trace CSV {path}: {exc.strerror}") from None
    expected = ",".join(COLUMNS)
    rows: list[AzureRow] = []
    with fh:
        reader = csv.reader(fh)
        try:
            header = next(reader, None)
            if header is None:
                raise TraceError(f"{path} is empty; an Azure LLM trace CSV starts with {expected}")
            names = [name.strip() for name in header]
            if sorted(names) != sorted(COLUMNS):
                raise TraceError(
                    f"{path} is not an Azure LLM trace CSV: header is {','.join(names)!r}; "
                    f"expected {expected}"
                )
            order = [names.index(name) for name in COLUMNS]
            previous = ""
            for fields in reader:
                if not fields:  # blank line
                    continue
                try:
                    row = _parse_row(fields, len(rows) + 1, order, len(names))
                    if rows and row.captured_at < rows[-1].captured_at:
                        raise ValueError(
                            f"TIMESTAMP {fields[order[0]].strip()!r} goes backwards "
                            f"(the row before is {previous!r}); the file must be in time order"
                        )
                except ValueError as exc:
                    raise TraceError(
                        f"{path} row {len(rows) + 1} (line {reader.line_num}): {exc}"
                    ) from None
                rows.append(row)
                previous = fields[order[0]].strip()
        except UnicodeDecodeError:
            raise TraceError(
                f"{path} is not UTF-8 text (near line {reader.line_num + 1})"
            ) from None
        except csv.Error as exc:
            raise TraceError(f"{path} line {reader.line_num}: not valid CSV ({exc})") from None
    if not rows:
        raise TraceError(f"{path} has the header but no data rows")
    return rows


def _parse_row(fields: list[str], number: int, order: list[int], width: int) -> AzureRow:
    """Parse one data row; a ValueError's message is the problem, for the caller to locate."""
    if len(fields) != width:
        raise ValueError(f"has {len(fields)} columns; expected {width} ({','.join(COLUMNS)})")
    stamp, context, generated = (fields[i].strip() for i in order)
    return AzureRow(
        row=number,
        captured_at=_parse_timestamp(stamp),
        context_tokens=_parse_count(COLUMNS[1], context),
        generated_tokens=_parse_count(COLUMNS[2], generated),
    )


def _parse_timestamp(text: str) -> int:
    match = _TIMESTAMP.fullmatch(text)
    if match is None:
        raise ValueError(f"TIMESTAMP {text!r} is not a UTC time like 2023-11-16 18:17:03.9799600")
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    fraction = match[7] or ""
    try:
        moment = datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    except ValueError as exc:
        raise ValueError(f"TIMESTAMP {text!r} is not a valid date and time ({exc})") from None
    ns = ((moment - _EPOCH) // _SECOND) * _NS + int(fraction.ljust(9, "0"))
    if ns <= 0:
        raise ValueError(f"TIMESTAMP {text!r} is not after 1970-01-01 00:00:00 UTC")
    return ns


def _parse_count(column: str, text: str) -> int:
    if _COUNT.fullmatch(text) is None:
        raise ValueError(f"{column} {text!r} is not a non-negative integer")
    value = int(text)
    if value > MAX_TOKENS:
        raise ValueError(f"{column} {value:,} is more than {MAX_TOKENS:,} tokens")
    return value


def select_rows(
    rows: Sequence[AzureRow],
    *,
    window_start: float = 0.0,
    window_seconds: float | None = None,
    limit: int | None = None,
) -> list[AzureRow]:
    """The rows in ``[t0 + window_start, t0 + window_start + window_seconds)``, first ``limit``.

    ``t0`` is the first row's time, ``rows`` in time order as :func:`read_azure_csv` returns
    them; no ``window_seconds`` means to the end, no ``limit`` means all.
    """
    if not (math.isfinite(window_start) and window_start >= 0):
        raise UsageError(f"window start has value {window_start}; it must be >= 0 seconds")
    if window_seconds is not None and not (math.isfinite(window_seconds) and window_seconds > 0):
        raise UsageError(f"window length has value {window_seconds}; it must be > 0 seconds")
    if limit is not None and limit < 1:
        raise UsageError(f"limit has value {limit}; it must be >= 1")
    if not rows:
        return []
    start = rows[0].captured_at + round(window_start * _NS)
    lo = bisect.bisect_left(rows, start, key=_time)
    hi = len(rows)
    if window_seconds is not None:
        hi = bisect.bisect_left(rows, start + round(window_seconds * _NS), lo=lo, key=_time)
    if limit is not None:
        hi = min(hi, lo + limit)
    return list(rows[lo:hi])


def _time(row: AzureRow) -> int:
    return row.captured_at


def size_slice(context_tokens: int) -> str:
    """The ``size`` slice of a prompt: ``short``, ``medium`` or ``long``."""
    if context_tokens < MEDIUM_MIN_TOKENS:
        return "short"
    return "medium" if context_tokens < LONG_MIN_TOKENS else "long"


def service_name(path: str | Path) -> str:
    """The ``service`` of imported records: the file stem as a slug, prefixed ``azure-``.

    ``azure_llm_code_2023.csv`` gives ``azure-llm-code-2023``; trace ids append the row number.
    """
    slug = re.sub(r"[^a-z0-9]+", "-", Path(path).stem.lower()).strip("-")
    return slug if slug.startswith("azure") else f"azure-{slug}".rstrip("-")


def iter_records(
    rows: Iterable[AzureRow],
    *,
    service: str,
    seed: int = 0,
    model: str = DEFAULT_MODEL,
    stream: bool = True,
) -> Iterator[TraceRecord]:
    """Yield one chat completion TraceRecord per row (see the module docstring for the rules).

    Args:
        service: the records' ``service``, and the prefix of each ``trace_id``.
        stream: write streamed requests that ask for the usage chunk (the default).
    """
    if not model:
        raise UsageError("model is empty; name the model the requests should ask for")
    pool = _WordPool(seed)
    tenants, tenant_weights = zip(*TENANT_WEIGHTS, strict=True)
    intents, intent_weights = zip(*INTENT_WEIGHTS, strict=True)
    for row in rows:
        rng = _rng("row", seed, row.row)
        tenant: str = rng.choices(tenants, tenant_weights)[0]
        intent: str = rng.choices(intents, intent_weights)[0]
        prompt = pool.words(rng.randrange(POOL_WORDS), row.context_tokens)
        body: dict[str, object] = {
            "model": model,
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": max(row.generated_tokens, 1),
        }
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        body["metadata"] = {"intent": intent, "tenant": tenant}
        yield TraceRecord(
            trace_id=f"{service}-{row.row:06d}",
            captured_at=row.captured_at,
            service=service,
            request=HttpRequest(
                method="POST",
                path=_PATH,
                headers={"content-type": "application/json", "x-tenant": tenant},
                **body_fields(msgspec.json.encode(body)),
            ),
            usage=Usage(
                prompt_tokens=row.context_tokens,
                completion_tokens=row.generated_tokens,
                estimated=False,
            ),
            slices={
                "size": size_slice(row.context_tokens),
                "tenant": tenant,
                "intent": intent,
                "model": model,
                **request_features(_PATH, body, prompt_tokens=row.context_tokens),
            },
        )


def import_azure(
    path: str | Path,
    *,
    seed: int = 0,
    limit: int | None = None,
    window_start: float = 0.0,
    window_seconds: float | None = None,
    model: str = DEFAULT_MODEL,
    stream: bool = True,
) -> list[TraceRecord]:
    """Read, validate and convert an Azure LLM trace CSV: the whole file is checked first."""
    rows = select_rows(
        read_azure_csv(path), window_start=window_start, window_seconds=window_seconds, limit=limit
    )
    records = iter_records(rows, service=service_name(path), seed=seed, model=model, stream=stream)
    return list(records)


def _rng(*parts: object) -> random.Random:
    """A generator seeded from ``parts`` by BLAKE2b (``hash()`` of a str is salted per process)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=16).digest()
    return random.Random(int.from_bytes(digest, "big"))


class _WordPool:
    """A fixed pseudo-random word sequence, sliced at any offset with wrap-around."""

    __slots__ = ("_starts", "_text")

    def __init__(self, seed: int) -> None:
        words = _rng("pool", seed).choices(VOCABULARY, k=POOL_WORDS)
        doubled = words + words  # any slice of up to POOL_WORDS words is one substring
        self._text = " ".join(doubled)
        # _starts[i]: offset of word i in _text; the last entry is len(_text) + 1.
        self._starts = [0, *itertools.accumulate(len(word) + 1 for word in doubled)]

    def words(self, offset: int, n: int) -> str:
        """``n`` words from ``offset`` on, joined by single spaces (exactly ``n`` tokens)."""
        if n <= POOL_WORDS:
            return self._text[self._starts[offset] : self._starts[offset + n] - 1]
        whole, rest = divmod(n, POOL_WORDS)
        parts = [self.words(offset, POOL_WORDS)] * whole
        if rest:
            parts.append(self.words(offset, rest))
        return " ".join(parts)
