"""The results store: what replay and mirror write and the analyzer reads.

One row per attempt per trace per arm (:class:`ResultRow`), in a DuckDB file or a directory of
Parquet parts, read back through the same views (:func:`results_relation`).
"""

from __future__ import annotations

from shadow.results.store import (
    ARMS,
    RESULTS_SCHEMA_VERSION,
    ParquetResultsWriter,
    ResultRow,
    ResultsSink,
    ResultsStore,
    TraceRow,
    open_results,
    results_relation,
)
from shadow.results.writer import AsyncResultsWriter

__all__ = [
    "ARMS",
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
