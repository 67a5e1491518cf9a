"""analysis: turns a replay's results into numbers and a verdict.

It will hold the results store schema (DuckDB, Parquet parts), latency, token and cost metrics,
output divergence, statistics (percentiles, bootstrap intervals), the gate and the plotly
report, plus the API the notebooks import. It builds on ``shadow`` (schema, config).
"""

from __future__ import annotations

__all__: list[str] = []
