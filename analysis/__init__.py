"""analysis: turns a replay's results into numbers and a verdict.

``open_run(path)`` opens a run of a results store (DuckDB file or Parquet directory) as a
:class:`Run` (``.summary``, ``.pairs``, ``.divergent``, ``.sql``, ``.reprice``);
``analyze(run, by)`` computes every figure of ``shadow analyze`` as an
:class:`~analysis.result.AnalysisResult` of :class:`~analysis.result.GroupResult` groups
(``.to_json()`` is what ``--format json`` prints), whose figure names, units and directions
are the registry :data:`analysis.figures.FIGURES`. Modules: ``sql`` (shared SQL and
views), ``aggregates``, ``stats``, ``pairs``, ``divergence``, ``embedders/``, ``fidelity``,
``analyze``, ``result``, ``gate`` (judges rules), ``table`` (the summary table), ``settings``
and ``report/`` (the HTML page). Notebooks import from here. It builds on ``shadow`` (schema,
config) and never imports ``shadow.cli`` or ``shadow.demo``.
"""

from __future__ import annotations

from analysis.analyze import analyze
from analysis.divergence import lexical, structural
from analysis.embedders.loader import load_embedder
from analysis.figures import FIGURES, Figure
from analysis.result import AnalysisResult, GroupResult
from analysis.run import Run, open_run
from analysis.sql import NO_SLICE
from analysis.stats import (
    benjamini_hochberg,
    bootstrap_delta,
    fisher_ok,
    mann_whitney,
    ratio_ci_cost_per_success,
)

__all__ = [
    "FIGURES",
    "NO_SLICE",
    "AnalysisResult",
    "Figure",
    "GroupResult",
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
