"""The findings of ``shadow demo``: analyze, gate and report on one run, with one embedder.

Each of the three measures output divergence, and with sentence embeddings that is the costly
part (a 6-layer transformer on the CPU). Run here, in one process with one cached embedder,
every distinct output is embedded once; three ``shadow`` commands would embed it all three
times. The figures are the ones ``shadow analyze``, ``shadow gate`` and ``shadow report`` give
for the same run, rules and ``--embedder``.

``analysis`` is imported inside the functions: ``shadow`` never imports it at module import.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from analysis.embedders.base import Embedder
    from analysis.result import AnalysisResult
    from analysis.run import Run

__all__ = ["Verdict", "judge", "load_embedder", "open_results", "summarise", "summary_json",
           "summary_notes", "summary_table", "table_text", "write_html"]  # fmt: skip

_TEXT_WIDTH = 160


def load_embedder(spec: str) -> Embedder | None:
    """The sentence embedder ``spec`` names (``auto``: MiniLM when installed); None: lexical."""
    from analysis.embedders.loader import load_embedder as load

    return load(spec)


def open_results(path: Path) -> Run:
    """The latest run of the results store at ``path``."""
    from analysis.run import open_run

    return open_run(path)


def summarise(
    run: Run, by: Sequence[str], rules: Path, embedder: Embedder | None
) -> AnalysisResult:
    """``shadow analyze RUN --by BY``, with the rules file's [analysis] settings."""
    from analysis.analyze import analyze
    from analysis.settings import resolve_settings

    return analyze(run, by, embedder=embedder, settings=resolve_settings(rules))


@dataclass(frozen=True)
class Verdict:
    """What ``shadow gate`` prints for the run, its verdict, and whether it would exit 0."""

    passed: bool
    lines: list[str]
    verdict: str = "pass"
    """``pass``, ``fail``, ``inconclusive`` or ``nothing_judged``."""

    @property
    def summary(self) -> str:
        """The last line: ``gate: passed, ...``, ``gate: FAILED, ...``, ``gate: INCONCLUSIVE,
        ...`` or ``gate: NOTHING JUDGED, ...``."""
        return self.lines[-1]


def judge(run: Run, rules: Path, embedder: Embedder | None) -> Verdict:
    """``shadow gate RUN --rules RULES``: one line per check, then the verdict."""
    from analysis.gate import judge as gate
    from shadow.config import load_config

    config = load_config(rules)
    outcome = gate(run, config.gate, embedder=embedder, settings=config.analysis)
    return Verdict(passed=outcome.passed, lines=outcome.lines(), verdict=outcome.verdict)


def write_html(
    run: Run, target: Path, *, by: Sequence[str], rules: Path, embedder: Embedder | None
) -> Path:
    """``analysis.report.page.write_report``: the self-contained HTML report."""
    from analysis.report.page import write_report

    return write_report(run, target, by=list(by), rules=rules, embedder=embedder)


def summary_table(result: AnalysisResult) -> Table:
    """The table ``shadow analyze`` prints for the result."""
    from analysis.table import summary_table as table

    return table(result)


def summary_notes(result: AnalysisResult) -> list[str]:
    """The notes ``shadow analyze`` prints under its table (rich markup): unpriced models,
    spend n/a, replay fidelity, alarms."""
    from analysis.table import summary_notes as notes

    return notes(result)


def table_text(table: Table, width: int = _TEXT_WIDTH) -> str:
    """The table as plain text, as a file or a log shows it."""
    buffer = io.StringIO()
    Console(file=buffer, width=width, color_system=None, force_terminal=False).print(table)
    return buffer.getvalue()


def summary_json(result: AnalysisResult) -> str:
    """The whole analyze result, as ``shadow analyze --format json`` prints it."""
    return json.dumps(result.to_json(), indent=2) + "\n"
