"""Per (slice, arm) figures computed inside DuckDB in one pass over the run's rows.

``shadow analyze`` needs, for every group: the summary figures of
:meth:`analysis.run.Run.summary`; schedule lag; TPOT p95 and output-token quantiles; goodput
under the configured SLOs; the models and error classes seen; the sums behind the delta-method
interval of cost per success; and, for large groups, the order statistics that bracket each
latency and TTFT quantile. All of it is one ``GROUP BY`` (plus a cheap counting pass first),
so a run of ten million rows is read a couple of times, never fetched into Python.

Order statistics (intervals must scale; ``docs/architecture.md``, "Metric definitions"): for a
group of n values, the 95% distribution-free interval of the q quantile lies between the order
statistics of ranks :func:`analysis.stats.order_ranks` gives. ``quantile_disc`` picks rank r of
n at fraction (r + ½) / n, but its fraction list must be the same for every group; so ranks are
computed for a grid of sample sizes (:data:`GRID_BASE` × √2^k) and each group uses the largest
grid size at or below its own n. A smaller n only widens the interval (conservative, by at most
a factor of about 2^¼ in width), never narrows it.

Error classes: ``error`` as the replayer recorded it (``timeout``, ``connect`` ...), else
``http_<status>`` for a non-2xx status, else ``invalid`` (2xx that failed a validator or did
not parse); ok attempts have no class.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np

from analysis.sql import (
    FIGURES_SQL,
    NO_SLICE,
    SUMMARY_COLUMNS,
    TPOT_SQL,
    Queryable,
    fractions_table,
    slice_columns,
)
from analysis.stats import order_ranks

__all__ = [
    "GRID_BASE",
    "QUANTILES",
    "SAMPLE_ROWS",
    "GroupFigures",
    "Slo",
    "chunk_gaps",
    "group_figures",
    "group_key",
]

GRID_BASE: Final = 2_000
"""The smallest n for which quantile intervals come from order statistics (below: bootstrap)."""
QUANTILES: Final = (0.50, 0.95, 0.99)
_PER_ARM_LEVEL: Final = math.sqrt(0.95)  # two arms' intervals combine to at least 95%

SAMPLE_ROWS: Final = 5_000
"""Rows per group kept for tests and small-sample bootstraps (all rows below this)."""
_HASH_SPACE: Final = 1_000_000
_SAMPLED: Final = ("latency_ms", "ttft_ms", "cost_usd", "ok", "completion_tokens")

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
        """The SQL predicate of a good attempt (ok and within every threshold)."""
        parts = ["ok"]
        if self.ttft_ms is not None:
            parts.append(f"coalesce(ttft_ms, latency_ms) <= {float(self.ttft_ms)!r}")
        if self.tpot_ms is not None:
            parts.append(f"coalesce({TPOT_SQL}, 0) <= {float(self.tpot_ms)!r}")
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
    """The figures of :meth:`Run.summary` (without the slice columns)."""
    n_latency: int = 0
    n_ttft: int = 0
    cost_sums: tuple[int, float, float, float, int] = (0, 0.0, 0.0, 0.0, 0)
    """``(n, Σcost, Σcost², Σcost·ok, Σok)`` for the delta-method interval."""
    bounds: dict[str, tuple[float, float]] = field(default_factory=dict)
    """``latency_p99_ms`` -> (lo, hi) order-statistic bounds at per-arm level √0.95."""
    sample: dict[str, np.ndarray] = field(default_factory=dict)
    """A hash-chosen sample of at most :data:`SAMPLE_ROWS` rows (every row of a small group):
    ``latency_ms``, ``ttft_ms``, ``cost_usd``, ``ok``, ``completion_tokens``."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Schedule lag, token quantiles, goodput, models and error classes."""


def group_key(values: Sequence[Any], arm: str) -> tuple[str, ...]:
    """The dictionary key of a group: slice values as text, then the arm."""
    return (*(str(v) for v in values), arm)


def _grid(n: int) -> int:
    """The largest grid size at or below ``n`` (n >= GRID_BASE)."""
    k = math.floor(2 * math.log2(n / GRID_BASE) + 1e-9)
    while k > 0 and int(GRID_BASE * 2 ** (k / 2)) > n:
        k -= 1
    return int(GRID_BASE * 2 ** (k / 2))


