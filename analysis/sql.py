"""The SQL every analysis query shares, written once: figures, TPOT, slices, views, quoting.

A :class:`~analysis.run.Run` puts these views on its DuckDB connection: ``results``,
``traces`` and ``runs`` (the whole store), ``run_results`` (every attempt of the run),
:data:`FINAL_RESULTS` (each trace's final attempt per arm, :data:`FINAL_RESULTS_SQL`) and
:data:`REQUESTS` (one row per trace and arm with all its attempts, :data:`REQUESTS_SQL`). The
modules that compute figures take a :class:`Queryable` (what a Run offers), so they never
import the Run itself. SQL text is built from these constants and quoted identifiers; values
are bound as parameters.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final, Protocol

import numpy as np
import polars as pl

from analysis.figures import summary_figures
from shadow.errors import UsageError
from shadow.wire.routes import SKIP_REASONS

__all__ = [
    "ATTEMPT_FIGURES_SQL",
    "FIGURES_SQL",
    "FINAL_RESULTS",
    "FINAL_RESULTS_SQL",
    "NO_SLICE",
    "REQUESTS",
    "REQUESTS_SQL",
    "REQUESTS_UNRETRIED_SQL",
    "ROUTE_SKIPPED_ERRORS",
    "ROUTE_SKIPPED_SQL",
    "SKIPPED_ERRORS",
    "SKIPPED_SQL",
    "SUMMARY_COLUMNS",
    "TPOT_SQL",
    "UNRETRIED_ATTEMPTS_SQL",
    "Queryable",
    "attempt_figures_sql",
    "check_slice_names",
    "fractions_table",
    "ident",
    "requests_where",
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

ROUTE_SKIPPED_ERRORS: Final = SKIP_REASONS
"""The errors of a request the route allow-list refused (shadow/wire/routes.py): never sent."""

SKIPPED_ERRORS: Final = ("skipped_breaker", "skipped_budget", *ROUTE_SKIPPED_ERRORS)
"""The errors of a request the breaker, the budget or the route allow-list never sent
(shadow/replay/scheduler.py)."""

ROUTE_SKIPPED_SQL: Final = (
    "coalesce(error IN (" + ", ".join(f"'{e}'" for e in ROUTE_SKIPPED_ERRORS) + "), false)"
)
"""True for an attempt the route allow-list refused (not inference: its cost is not missing)."""

REQUESTS: Final = "requests"
"""The view of requests: one row per (trace, arm) with all its attempts (:data:`REQUESTS_SQL`)."""

SKIPPED_SQL: Final = (
    "coalesce(error IN (" + ", ".join(f"'{e}'" for e in SKIPPED_ERRORS) + "), false)"
)
"""True for an attempt the breaker or the budget never sent (one row of ``run_results``)."""

# A request that was tried once (no row with attempt > 0: nearly every row of most runs) is its
# attempt row, mapped without a GROUP BY; only retried (trace, arm) keys are aggregated.
_TRIED_ONCE: Final = f"""
    SELECT trace_id, arm, slices, {SKIPPED_SQL} AS skipped,
        CASE WHEN {SKIPPED_SQL} THEN 0 ELSE 1 END AS attempts,
        CASE WHEN ok AND NOT {SKIPPED_SQL} THEN 1 ELSE 0 END AS ok_attempts,
        coalesce(ok, false) AND NOT {SKIPPED_SQL} AS ok,
        CASE WHEN ok THEN latency_ms END AS latency_ms,
        CASE WHEN ok THEN ttft_ms END AS ttft_ms,
        CASE WHEN ok THEN {TPOT_SQL} END AS tpot_ms,
        CASE WHEN ok THEN completion_tokens END AS answer_tokens,
        (sent_at - scheduled_at) * 1000 AS lag_ms,
        prompt_tokens, completion_tokens, cost_usd, scheduled_at,
        sent_at + latency_ms / 1000 AS ended_at
    FROM run_results"""

REQUESTS_SQL: Final = f"""
    WITH retried AS (SELECT DISTINCT trace_id, arm FROM run_results WHERE attempt > 0)
    {_TRIED_ONCE} ANTI JOIN retried USING (trace_id, arm)
    UNION ALL
    SELECT trace_id, arm, any_value(slices), bool_and({SKIPPED_SQL}),
        count(*) FILTER (WHERE NOT {SKIPPED_SQL}),
        count(*) FILTER (WHERE ok AND NOT {SKIPPED_SQL}),
        coalesce(bool_or(ok AND NOT {SKIPPED_SQL}), false),
        CASE WHEN bool_or(ok) THEN coalesce(sum(latency_ms) FILTER (WHERE NOT ok), 0)
            + arg_min(latency_ms, attempt) FILTER (WHERE ok) END,
        CASE WHEN bool_or(ok) THEN coalesce(sum(latency_ms) FILTER (WHERE NOT ok), 0)
            + arg_min(ttft_ms, attempt) FILTER (WHERE ok) END,
        arg_min({TPOT_SQL}, attempt) FILTER (WHERE ok),
        arg_min(completion_tokens, attempt) FILTER (WHERE ok),
        arg_min((sent_at - scheduled_at) * 1000, attempt) FILTER (WHERE attempt = 0),
        sum(prompt_tokens), sum(completion_tokens), sum(cost_usd), min(scheduled_at),
        max(sent_at + latency_ms / 1000)
    FROM run_results SEMI JOIN retried USING (trace_id, arm)
    GROUP BY trace_id, arm
