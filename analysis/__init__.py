"""analysis: turns a replay's results into numbers and a verdict.

It will hold the results store schema (DuckDB, Parquet parts), latency, token and cost metrics,
output divergence, statistics (percentiles, bootstrap intervals), the gate and the plotly
report, plus the API the notebooks import. It builds on ``shadow`` (schema, config).
"""

from __future__ import annotations

from analysis.analyze import analyze
from analysis.divergence import lexical, structural
from analysis.run import NO_SLICE, Run, open_run
from analysis.stats import (
    benjamini_hochberg,
    bootstrap_delta,
    fisher_ok,
    mann_whitney,
    ratio_ci_cost_per_success,
)

__all__ = [
    "NO_SLICE",
    "Run",
    "analyze",
    "benjamini_hochberg",
    "bootstrap_delta",
    "fisher_ok",
    "lexical",
    "mann_whitney",
    "open_run",
    "ratio_ci_cost_per_success",
    "structural",
]
