"""The figures ``shadow analyze`` prints: per (slice, arm) summaries and deltas vs the baseline.

The JSON shape is DESIGN.md's: ``{"run_id": ..., "groups": [...]}``; each group has ``slice``,
``arm``, the summary figures of :meth:`analysis.run.Run.summary`, and for every arm but the
baseline a ``delta`` object: for each latency and cost figure, the relative change against the
baseline arm of the same slice (``change`` = candidate / baseline − 1) with a 95% bootstrap
interval (``lo``, ``hi``; see :func:`analysis.stats.bootstrap_delta` for when a bounded
subsample is used). The baseline arm is ``baseline``, or ``production`` in a live-mirror run.

Divergence (:mod:`analysis.divergence`) compares each trace's final output on an arm with the
baseline's: ``divergence_mean`` and ``divergence_p95`` per slice, and ``excess_divergence`` =
that mean minus the baseline-vs-``baseline_repeat`` mean (the noise floor; null when the run
has no repeat arm). ``divergence_kind`` says which measure was used (``lexical`` until an
embedding model is configured; JSON outputs are always compared structurally).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import polars as pl

from analysis.divergence import Embedder, divergence, kind
from analysis.run import NO_SLICE, Run
from analysis.stats import bootstrap_delta, quantile_ratio_ci, ratio_ci_cost_per_success

__all__ = [
    "DELTA_FIGURES",
    "MAX_PAIRS",
    "MAX_ROWS",
    "ORDER_STATISTIC_MIN_N",
    "analyze",
    "baseline_arm",
    "divergent",
    "pair_divergence",
]

MAX_ROWS = 50_000
"""Rows per (slice, arm) fetched for the bootstrap intervals (the point change is exact)."""
MAX_PAIRS = 2_000
"""Traces per slice whose outputs are compared for divergence (a hash-chosen sample: the
standard error of a mean divergence from 2,000 pairs is about 0.005)."""
ORDER_STATISTIC_MIN_N = 2_000
"""From this many values per arm, quantile deltas use distribution-free order-statistic
intervals (:func:`analysis.stats.quantile_ratio_ci`) instead of the bootstrap."""

_STATS: dict[str, Literal["p50", "p95", "p99"]] = {"50_ms": "p50", "95_ms": "p95", "99_ms": "p99"}

DELTA_FIGURES = (
    "latency_p50_ms",
    "latency_p95_ms",
    "latency_p99_ms",
    "ttft_p50_ms",
    "ttft_p95_ms",
    "ttft_p99_ms",
    "cost_per_success_usd",
)


def baseline_arm(arms: Sequence[str]) -> str | None:
    """The arm others are compared with: ``baseline``, else ``production`` (live mirror)."""
    for name in ("baseline", "production"):
        if name in arms:
            return name
    return None


def analyze(
    run: Run,
    by: Sequence[str] = (),
    *,
    n_boot: int = 1000,
    seed: int = 0,
    embedder: Embedder | None = None,
) -> dict[str, Any]:
    """Everything ``shadow analyze --format json`` prints for ``run``."""
    summary = run.summary(by)
    keys = list(by)
    raw = _raw_rows(run, keys)
    groups: list[dict[str, Any]] = []
    rows = summary.to_dicts()
    arms = sorted({row["arm"] for row in rows})
    reference = baseline_arm(arms)
    pairs = pair_divergence(run, keys, reference, embedder) if reference else {}
    exact = {(*(str(r[name]) for name in keys), r["arm"]): r for r in rows}
    for row in rows:
        slice_values = {name: row.pop(name) for name in keys}
        group: dict[str, Any] = {"slice": slice_values, **{k: _clean(v) for k, v in row.items()}}
        if row["arm"] != reference:
            key = tuple(str(slice_values[name]) for name in keys)
            group.update(_divergence_figures(pairs, key, row["arm"]))
            if reference is not None:
                base = raw.get((*key, reference))
                cand = raw.get((*key, row["arm"]))
                group["delta"] = _deltas(base, cand, n_boot=n_boot, seed=seed)
                _exact_changes(group["delta"], exact.get((*key, reference)), row)
        groups.append(group)
    return {
        "run_id": run.run_id,
        "baseline_arm": reference,
        "by": keys,
        "divergence_kind": kind(embedder),
        "groups": groups,
    }


def pair_divergence(
    run: Run, keys: Sequence[str], reference: str, embedder: Embedder | None = None
) -> dict[tuple[str, ...], np.ndarray]:
    """Per (slice values..., arm): each trace's final-output divergence from the reference arm."""
    slice_cols = [f"coalesce(slices[${i + 1}], ${len(keys) + 1}) AS s{i}" for i in range(len(keys))]
    names = ", ".join(f"s{i}" for i in range(len(keys)))
    partition = f"PARTITION BY {names} " if keys else ""
    # At most MAX_PAIRS traces per slice (the same traces on every arm, chosen by a hash of the
    # trace id), so divergence stays bounded on runs of millions of rows.
    distinct = f"trace_id, {names}" if keys else "trace_id"
    query = (
        "WITH finals AS (SELECT trace_id, arm, output_text"
        + "".join(f", {c}" for c in slice_cols)
        + " FROM run_results QUALIFY row_number() OVER"
        " (PARTITION BY trace_id, arm ORDER BY attempt DESC) = 1),"
        f" picked AS (SELECT trace_id FROM (SELECT DISTINCT {distinct} FROM finals)"
        f" QUALIFY row_number() OVER ({partition}ORDER BY hash(trace_id)) <= {MAX_PAIRS})"
        " SELECT finals.* FROM finals JOIN picked USING (trace_id)"
    )
    frame = run.sql(
        query,  # built from this module's constants; values are bound
        [*keys, NO_SLICE] if keys else None,
    )
    texts: dict[str, dict[str, str | None]] = {}
    slice_of: dict[str, tuple[str, ...]] = {}
    for row in frame.iter_rows(named=True):
        texts.setdefault(row["trace_id"], {})[row["arm"]] = row["output_text"]
        slice_of[row["trace_id"]] = tuple(str(row[f"s{i}"]) for i in range(len(keys)))
    out: dict[tuple[str, ...], list[float]] = {}
    arms = {arm for by_arm in texts.values() for arm in by_arm} - {reference}
    for arm in sorted(arms):
        traces = [t for t, by_arm in texts.items() if arm in by_arm and reference in by_arm]
        values = divergence(
            [texts[t][arm] for t in traces], [texts[t][reference] for t in traces], embedder
        )
        for trace, value in zip(traces, values, strict=True):
            out.setdefault((*slice_of[trace], arm), []).append(float(value))
    return {key: np.asarray(values) for key, values in out.items()}