"""
"""The body of :data:`REQUESTS`. A request is one trace on one arm with all its attempts;
``latency_ms`` (``ttft_ms``) of a successful request = Σ ``latency_ms`` of its failed attempts
+ the successful attempt's ``latency_ms`` (``ttft_ms``): each attempt counts from its own due
time and a retry is due when the failed attempt ended, so the sum runs from the trace's
scheduled send to the last byte. NULL unless the request succeeded. ``tpot_ms`` and
``answer_tokens`` are the successful attempt's; tokens and cost sum every attempt; ``lag_ms``
is the first attempt's schedule lag; ``skipped``: the breaker or budget sent nothing."""

REQUESTS_UNRETRIED_SQL: Final = _TRIED_ONCE
"""The body of :data:`REQUESTS` for a run with no retried request (no attempt > 0): the same
rows as :data:`REQUESTS_SQL` without its join (a scan of ten million rows costs a tenth)."""

# One list-valued quantile per column (DuckDB keeps one copy of the values for all three), then
# unpacked; the same SQL serves Run.summary() and analysis.aggregates (over the requests view).
FIGURES_SQL: Final = """
    count(*) FILTER (WHERE NOT skipped) AS n,
    avg(CAST(ok AS DOUBLE)) FILTER (WHERE NOT skipped) AS ok_rate,
    count_if(skipped) AS skipped,
    sum(attempts) / nullif(count(*) FILTER (WHERE NOT skipped), 0) AS attempts_per_request,
    sum(ok_attempts) / nullif(sum(attempts), 0) AS attempt_ok_rate,
    quantile_cont(latency_ms, [0.50, 0.95, 0.99]) AS _lq,
    _lq[1] AS latency_p50_ms, _lq[2] AS latency_p95_ms, _lq[3] AS latency_p99_ms,
    quantile_cont(ttft_ms, [0.50, 0.95, 0.99]) AS _tq,
    _tq[1] AS ttft_p50_ms, _tq[2] AS ttft_p95_ms, _tq[3] AS ttft_p99_ms,
    quantile_cont(tpot_ms, [0.50, 0.95]) AS _pq, _pq[1] AS tpot_p50_ms, _pq[2] AS tpot_p95_ms,
    CAST(sum(prompt_tokens) AS BIGINT) AS prompt_tokens,
    CAST(sum(completion_tokens) AS BIGINT) AS completion_tokens,
    avg(coalesce(prompt_tokens, 0) + coalesce(completion_tokens, 0))
        FILTER (WHERE NOT skipped) AS tokens_per_request,
    sum(cost_usd) AS cost_usd,
    sum(coalesce(cost_usd, 0)) / nullif(count(*) FILTER (WHERE NOT skipped), 0)
        AS cost_per_request_usd,
    sum(cost_usd) / nullif(count_if(ok), 0) AS cost_per_success_usd
"""
"""The aggregates behind every column of :data:`SUMMARY_COLUMNS` but ``arm``, over
:data:`REQUESTS`."""


def attempt_figures_sql(latency: str = "latency_ms", ttft: str = "ttft_ms") -> str:
    """The per-attempt figures (every attempt that has the value, errors and retries included)
    over columns ``latency`` and ``ttft`` of the attempts."""
    return f"""
    count({latency}) AS attempts,
    quantile_cont({latency}, [0.50, 0.95, 0.99]) AS _alq,
    _alq[1] AS attempt_latency_p50_ms, _alq[2] AS attempt_latency_p95_ms,
    _alq[3] AS attempt_latency_p99_ms,
    quantile_cont({ttft}, [0.50, 0.95, 0.99]) AS _atq,
    _atq[1] AS attempt_ttft_p50_ms, _atq[2] AS attempt_ttft_p95_ms,
    _atq[3] AS attempt_ttft_p99_ms
"""


ATTEMPT_FIGURES_SQL: Final = attempt_figures_sql()
"""Per-attempt figures over ``run_results``."""

UNRETRIED_ATTEMPTS_SQL: Final = _TRIED_ONCE.replace(
    "FROM run_results",
    ", latency_ms AS _a_latency_ms, ttft_ms AS _a_ttft_ms, ok AS _a_ok, error, status, model,"
    " attempt FROM run_results",
)
"""The rows of :data:`REQUESTS_UNRETRIED_SQL` with their attempt's own columns beside them
(``_a_latency_ms``, ``_a_ttft_ms``, ``_a_ok``, ``error``, ``status``, ``model``, ``attempt``): in
a run with no retried request one ``GROUP BY`` over it computes the per-request and the
per-attempt figures in a single scan."""


def requests_where(condition: str, *, retried: bool) -> str:
    """The body of :data:`REQUESTS` over the attempts that meet ``condition`` only (a condition
    on the trace, such as a hash sample, so that every attempt of a request is kept or none):
    the filter runs in the scan, before any request is assembled. ``retried``: whether the
    run has a retried request (:data:`REQUESTS_SQL`, else :data:`REQUESTS_UNRETRIED_SQL`)."""
    body = REQUESTS_SQL if retried else REQUESTS_UNRETRIED_SQL
    return body.replace("FROM run_results", f"FROM (SELECT * FROM run_results WHERE {condition})")


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

    def columns(self, query: str, params: Sequence[Any] | None = None) -> dict[str, np.ndarray]:
        """Run ``query`` over the run's views; each column as a numpy array (NULL: NaN in a
        numeric or boolean column, None in another)."""
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
