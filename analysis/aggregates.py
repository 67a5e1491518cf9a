"""Per (slice, arm) figures computed inside DuckDB, a few passes over the run's rows.

``shadow analyze`` needs, for every group: the per-request summary figures of
:meth:`analysis.run.Run.summary` (over the ``requests`` view, :data:`analysis.sql.REQUESTS`);
schedule lag (first attempts); TPOT and output-token quantiles; goodput under the configured
SLOs; the per-attempt figures; the models and error classes seen (per attempt); a sample of
requests by trace for the paired intervals (:mod:`analysis.paired`); and the per-trace log
ratios behind ``latency_ratio`` and ``ttft_ratio``. Each is one ``GROUP BY`` in DuckDB, so a
run of ten million rows is read a few times, never fetched into Python.

The sample (:data:`SAMPLE_TRACES` traces per slice) is chosen by a hash of the trace id with a
fraction per slice, the same on every arm, so the traces of a slice's sample are paired across
arms.

Error classes: ``error`` as the replayer recorded it (``timeout``, ``connect`` ...), else
``http_<status>`` for a non-2xx status, else ``invalid`` (2xx that failed a validator or did
not parse); ok attempts have no class.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np

from analysis.cost import GROUP_COST_SQL, GroupCost, group_cost, unpriced_models
from analysis.figures import FIGURES
from analysis.sql import (
    ATTEMPT_FIGURES_SQL,
    FIGURES_SQL,
    NO_SLICE,
    REQUESTS,
    SUMMARY_COLUMNS,
    Queryable,
    fractions_table,
    slice_columns,
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
    "CASE WHEN ok THEN NULL WHEN error IS NOT NULL THEN error"
    " WHEN status IS NULL THEN 'no_response'"
    " WHEN status < 200 OR status >= 300 THEN 'http_' || status ELSE 'invalid' END"
)


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
    rows = run.records(
        f"""
        SELECT {select}, {FIGURES_SQL},
            quantile_cont(lag_ms, [0.5, 0.99]) FILTER (WHERE NOT skipped) AS _lag,
            quantile_cont(answer_tokens, [0.5, 0.95]) AS _tok,
            avg(answer_tokens) AS completion_tokens_mean,
            count_if({slo.condition()}) AS _good,
            min(scheduled_at) AS _t0, max(ended_at) AS _t1
        FROM {REQUESTS} GROUP BY {group_by}
        """,
        params,
    )
    attempts = {
        group_key([r[n] for n in names], r["arm"]): r
        for r in run.records(
            f"SELECT {select}, {ATTEMPT_FIGURES_SQL}, histogram(model) AS _models,"
            f" histogram({_ERROR_CLASS}) FILTER (WHERE NOT coalesce(ok, false)) AS _errors,"
            f" {GROUP_COST_SQL} FROM run_results GROUP BY {group_by}",
            params,
        )
    }
    samples = _samples(run, keys, rows)
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


def _samples(
    run: Queryable, keys: list[str], rows: list[dict[str, Any]]
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
    lists = ", ".join(f"list({c} ORDER BY trace_id) AS {c}" for c in ("trace_id", *_SAMPLED))
    inner = (
        f"SELECT {', '.join([*slice_columns(keys), 'arm', 'trace_id'])}, latency_ms, ttft_ms,"
        " cost_usd, ok, coalesce(prompt_tokens, 0) + coalesce(completion_tokens, 0) AS tokens,"
        f" answer_tokens AS completion_tokens, hash(trace_id) % {_HASH_SPACE} AS _h"
        f" FROM {REQUESTS} WHERE NOT skipped"
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
    query = f"SELECT {', '.join(columns)}, {lists} FROM ({source}) GROUP BY {', '.join(columns)}"
    out: dict[tuple[str, ...], dict[str, np.ndarray]] = {}
    for row in run.records(query, [*keys, NO_SLICE] if keys else None):
        key = group_key([row[n] for n in names], row["arm"])
        sample = {
            c: np.array([np.nan if v is None else float(v) for v in row[c] or []], dtype=float)
            for c in _SAMPLED
        }
        sample["cost_usd"] = np.nan_to_num(sample["cost_usd"], nan=0.0)
        sample["ok"] = np.nan_to_num(sample["ok"], nan=0.0)
        sample["trace"] = np.array([str(t) for t in row["trace_id"] or []], dtype=object)
        out[key] = sample
    return out


def pair_ratios(
    run: Queryable, keys: Sequence[str], reference: str
) -> dict[tuple[str, ...], dict[str, PairRatio]]:
    """Per compared (slice values..., arm): mean and variance of ln(arm / reference) of
    ``latency_ms`` and of ``ttft_ms`` over the traces successful on both (every such trace;
    one join in DuckDB)."""
    keys = list(keys)
    names = [f"s{i}" for i in range(len(keys))]
    cols = "".join(f"c.{n}, " for n in names)
    ratios = []
    for column in ("latency_ms", "ttft_ms"):
        log = f"ln(c.{column} / b.{column})"
        where = f"c.{column} > 0 AND b.{column} > 0"
        ratios.append(
            f"count(*) FILTER (WHERE {where}) AS {column}_n,"
            f" avg({log}) FILTER (WHERE {where}) AS {column}_mean,"
            f" var_samp({log}) FILTER (WHERE {where}) AS {column}_var"
        )
    group_by = ", ".join([*(f"c.{n}" for n in names), "c.arm"])
    ref = f"${len(keys) + 2}" if keys else "$1"
    # The reference's side carries no slices (read from the MAP of the compared side only) and
    # neither side is materialised: each is one filtered scan of the requests.
    timed = f"FROM {REQUESTS} WHERE (latency_ms IS NOT NULL OR ttft_ms IS NOT NULL) AND arm"
    query = (
        f"WITH b AS (SELECT trace_id, latency_ms, ttft_ms {timed} = {ref}),"
        " c AS (SELECT trace_id, arm, "
        + "".join(f"{c}, " for c in slice_columns(keys))
        + f"latency_ms, ttft_ms {timed} <> {ref})"
        f" SELECT {cols}c.arm AS arm, {', '.join(ratios)}"
        f" FROM c JOIN b USING (trace_id) GROUP BY {group_by}"
    )
    out: dict[tuple[str, ...], dict[str, PairRatio]] = {}
    for row in run.records(query, [*keys, NO_SLICE, reference] if keys else [reference]):
        out[group_key([row[n] for n in names], row["arm"])] = {
            column: PairRatio(
                n=int(row[f"{column}_n"] or 0),
                mean=row[f"{column}_mean"],
                var=row[f"{column}_var"],
            )
            for column in ("latency_ms", "ttft_ms")
        }
    return out


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
