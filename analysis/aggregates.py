"""Per (slice, arm) figures computed inside DuckDB, a few passes over the run's rows.

``shadow analyze`` needs, for every group: the per-request summary figures of
:meth:`analysis.run.Run.summary` (over the ``requests`` view, :data:`analysis.sql.REQUESTS`);
schedule lag (first attempts); TPOT and output-token quantiles; goodput under the configured
SLOs; the per-attempt figures; the models and error classes seen (per attempt); a sample of
requests by trace for the paired intervals (:mod:`analysis.paired`), which also gives the
per-trace log ratios behind ``latency_ratio`` and ``ttft_ratio`` (:func:`pair_ratios`).

A run of ten million rows is read three times, never fetched into Python: a narrow scan for
the distinct models and error classes (each then one ``count(*) FILTER`` instead of a
``histogram``, far dearer); one ``GROUP BY`` of every point figure, per request and per
attempt together when no request was retried (a request is then its attempt row; else two,
over the ``requests`` view and over the attempts); and the hash-sampled rows, filtered in the
scan before any request is assembled.

The sample (:data:`SAMPLE_TRACES` traces per slice) is chosen by a hash of the trace id with a
fraction per slice, the same on every arm, so the traces of a slice's sample are paired across
arms.

Error classes: ``error`` as the replayer recorded it (``timeout``, ``connect`` ...), else
``http_<status>`` for a non-2xx status, else ``invalid`` (2xx that failed a validator or did
not parse); ok attempts have no class.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np

from analysis.cost import (
    GROUP_COST_SUMS_SQL,
    UNPRICED_MODEL_SQL,
    GroupCost,
    group_cost,
    unpriced_models,
)
from analysis.figures import FIGURES
from analysis.sql import (
    FIGURES_SQL,
    NO_SLICE,
    REQUESTS,
    SUMMARY_COLUMNS,
    UNRETRIED_ATTEMPTS_SQL,
    Queryable,
    attempt_figures_sql,
    fractions_table,
    requests_where,
    slice_columns,
    sql_literal,
)

__all__ = [
    "SAMPLE_TRACES",
    "GroupFigures",
    "PairRatio",
    "Slo",
    "chunk_gaps",
    "group_figures",
    "group_key",
    "pair_ratios",
]

SAMPLE_TRACES: Final = 4_000
"""Traces per slice kept for the paired bootstrap and the tests (every trace below this)."""
_HASH_SPACE: Final = 1_000_000
_SAMPLED: Final = ("latency_ms", "ttft_ms", "cost_usd", "ok", "tokens", "completion_tokens")

_ERROR_CLASS: Final = (
    "CASE WHEN NOT coalesce({ok}, false) THEN CASE WHEN error IS NOT NULL THEN error"
    " WHEN status IS NULL THEN 'no_response'"
    " WHEN status < 200 OR status >= 300 THEN 'http_' || status ELSE 'invalid' END END"
)
"""The error class of a failed attempt (NULL for a successful one), ``{ok}`` its ok column."""
_MAX_COUNTED: Final = 24
"""Up to this many distinct models, error classes and unpriced models in a run, each is one
``count(*) FILTER`` of the figures' scan (on 10 M rows about 0.02 s each, where each of the
three ``histogram`` aggregates costs 0.3 s); beyond, the scan takes the histograms."""


@dataclass(frozen=True, kw_only=True)
class Slo:
    """Goodput thresholds in ms; an unset one does not constrain."""

    ttft_ms: float | None = None
    tpot_ms: float | None = None
    latency_ms: float | None = None

    @property
    def is_set(self) -> bool:
        """True when at least one threshold is given."""
        return any(v is not None for v in (self.ttft_ms, self.tpot_ms, self.latency_ms))

    def condition(self) -> str:
        """The SQL predicate of a good request (successful and within every threshold), over
        the columns of the ``requests`` view."""
        parts = ["ok"]
        if self.ttft_ms is not None:
            parts.append(f"coalesce(ttft_ms, latency_ms) <= {float(self.ttft_ms)!r}")
        if self.tpot_ms is not None:
            parts.append(f"coalesce(tpot_ms, 0) <= {float(self.tpot_ms)!r}")
        if self.latency_ms is not None:
            parts.append(f"latency_ms <= {float(self.latency_ms)!r}")
        return " AND ".join(parts)

    def as_dict(self) -> dict[str, float | None]:
        """JSON-ready form."""
        return {"ttft_ms": self.ttft_ms, "tpot_ms": self.tpot_ms, "latency_ms": self.latency_ms}


@dataclass(kw_only=True)
class GroupFigures:
    """Everything one (slice values..., arm) group contributes beyond the summary row."""

    summary: dict[str, Any]
    """The figures of :meth:`Run.summary` (without the slice columns), per request."""
    attempt: dict[str, Any] = field(default_factory=dict)
    """The per-attempt figures (``attempts``, ``attempt_latency_p50_ms`` ...)."""
    sample: dict[str, np.ndarray] = field(default_factory=dict)
    """The requests of the slice's hash-chosen traces (the same traces on every arm; every
    trace of a slice of at most :data:`SAMPLE_TRACES`): ``trace`` (ids), ``latency_ms``,
    ``ttft_ms``, ``cost_usd``, ``ok``, ``tokens``, ``completion_tokens`` (the successful
    attempt's)."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Schedule lag, token quantiles, goodput, models and error classes."""
    cost: GroupCost | None = None
    """The group's cost over its attempts (:func:`analysis.cost.group_costs`' row)."""
    unpriced: dict[str, int] = field(default_factory=dict)
    """Model -> attempts that had no price (:func:`analysis.cost.unpriced`), most first."""


@dataclass(frozen=True, kw_only=True)
class PairRatio:
    """Per-trace log ratios candidate / reference of one compared group (both successful)."""

    n: int
    mean: float | None
    var: float | None


def group_key(values: Sequence[Any], arm: str) -> tuple[str, ...]:
    """The dictionary key of a group: slice values as text, then the arm."""
    return (*(str(v) for v in values), arm)


def group_figures(
    run: Queryable, keys: Sequence[str], slo: Slo
) -> dict[tuple[str, ...], GroupFigures]:
    """Per (slice values..., arm): per-request summary, per-attempt figures, extras, sample."""
    keys = list(keys)
    params = [*keys, NO_SLICE] if keys else None
    slices = slice_columns(keys)
    names = [f"s{i}" for i in range(len(keys))]
    group_by = ", ".join([*names, "arm"])
    select = ", ".join([*slices, "arm"])
    counted = _counted_classes(run)
    request_sql = f"""{FIGURES_SQL},
            quantile_cont(lag_ms, [0.5, 0.99]) FILTER (WHERE NOT skipped) AS _lag,
            quantile_cont(answer_tokens, [0.5, 0.95]) AS _tok,
            avg(answer_tokens) AS completion_tokens_mean,
            count_if({slo.condition()}) AS _good,
            min(scheduled_at) AS _t0, max(ended_at) AS _t1"""
    retried = bool(run.records("SELECT 1 FROM run_results WHERE attempt > 0 LIMIT 1"))
    if retried:
        rows = run.records(
            f"SELECT {select}, {request_sql} FROM {REQUESTS} GROUP BY {group_by}", params
        )
        attempt_rows = run.records(
            f"SELECT {select}, {attempt_figures_sql()}, {_count_sql(counted, 'ok')},"
            f" {GROUP_COST_SUMS_SQL}"
            f" FROM run_results GROUP BY {group_by}",
            params,
        )
    else:
        # No retried request: a request is its attempt row, so one scan computes both sides.
        rows = attempt_rows = run.records(
            f"SELECT {select}, {request_sql}, {attempt_figures_sql('_a_latency_ms', '_a_ttft_ms')},"
            f" {_count_sql(counted, '_a_ok')}, {GROUP_COST_SUMS_SQL}"
            f" FROM ({UNRETRIED_ATTEMPTS_SQL})"
            f" GROUP BY {group_by}",
            params,
        )
    attempts = {
        group_key([r[n] for n in names], r["arm"]): _histograms(r, counted) for r in attempt_rows
    }
    samples = _samples(run, keys, rows, retried=retried)
    starts = [r["_t0"] for r in rows if r["_t0"] is not None]
    ends = [r["_t1"] for r in rows if r["_t1"] is not None]
    span = max(ends) - min(starts) if starts and ends else None
    out: dict[tuple[str, ...], GroupFigures] = {}
    summary_names = [c for c in SUMMARY_COLUMNS if c != "arm"]
    attempt_names = [f.name for f in FIGURES.values() if f.section == "attempt"]
    for row in rows:
        key = group_key([row[n] for n in names], row["arm"])
        per_attempt = attempts.get(key, {})
        lag = row["_lag"] or [None, None]
        tokens = row["_tok"] or [None, None]
        good = int(row["_good"])
        n = int(row["n"] or 0)
        extra = {
            "schedule_lag_p50_ms": lag[0],
            "schedule_lag_p99_ms": lag[1],
            "completion_tokens_p50": tokens[0],
            "completion_tokens_p95": tokens[1],
            "completion_tokens_mean": row["completion_tokens_mean"],
            "goodput": good / n if slo.is_set and n else None,
            "goodput_rps": good / span if slo.is_set and span else None,
            "models": _histogram(per_attempt.get("_models")),
            "errors": _histogram(per_attempt.get("_errors")),
        }
        out[key] = GroupFigures(
            summary={name: row[name] for name in summary_names},
            attempt={name: per_attempt.get(name) for name in attempt_names},
            sample=samples.get(key, {}),
            extra=extra,
            cost=group_cost(key[:-1], key[-1], per_attempt) if per_attempt else None,
            unpriced=unpriced_models(per_attempt),
        )
    return out


_Counted = dict[str, list[str]]
"""``models``, ``errors``, ``unpriced`` -> the distinct values of the run (sorted)."""


def _counted_classes(run: Queryable) -> _Counted | None:
    """The run's distinct models, error classes and unpriced models (one narrow scan), or None
    when there are more than :data:`_MAX_COUNTED` of them together."""
    rows = run.records(
        f"SELECT DISTINCT model, {_ERROR_CLASS.format(ok='ok')} AS errors,"
        f" {UNPRICED_MODEL_SQL} AS unpriced FROM run_results"
    )
    found: _Counted = {}
    for name in ("models", "errors", "unpriced"):
        column = "model" if name == "models" else name
        found[name] = sorted({str(r[column]) for r in rows if r[column] is not None})
    if sum(len(v) for v in found.values()) > _MAX_COUNTED:
        return None
    return found


def _count_sql(counted: _Counted | None, ok: str) -> str:
    """The aggregates that count attempts per model, error class and unpriced model (``ok``:
    the attempts' ok column)."""
    error_class = _ERROR_CLASS.format(ok=ok)
    if counted is None:
        return (
            f"histogram(model) AS _models, histogram({error_class}) AS _errors,"
            f" histogram({UNPRICED_MODEL_SQL}) AS _cost_unpriced_models"
        )
    expression = {"models": "model", "errors": error_class, "unpriced": UNPRICED_MODEL_SQL}
    parts = [
        f"count(*) FILTER (WHERE {expression[name]} = {sql_literal(value)}) AS _{name}_{i}"
        for name, values in counted.items()
        for i, value in enumerate(values)
    ]
    return ", ".join(parts or ["0 AS _none"])


def _histograms(row: dict[str, Any], counted: _Counted | None) -> dict[str, Any]:
    """``row`` with ``_models``, ``_errors`` and ``_cost_unpriced_models`` as dicts of the
    values counted (those seen, in value order, as DuckDB's ``histogram`` gives them)."""
    if counted is None:
        return row
    out = dict(row)
    for name, key in (("models", "_models"), ("errors", "_errors"),
                      ("unpriced", "_cost_unpriced_models")):  # fmt: skip
        counts = {v: int(row[f"_{name}_{i}"]) for i, v in enumerate(counted[name])}
        out[key] = {v: n for v, n in counts.items() if n}
    return out


def _samples(
    run: Queryable, keys: list[str], rows: list[dict[str, Any]], *, retried: bool
) -> dict[tuple[str, ...], dict[str, np.ndarray]]:
    """Per group: the requests of the slice's hash-chosen traces.

    The fraction is per slice (not per arm), so a trace chosen on one arm is chosen on every
    arm: the pairing by trace survives the sampling. Traces are ordered by id within a group.
    """
    names = [f"s{i}" for i in range(len(keys))]
    largest: dict[tuple[str, ...], int] = {}
    for r in rows:
        slice_key = tuple(str(r[n]) for n in names)
        total = int(r["n"] or 0) + int(r["skipped"] or 0)
        largest[slice_key] = max(largest.get(slice_key, 0), total)
    if not largest:
        return {}
    keep = {k: min(1.0, SAMPLE_TRACES / max(n, 1)) for k, n in largest.items()}
    # The largest fraction filters first, before any slice is read from its MAP (a scan of ten
    # million rows keeps only the sampled part); each slice's own fraction then applies.
    hashed = f"hash(trace_id) % {_HASH_SPACE}"
    sampled = requests_where(
        f"{hashed} < {max(keep.values())!r}::DOUBLE * {_HASH_SPACE}", retried=retried
    )
    inner = (
        f"SELECT {', '.join([*slice_columns(keys), 'arm', 'trace_id'])}, latency_ms, ttft_ms,"
        " cost_usd, ok, coalesce(prompt_tokens, 0) + coalesce(completion_tokens, 0) AS tokens,"
        f" answer_tokens AS completion_tokens, {hashed} AS _h FROM ({sampled}) WHERE NOT skipped"
    )
    if names:
        source = (
            f"SELECT * FROM ({inner}) JOIN {fractions_table(names, keep)} USING"
            f" ({', '.join(names)}) WHERE _h < _frac * {_HASH_SPACE}"
        )
    else:
        fraction = keep[()]
        source = f"SELECT * FROM ({inner}) WHERE _h < {fraction!r}::DOUBLE * {_HASH_SPACE}"
    columns = [*names, "arm"]
    query = (
        f"SELECT {', '.join(columns)}, trace_id, {', '.join(_SAMPLED)} FROM ({source})"
        f" ORDER BY {', '.join(columns)}, trace_id"
    )
    found = run.columns(query, [*keys, NO_SLICE] if keys else None)
    size = found["trace_id"].size
    if not size:
        return {}
    # The rows come grouped (ordered by group, then trace): a group starts where a key changes.
    starts = np.zeros(size, dtype=bool)
    starts[0] = True
    for c in columns:
        starts[1:] |= found[c][1:] != found[c][:-1]
    bounds = [*np.flatnonzero(starts).tolist(), size]
    values = {c: np.asarray(found[c], dtype=float) for c in _SAMPLED}
    values["cost_usd"] = np.nan_to_num(values["cost_usd"], nan=0.0)
    values["ok"] = np.nan_to_num(values["ok"], nan=0.0)
    traces = np.asarray(found["trace_id"], dtype=object)
    out: dict[tuple[str, ...], dict[str, np.ndarray]] = {}
    for start, stop in itertools.pairwise(bounds):
        key = group_key([found[n][start] for n in names], str(found["arm"][start]))
        out[key] = {c: v[start:stop].copy() for c, v in values.items()}
        out[key]["trace"] = traces[start:stop].copy()
    return out


def pair_ratios(
    samples: Mapping[tuple[str, ...], Mapping[str, np.ndarray]], reference: str
) -> dict[tuple[str, ...], dict[str, PairRatio]]:
    """Per compared (slice values..., arm): mean and variance of ln(arm / reference) of
    ``latency_ms`` and of ``ttft_ms`` over the traces of the slice's sample (every trace of a
    slice of at most :data:`SAMPLE_TRACES`) successful on both; ``samples`` are
    :class:`GroupFigures`' samples (traces in id order)."""
    out: dict[tuple[str, ...], dict[str, PairRatio]] = {}
    for key, sample in samples.items():
        base = samples.get((*key[:-1], reference))
        if key[-1] == reference or base is None or "trace" not in sample or "trace" not in base:
            continue
        _, mine, theirs = np.intersect1d(
            sample["trace"], base["trace"], assume_unique=True, return_indices=True
        )
        timed = _timed(sample, mine) & _timed(base, theirs)
        if not timed.any():  # no trace with a latency or TTFT on both: nothing is paired
            continue
        found: dict[str, PairRatio] = {}
        for column in ("latency_ms", "ttft_ms"):
            c, b = sample[column][mine], base[column][theirs]
            both = (c > 0) & (b > 0)
            logs = np.log(c[both] / b[both])
            found[column] = PairRatio(
                n=int(logs.size),
                mean=float(logs.mean()) if logs.size else None,
                var=float(logs.var(ddof=1)) if logs.size > 1 else None,
            )
        out[key] = found
    return out


def _timed(sample: Mapping[str, np.ndarray], rows: np.ndarray) -> np.ndarray:
    """Of ``rows`` of a sample, those with a latency or a TTFT."""
    found: np.ndarray = np.isfinite(sample["latency_ms"][rows]) | np.isfinite(
        sample["ttft_ms"][rows]
    )
    return found


def chunk_gaps(
    run: Queryable, keys: Sequence[str]
) -> dict[tuple[str, ...], dict[str, float | None]]:
    """Per group: p50/p95 of the gaps between consecutive content chunks of streamed answers.

    This is the per-chunk inter-token latency convention (every gap the client saw, pooled over
    the group's attempts), beside TPOT's (latency − ttft) / (completion_tokens − 1).
    """
    keys = list(keys)
    slices = slice_columns(keys)
    names = [f"s{i}" for i in range(len(keys))]
    group_by = ", ".join([*names, "arm"])
    rows = run.records(
        f"SELECT {group_by}, quantile_cont(gap, [0.5, 0.95]) AS q, count(*) AS n FROM ("
        f"SELECT {', '.join([*slices, 'arm'])}, unnest(list_transform("
        "range(1, len(chunk_offsets_ms)), lambda i: chunk_offsets_ms[i + 1] - chunk_offsets_ms[i]))"
        " AS gap FROM run_results WHERE len(chunk_offsets_ms) > 1)"
        f" GROUP BY {group_by}",
        [*keys, NO_SLICE] if keys else None,
    )
    out: dict[tuple[str, ...], dict[str, float | None]] = {}
    for row in rows:
        q = row["q"] or [None, None]
        out[group_key([row[n] for n in names], row["arm"])] = {
            "itl_p50_ms": q[0],
            "itl_p95_ms": q[1],
        }
    return out


def _histogram(value: Any) -> dict[str, int]:
    """A DuckDB ``histogram`` MAP (a dict in Python) sorted by count, largest first."""
    if not value:
        return {}
    return dict(sorted(((str(k), int(v)) for k, v in value.items()), key=lambda kv: -kv[1]))