def group_figures(
    run: Queryable, keys: Sequence[str], slo: Slo
) -> dict[tuple[str, ...], GroupFigures]:
    """Per (slice values..., arm): summary, extra figures and interval ingredients."""
    keys = list(keys)
    params = [*keys, NO_SLICE] if keys else None
    slices = slice_columns(keys)
    names = [f"s{i}" for i in range(len(keys))]
    group_by = ", ".join([*names, "arm"])
    query = f"""
        SELECT {", ".join([*slices, "arm"])}, {FIGURES_SQL},
            count(latency_ms) AS _nl, count(ttft_ms) AS _nt,
            sum(coalesce(cost_usd, 0)) AS _c, sum(coalesce(cost_usd, 0) ^ 2) AS _cc,
            sum(CASE WHEN ok THEN coalesce(cost_usd, 0) ELSE 0 END) AS _co,
            count_if(ok) AS _k,
            quantile_cont((sent_at - scheduled_at) * 1000, [0.5, 0.99]) AS _lag,
            quantile_cont(completion_tokens, [0.5, 0.95]) AS _tok,
            avg(completion_tokens) AS completion_tokens_mean,
            count_if({slo.condition()}) AS _good,
            histogram(model) AS _models,
            histogram({_ERROR_CLASS}) FILTER (WHERE NOT coalesce(ok, false)) AS _errors,
            min(scheduled_at) AS _t0, max(sent_at + latency_ms / 1000) AS _t1
        FROM run_results GROUP BY {group_by}
    """
    rows = run.records(query, params)
    second = _second_pass(run, keys, rows)
    starts = [r["_t0"] for r in rows if r["_t0"] is not None]
    ends = [r["_t1"] for r in rows if r["_t1"] is not None]
    span = max(ends) - min(starts) if starts and ends else None
    out: dict[tuple[str, ...], GroupFigures] = {}
    summary_names = [c for c in SUMMARY_COLUMNS if c != "arm"]
    for row in rows:
        key = group_key([row[n] for n in names], row["arm"])
        n_latency, n_ttft = int(row["_nl"]), int(row["_nt"])
        bounds, sample = second.get(key, ({}, {}))
        lag = row["_lag"] or [None, None]
        tokens = row["_tok"] or [None, None]
        good = int(row["_good"])
        extra = {
            "schedule_lag_p50_ms": lag[0],
            "schedule_lag_p99_ms": lag[1],
            "completion_tokens_p50": tokens[0],
            "completion_tokens_p95": tokens[1],
            "completion_tokens_mean": row["completion_tokens_mean"],
            "goodput": good / row["n"] if slo.is_set and row["n"] else None,
            "goodput_rps": good / span if slo.is_set and span else None,
            "models": _histogram(row["_models"]),
            "errors": _histogram(row["_errors"]),
        }
        out[key] = GroupFigures(
            summary={name: row[name] for name in summary_names},
            n_latency=n_latency,
            n_ttft=n_ttft,
            cost_sums=(
                int(row["n"]),
                float(row["_c"] or 0.0),
                float(row["_cc"] or 0.0),
                float(row["_co"] or 0.0),
                int(row["_k"]),
            ),
            bounds=bounds,
            sample=sample,
            extra=extra,
        )
    return out


def _second_pass(
    run: Queryable, keys: list[str], rows: list[dict[str, Any]]
) -> dict[tuple[str, ...], tuple[dict[str, tuple[float, float]], dict[str, np.ndarray]]]:
    """Per group: order-statistic bounds (groups of >= GRID_BASE values) and a row sample.

    Both come from one more ``GROUP BY``: ``quantile_disc`` at the grid fractions, and
    ``list(...)`` over the rows whose hash falls under the group's sampling fraction (joined
    from a small VALUES table, since the fraction depends on the group's size).
    """
    names = [f"s{i}" for i in range(len(keys))]
    counts = {group_key([r[n] for n in names], r["arm"]): r for r in rows}
    if not counts:
        return {}
    sizes = [int(r[c]) for r in rows for c in ("_nl", "_nt")]
    grids = sorted({_grid(n) for n in sizes if n >= GRID_BASE})
    fractions: list[float] = []
    slot: dict[tuple[int, float], tuple[int, int]] = {}
    for size in grids:
        for q in QUANTILES:
            lo, hi = order_ranks(size, q, _PER_ARM_LEVEL)
            slot[(size, q)] = (len(fractions), len(fractions) + 1)
            fractions += [(lo + 0.5) / size, (hi + 0.5) / size]
    disc = (
        f"quantile_disc(latency_ms, {fractions!r}) AS _ld,"
        f" quantile_disc(ttft_ms, {fractions!r}) AS _td,"
        if fractions
        else ""
    )
    keep = {key: min(1.0, SAMPLE_ROWS / max(int(r["n"]), 1)) for key, r in counts.items()}
    lists = ", ".join(f"list({c}) FILTER (WHERE _keep) AS {c}" for c in _SAMPLED)
    columns = [*names, "arm"]
    query = (
        f"SELECT {', '.join(columns)}, {disc} {lists} FROM ("
        f"SELECT *, _h < _frac * {_HASH_SPACE} AS _keep FROM ("
        f"SELECT {', '.join([*slice_columns(keys), 'arm', *_SAMPLED])}, "
        f"hash(trace_id, attempt) % {_HASH_SPACE} AS _h FROM run_results)"
        f" JOIN {fractions_table(columns, keep)} USING ({', '.join(columns)}))"
        f" GROUP BY {', '.join(columns)}"
    )
    out: dict[tuple[str, ...], tuple[dict[str, tuple[float, float]], dict[str, np.ndarray]]] = {}
    for row in run.records(query, [*keys, NO_SLICE] if keys else None):
        key = group_key([row[n] for n in names], row["arm"])
        bounds: dict[str, tuple[float, float]] = {}
        for column, count, values in (
            ("latency", int(counts[key]["_nl"]), row.get("_ld")),
            ("ttft", int(counts[key]["_nt"]), row.get("_td")),
        ):
            if values is None or count < GRID_BASE:
                continue
            size = _grid(count)
            for q in QUANTILES:
                i, j = slot[(size, q)]
                bounds[f"{column}_p{round(q * 100)}_ms"] = (float(values[i]), float(values[j]))
        sample = {
            c: np.array([np.nan if v is None else float(v) for v in row[c] or []], dtype=float)
            for c in _SAMPLED
        }
        sample["cost_usd"] = np.nan_to_num(sample["cost_usd"], nan=0.0)
        sample["ok"] = np.nan_to_num(sample["ok"], nan=0.0)
        out[key] = (bounds, sample)
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