def divergent(
    run: Run, k: int = 10, *, arm: str = "candidate", embedder: Embedder | None = None
) -> pl.DataFrame:
    """The ``k`` traces whose final output on ``arm`` diverges most from the baseline's.

    Columns: ``trace_id``, ``divergence``, ``baseline_text``, ``<arm>_text`` (most divergent first).
    """
    reference = baseline_arm(run.sql("SELECT DISTINCT arm FROM run_results")["arm"].to_list())
    if reference is None:
        return pl.DataFrame()
    frame = run.sql(
        "SELECT trace_id, arm, output_text FROM run_results WHERE arm IN ($1, $2)"
        " QUALIFY row_number() OVER (PARTITION BY trace_id, arm ORDER BY attempt DESC) = 1",
        [reference, arm],
    )
    texts: dict[str, dict[str, str | None]] = {}
    for row in frame.iter_rows(named=True):
        texts.setdefault(row["trace_id"], {})[row["arm"]] = row["output_text"]
    traces = [t for t, by_arm in texts.items() if len(by_arm) == 2]
    values = divergence(
        [texts[t][arm] for t in traces], [texts[t][reference] for t in traces], embedder
    )
    table = pl.DataFrame(
        {
            "trace_id": traces,
            "divergence": values,
            f"{reference}_text": [texts[t][reference] for t in traces],
            f"{arm}_text": [texts[t][arm] for t in traces],
        },
        schema={
            "trace_id": pl.String,
            "divergence": pl.Float64,
            f"{reference}_text": pl.String,
            f"{arm}_text": pl.String,
        },
    )
    return (
        table.filter(pl.col("divergence").is_not_nan()).sort("divergence", descending=True).head(k)
    )


