"""The results store: what replay and mirror write and the analyzer reads.

One row per attempt per trace per arm (:mod:`~shadow.results.rows`), checked against one schema
(:mod:`~shadow.results.schema`), in a DuckDB file (:mod:`~shadow.results.store`) or a directory
of Parquet parts (:mod:`~shadow.results.parquet`), written from async code in batches
(:mod:`~shadow.results.writer`) and read back through the same views over either layout
(:mod:`~shadow.results.views`).
"""

from __future__ import annotations

from shadow.results.parquet import ParquetResultsWriter
from shadow.results.rows import ARMS, ResultRow, ResultsSink, TraceRow
from shadow.results.schema import END_STATUSES, RESULTS_SCHEMA_VERSION
from shadow.results.store import ResultsStore, open_results
from shadow.results.views import results_relation
from shadow.results.writer import AsyncResultsWriter

__all__ = [
    "ARMS",
    "END_STATUSES",
    "RESULTS_SCHEMA_VERSION",
    "AsyncResultsWriter",
    "ParquetResultsWriter",
    "ResultRow",
    "ResultsSink",
    "ResultsStore",
    "TraceRow",
    "open_results",
    "results_relation",
]
