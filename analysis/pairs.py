"""Output divergence per trace: which traces are compared, and the most divergent pairs.

Each trace's *final* output on an arm (its last attempt, the ``final_results`` view of
:mod:`analysis.sql`) is compared with the reference arm's (``baseline``, or ``production`` in a
live-mirror run) by :func:`analysis.divergence.divergence`.

On large runs a bounded, hash-chosen sample of traces per slice is compared — the same traces
on every arm, chosen by a hash of the trace id before any window function runs, so a run of
millions of rows is filtered in one scan: :data:`MAX_PAIRS` traces per slice with the lexical
and structural measures (the standard error of a mean divergence from 2,000 pairs is about
0.005), :data:`MAX_SEMANTIC_PAIRS` with a contextual embedding model (about 25 pairs/s on
two cores; the static model compares :data:`MAX_PAIRS`). The report's histogram and examples
come from :func:`divergence_sample`: up to :data:`EXAMPLE_POOL` hash-chosen traces.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

import numpy as np
import polars as pl

from analysis.divergence import divergence
from analysis.embedders.base import Embedder
from analysis.result import DivergenceSample
from analysis.sql import FINAL_RESULTS, NO_SLICE, Queryable, fractions_table, slice_columns

__all__ = [
    "EXAMPLE_POOL",
    "MAX_PAIRS",
    "MAX_SEMANTIC_PAIRS",
    "divergence_sample",
    "divergent",
    "pair_divergence",
    "reference_arm",
]

MAX_PAIRS: Final = 2_000
MAX_SEMANTIC_PAIRS: Final = 500
EXAMPLE_POOL: Final = 5_000
"""Traces (hash-sampled) whose outputs the report's divergence histogram and examples compare;
with an embedder, :data:`MAX_PAIRS`, since every text must be embedded."""
_HASH_SPACE: Final = 1_000_000


def reference_arm(arms: Sequence[str]) -> str | None:
    """The arm others are compared with: ``baseline``, else ``production`` (live mirror)."""
    for name in ("baseline", "production"):
        if name in arms:
            return name
    return None


def pair_divergence(
    run: Queryable,
    keys: Sequence[str],
    reference: str,
    embedder: Embedder | None = None,
    *,
    traces_per_slice: Mapping[tuple[str, ...], int] | None = None,
) -> dict[tuple[str, ...], tuple[list[str], np.ndarray]]:
    """Per (slice values..., arm): the sampled traces and each one's final-output divergence
    from ``reference`` (the traces, so that two arms' divergences can be paired by trace).

    ``traces_per_slice`` (slice values -> about how many traces the slice has) sets each
    slice's sampling fraction; without it every trace is compared.
    """
    keys = list(keys)
    # A contextual model embeds ~25 pairs/s here; an embedder that says it is ``fast`` (the
    # static one) and the lexical measure do thousands, so they compare the larger sample.
    fast = embedder is None or getattr(embedder, "fast", False)
    limit = MAX_PAIRS if fast else MAX_SEMANTIC_PAIRS
    slice_cols = slice_columns(keys)
    names = [f"s{i}" for i in range(len(keys))]
    params: list[object] = [*keys, NO_SLICE] if keys else []
    join = where = prefilter = ""
    if traces_per_slice and names:
        fractions = {k: min(1.0, limit / max(n, 1)) for k, n in traces_per_slice.items()}
        join = f" JOIN {fractions_table(names, fractions)} USING ({', '.join(names)})"
        where = f" WHERE hash(trace_id) % {_HASH_SPACE} < _frac * {_HASH_SPACE}"
        # The largest fraction first, before any slice is read from its MAP.
        largest = max(fractions.values())
        prefilter = f" WHERE hash(trace_id) % {_HASH_SPACE} < {largest!r}::DOUBLE * {_HASH_SPACE}"
    elif traces_per_slice:
        fraction = min(1.0, limit / max(sum(traces_per_slice.values()), 1))
        where = f" WHERE hash(trace_id) % {_HASH_SPACE} < {fraction!r}::DOUBLE * {_HASH_SPACE}"
    # The hash filter runs on run_results, before the final-attempt window: a run of millions
    # of rows is filtered in one scan and only the sampled traces are ranked.
    inner = (
        "SELECT * FROM (SELECT trace_id, arm, attempt, output_text"
        + "".join(f", {c}" for c in slice_cols)
        + f" FROM run_results{prefilter}){join}{where}"
    )
    query = (
        f"SELECT trace_id, arm, output_text{''.join(f', {n}' for n in names)} FROM ({inner})"
        " QUALIFY row_number() OVER (PARTITION BY trace_id, arm ORDER BY attempt DESC) = 1"
        " ORDER BY trace_id, arm"
    )
    rows = run.records(query, params or None)
    texts: dict[str, dict[str, str | None]] = {}
    slice_of: dict[str, tuple[str, ...]] = {}
    for row in rows:
        texts.setdefault(row["trace_id"], {})[row["arm"]] = row["output_text"]
        slice_of[row["trace_id"]] = tuple(str(row[n]) for n in names)
    out: dict[tuple[str, ...], tuple[list[str], list[float]]] = {}
    arms = {arm for by_arm in texts.values() for arm in by_arm} - {reference}
    for arm in sorted(arms):
        traces = [t for t, by_arm in texts.items() if arm in by_arm and reference in by_arm]
        values = divergence(
            [texts[t][arm] for t in traces], [texts[t][reference] for t in traces], embedder
        )
        for trace, value in zip(traces, values, strict=True):
            ids, scores = out.setdefault((*slice_of[trace], arm), ([], []))
            ids.append(trace)
            scores.append(float(value))
    return {key: (ids, np.asarray(scores)) for key, (ids, scores) in out.items()}


def divergent(
    run: Queryable, k: int = 10, *, arm: str = "candidate", embedder: Embedder | None = None
) -> pl.DataFrame:
    """The ``k`` traces whose final output on ``arm`` diverges most from the reference arm's.

    Columns: ``trace_id``, ``divergence``, ``<reference>_text``, ``<arm>_text`` (most
    divergent first). With an embedder, the candidates are first narrowed to the 20·k most
    divergent by the lexical measure, then ranked semantically.
    """
    arms = [r["arm"] for r in run.records("SELECT DISTINCT arm FROM run_results")]
    reference = reference_arm(arms)
    if reference is None:
        return pl.DataFrame()
    rows = run.records(
        f"SELECT trace_id, arm, output_text FROM {FINAL_RESULTS} WHERE arm IN ($1, $2)",
        [reference, arm],
    )
    texts: dict[str, dict[str, str | None]] = {}
    for row in rows:
        texts.setdefault(row["trace_id"], {})[row["arm"]] = row["output_text"]
    traces = [t for t, by_arm in texts.items() if len(by_arm) == 2]
    values = divergence([texts[t][arm] for t in traces], [texts[t][reference] for t in traces])
    if embedder is not None and traces:
        order = np.argsort(-np.nan_to_num(values, nan=-1.0), kind="stable")[: 20 * k]
        traces = [traces[i] for i in order]
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


def divergence_sample(
    run: Queryable, reference: str | None, embedder: Embedder | None = None
) -> DivergenceSample | None:
    """The final outputs of up to :data:`EXAMPLE_POOL` hash-chosen traces of the reference arm
    (:data:`MAX_PAIRS` with an embedder) on every arm, and each other arm's divergence from
    the reference; None without a reference arm."""
    if reference is None:
        return None
    pool = MAX_PAIRS if embedder is not None else EXAMPLE_POOL
    frame = run.sql(
        "WITH finals AS (SELECT trace_id, arm, output_text,"
        f" CAST(to_json(slices) AS VARCHAR) AS slices FROM {FINAL_RESULTS}),"
        " picked AS (SELECT trace_id, count(*) OVER () AS total FROM finals WHERE arm = $1"
        f" QUALIFY row_number() OVER (ORDER BY hash(trace_id), trace_id) <= {pool})"
        " SELECT finals.*, total FROM finals JOIN picked USING (trace_id)",
        [reference],
    )
    rows: dict[str, dict[str, dict[str, Any]]] = {}
    for row in frame.iter_rows(named=True):
        rows.setdefault(row["trace_id"], {})[row["arm"]] = row
    scores = {}
    for arm in sorted(set(frame["arm"].to_list())) if frame.height else []:
        if arm == reference:
            continue
        traces = sorted(t for t, by_arm in rows.items() if arm in by_arm)
        outputs = [rows[t][arm]["output_text"] for t in traces]
        base = [rows[t][reference]["output_text"] for t in traces]
        scores[arm] = (traces, divergence(outputs, base, embedder))
    total = int(frame["total"][0]) if frame.height else 0
    return DivergenceSample(reference=reference, total=total, rows=rows, scores=scores)