def _divergence_figures(
    pairs: dict[tuple[str, ...], np.ndarray], key: tuple[str, ...], arm: str
) -> dict[str, float | None]:
    values = pairs.get((*key, arm))
    mean = p95 = excess = None
    if values is not None and np.isfinite(values).any():
        mean = float(np.nanmean(values))
        p95 = float(np.nanpercentile(values, 95))
        noise = pairs.get((*key, "baseline_repeat"))
        if arm != "baseline_repeat" and noise is not None and np.isfinite(noise).any():
            excess = mean - float(np.nanmean(noise))
    return {"divergence_mean": mean, "divergence_p95": p95, "excess_divergence": excess}


def _raw_rows(run: Run, keys: list[str]) -> dict[tuple[str, ...], dict[str, np.ndarray]]:
    """Per (slice values..., arm): latency, ttft, cost and ok arrays for the bootstrap."""
    slice_cols = [f"coalesce(slices[${i + 1}], ${len(keys) + 1}) AS s{i}" for i in range(len(keys))]
    select = ", ".join([*slice_cols, "arm", "latency_ms", "ttft_ms", "cost_usd", "ok"])
    groups = ", ".join([*(f"s{i}" for i in range(len(keys))), "arm"])
    # The bootstrap resamples at most max_n values per arm anyway; fetching a bounded,
    # hash-ordered sample per group keeps memory flat on runs of millions of rows.
    frame = run.sql(
        f"SELECT * EXCLUDE (_k) FROM (SELECT {select}, row_number() OVER"
        f" (PARTITION BY {groups} ORDER BY hash(trace_id, attempt)) AS _k FROM run_results)"
        f" WHERE _k <= {MAX_ROWS}",
        [*keys, NO_SLICE] if keys else None,
    )
    out: dict[tuple[str, ...], dict[str, np.ndarray]] = {}
    if frame.height == 0:
        return out
    group_cols = [f"s{i}" for i in range(len(keys))] + ["arm"]
    for values, part in frame.group_by(group_cols):
        key = tuple(str(v) for v in (values if isinstance(values, tuple) else (values,)))
        out[key] = {
            "latency_ms": part["latency_ms"].cast(float).to_numpy(),
            "ttft_ms": part["ttft_ms"].cast(float).to_numpy(),
            "cost_usd": part["cost_usd"].cast(float).fill_null(0.0).to_numpy(),
            "ok": part["ok"].cast(float).fill_null(0.0).to_numpy(),
        }
    return out


def _exact_changes(
    deltas: dict[str, dict[str, float | None]],
    base: dict[str, Any] | None,
    cand: dict[str, Any],
) -> None:
    """Set each delta's point change from the exact summary figures (the interval may come
    from a bounded sample; the point never does)."""
    if base is None:
        return
    for figure, delta in deltas.items():
        b, c = base.get(figure), cand.get(figure)
        if delta["change"] is not None and b and c is not None:
            delta["change"] = _clean(c / b - 1.0)


def _deltas(
    base: dict[str, np.ndarray] | None,
    cand: dict[str, np.ndarray] | None,
    *,
    n_boot: int,
    seed: int,
) -> dict[str, dict[str, float | None]]:
    deltas: dict[str, dict[str, float | None]] = {}
    for figure in DELTA_FIGURES:
        result: tuple[float, float, float] | None = None
        if base is not None and cand is not None:
            if figure == "cost_per_success_usd":
                if base["ok"].sum() > 0 and cand["ok"].sum() > 0:
                    result = ratio_ci_cost_per_success(
                        base["cost_usd"], base["ok"], cand["cost_usd"], cand["ok"],
                        n_boot=n_boot, seed=seed,
                    )  # fmt: skip
            else:
                column, _, stat = figure.rpartition("_p")  # "latency_p99_ms" -> latency, 99_ms
                b, c = base[column + "_ms"], cand[column + "_ms"]
                b, c = b[~np.isnan(b)], c[~np.isnan(c)]
                if min(b.size, c.size) >= ORDER_STATISTIC_MIN_N:
                    q = int(stat.removesuffix("_ms")) / 100
                    result = quantile_ratio_ci(b, c, q)
                elif b.size and c.size:
                    result = bootstrap_delta(b, c, _STATS[stat], n_boot=n_boot, seed=seed)
        deltas[figure] = (
            {"change": _clean(result[0]), "lo": _clean(result[1]), "hi": _clean(result[2])}
            if result is not None
            else {"change": None, "lo": None, "hi": None}
        )
    return deltas


def _clean(value: Any) -> Any:
    """JSON-safe: NaN and infinities become null; numpy scalars become Python numbers."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
