"""analysis: turns a replay's results into numbers and a verdict.

``open_run(path)`` opens a run of a results store (DuckDB file or Parquet directory) as a
:class:`Run` (``.summary``, ``.pairs``, ``.divergent``, ``.sql``, ``.reprice``);
``analyze(run, by)`` computes every figure of ``shadow analyze`` (modules ``aggregates``,
``stats``, ``pairs``, ``divergence``, ``embeddings``, ``fidelity``); ``gate.evaluate`` judges
rules; ``report.write_report`` writes the HTML page. Notebooks import from here. It builds on
``shadow`` (schema, config).
"""

from __future__ import annotations

from analysis.analyze import analyze
from analysis.divergence import lexical, structural
from analysis.embeddings import load_embedder
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
    "load_embedder",
    "mann_whitney",
    "open_run",
    "ratio_ci_cost_per_success",
    "structural",
]
