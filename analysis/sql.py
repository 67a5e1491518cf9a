"""The SQL every analysis query shares, written once: figures, TPOT, slices, views, quoting.

A :class:`~analysis.run.Run` puts these views on its DuckDB connection: ``results``,
``traces`` and ``runs`` (the whole store), ``run_results`` (every attempt of the run) and
:data:`FINAL_RESULTS` (each trace's final attempt per arm, :data:`FINAL_RESULTS_SQL`). The
modules that compute figures take a :class:`Queryable` (what a Run offers), so they never
import the Run itself. SQL text is built from these constants and quoted identifiers; values
are bound as parameters.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final, Protocol

import polars as pl

from analysis.figures import summary_figures
from shadow.errors import UsageError

__all__ = [
    "FIGURES_SQL",
    "FINAL_RESULTS",
    "FINAL_RESULTS_SQL",
    "NO_SLICE",
    "SUMMARY_COLUMNS",
    "TPOT_SQL",
    "Queryable",
    "check_slice_names",
    "fractions_table",
    "ident",
    "slice_columns",
    "slice_name_problem",
    "sql_literal",
]

NO_SLICE: Final = "(none)"
"""The group of rows that lack a slice asked for in ``by``."""

SUMMARY_COLUMNS: Final = ("arm", *summary_figures())
"""The columns of :meth:`analysis.run.Run.summary` after the slice columns."""

TPOT_SQL: Final = (
    "CASE WHEN completion_tokens > 1 AND ttft_ms IS NOT NULL AND latency_ms IS NOT NULL"
    " THEN (latency_ms - ttft_ms) / (completion_tokens - 1) END"
)
"""tpot_ms of one attempt: (latency − ttft) / (completion_tokens − 1)."""

FINAL_RESULTS: Final = "final_results"
"""The view of each trace's final attempt per arm (what its outputs are compared by)."""

FINAL_RESULTS_SQL: Final = (
    "SELECT * FROM run_results"
    " QUALIFY row_number() OVER (PARTITION BY trace_id, arm ORDER BY attempt DESC) = 1"
)
"""The body of :data:`FINAL_RESULTS`: the last attempt of each (trace, arm)."""

# One list-valued quantile per column (DuckDB keeps one copy of the values for all three), then
# unpacked; the same SQL serves Run.summary() and analysis.aggregates.
FIGURES_SQL: Final = f"""
    count(*) AS n,
    avg(CAST(ok AS DOUBLE)) AS ok_rate,
    quantile_cont(latency_ms, [0.50, 0.95, 0.99]) AS _lq,
    _lq[1] AS latency_p50_ms, _lq[2] AS latency_p95_ms, _lq[3] AS latency_p99_ms,
    quantile_cont(ttft_ms, [0.50, 0.95, 0.99]) AS _tq,
    _tq[1] AS ttft_p50_ms, _tq[2] AS ttft_p95_ms, _tq[3] AS ttft_p99_ms,
    quantile_cont({TPOT_SQL}, [0.50, 0.95]) AS _pq, _pq[1] AS tpot_p50_ms, _pq[2] AS tpot_p95_ms,
    CAST(sum(prompt_tokens) AS BIGINT) AS prompt_tokens,
    CAST(sum(completion_tokens) AS BIGINT) AS completion_tokens,
    sum(cost_usd) AS cost_usd,
    sum(cost_usd) / nullif(count_if(ok), 0) AS cost_per_success_usd
"""
"""The aggregates behind every column of :data:`SUMMARY_COLUMNS` but ``arm``."""


class Queryable(Protocol):
    """What figure code needs of a run: its rows through SQL (a Run satisfies it)."""

    @property
    def run_id(self) -> str:
        """The run's id."""
        ...

    def sql(self, query: str, params: Sequence[Any] | None = None) -> pl.DataFrame:
        """Run ``query`` over the run's views; a DataFrame."""
        ...

    def records(self, query: str, params: Sequence[Any] | None = None) -> list[dict[str, Any]]:
        """Run ``query`` over the run's views; rows as dicts of Python values."""
        ...


def ident(name: str) -> str:
    """``name`` as a quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def sql_literal(text: str) -> str:
    """``text`` as a quoted SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def slice_columns(keys: Sequence[str]) -> list[str]:
    """``coalesce(slices[$i], $n) AS s<i>`` per slice name; parameters: ``[*keys, NO_SLICE]``."""
    return [f"coalesce(slices[${i + 1}], ${len(keys) + 1}) AS s{i}" for i in range(len(keys))]


def fractions_table(columns: Sequence[str], fractions: Mapping[tuple[str, ...], float]) -> str:
    """A ``VALUES`` table of (columns..., frac) to join on, for per-group sampling fractions.

    Joining it (a hash join against a handful of rows) costs far less than looking each row's
    group up in a list.
    """
    rows = ", ".join(
        "(" + ", ".join([*(sql_literal(v) for v in key), f"{float(f)!r}::DOUBLE"]) + ")"
        for key, f in fractions.items()
    )
    return f"(VALUES {rows}) AS _f({', '.join([*columns, '_frac'])})"


def slice_name_problem(by: Sequence[str]) -> str | None:
    """Why ``by`` cannot name slices (repeated, or a summary column), or None when it can."""
    clash = sorted(set(by) & set(SUMMARY_COLUMNS))
    if clash or len(set(by)) != len(by):
        return (
            "slice names must differ from each other and from the summary's columns "
            f"({clash[0] if clash else 'repeated'})"
        )
    return None


def check_slice_names(by: Sequence[str]) -> None:
    """Raise :class:`UsageError` unless the slice names are distinct and not figure names."""
    problem = slice_name_problem(by)
    if problem is not None:
        raise UsageError(f"slices {', '.join(by)}: {problem}")
