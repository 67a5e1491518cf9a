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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from shadow.errors import UsageError

if TYPE_CHECKING:
    from analysis.divergence import Embedder
    from analysis.run import Run

__all__ = ["Verdict", "judge", "load_embedder", "open_results", "summarise", "summary_json",
           "summary_table", "table_text", "write_html"]  # fmt: skip

_TEXT_WIDTH = 160


def load_embedder(spec: str) -> Embedder | None:
    """The sentence embedder ``spec`` names (``auto``: MiniLM when installed); None: lexical."""
    word = spec.strip().lower()
    if word in ("lexical", "none"):
        return None
    try:
        from analysis.embeddings import load_embedder as load
    except ImportError:
        if word == "auto":
            return None
        raise UsageError(
            f"--embedder {spec!r} needs analysis.embeddings, which this install lacks; "
            "use --embedder lexical"
        ) from None
    return load(spec)


def open_results(path: Path) -> Run:
    """The latest run of the results store at ``path``."""
    from analysis.run import open_run

    return open_run(path)


def summarise(
    run: Run, by: Sequence[str], rules: Path, embedder: Embedder | None
) -> dict[str, Any]:
    """``shadow analyze RUN --by BY --format json``, with the rules file's [analysis] settings."""
    from analysis.analyze import analyze
    from shadow.config import load_config

    return analyze(run, by, embedder=embedder, settings=load_config(rules).analysis)


@dataclass(frozen=True)
class Verdict:
    """What ``shadow gate`` prints for the run and whether it would exit 0."""

    passed: bool
    lines: list[str]

    @property
    def summary(self) -> str:
        """The last line: ``gate: passed, ...`` or ``gate: FAILED, ...``."""
        return self.lines[-1]


def judge(run: Run, rules: Path, embedder: Embedder | None) -> Verdict:
    """``shadow gate RUN --rules RULES``: one line per check, then the verdict."""
    from analysis.gate import evaluate
    from shadow.config import load_config

    config = load_config(rules)
    verdicts = evaluate(run, config.gate, embedder=embedder, settings=config.analysis)
    lines = [f"{v.status.upper():<9} {v.message}" for v in verdicts]
    failed = sum(v.status == "fail" for v in verdicts)
    judged = sum(v.status in ("pass", "fail") for v in verdicts)
    unjudged = len(verdicts) - judged
    tail = f"; {unjudged} not judged (too small or no data)" if unjudged else ""
    lines.append(
        f"gate: FAILED, {failed} of {judged} judged checks{tail}"
        if failed
        else f"gate: passed, {judged} judged checks{tail}"
    )
    return Verdict(passed=not failed, lines=lines)


def write_html(
    run: Run, target: Path, *, by: Sequence[str], rules: Path, embedder: Embedder | None
) -> Path:
    """``analysis.report.write_report``: the self-contained HTML report."""
    from analysis.report import write_report

    return write_report(run, target, by=list(by), rules=rules, embedder=embedder)


def summary_table(result: Mapping[str, Any]) -> Table:
    """The analyze figures that tell the routing story, one row per (slice, arm)."""
    keys: list[str] = list(result["by"])
    measure = str(result["divergence_kind"]).partition(":")[0]
    table = Table(
        title=f"run {result['run_id']} (vs {result['baseline_arm'] or 'no baseline'})",
        title_justify="left",
    )
    left = {*keys, "arm", "models"}
    for column in (*keys, "arm", "n", "ok", "p50 ms", "p99 ms", "$/ok", "Δp99 % (95% CI)",
                   "Δ$/ok % (95% CI)", "models", f"div ({measure})", "excess"):  # fmt: skip
        table.add_column(column, justify="left" if column in left else "right")
    for group in result["groups"]:
        delta = group.get("delta") or {}
        table.add_row(
            *(str(group["slice"][key]) for key in keys),
            group["arm"],
            f"{group['n']:,}",
            _fmt(group.get("ok_rate"), "{:.1%}"),
            _fmt(group.get("latency_p50_ms"), "{:,.0f}"),
            _fmt(group.get("latency_p99_ms"), "{:,.0f}"),
            _fmt(group.get("cost_per_success_usd"), "{:.6f}"),
            _change(delta.get("latency_p99_ms")),
            _change(delta.get("cost_per_success_usd")),
            _models(group.get("models")),
            _fmt(group.get("divergence_mean"), "{:.3f}", ""),
            _fmt(group.get("excess_divergence"), "{:.3f}", ""),
        )
    return table


def table_text(table: Table, width: int = _TEXT_WIDTH) -> str:
    """The table as plain text, as a file or a log shows it."""
    buffer = io.StringIO()
    Console(file=buffer, width=width, color_system=None, force_terminal=False).print(table)
    return buffer.getvalue()


def summary_json(result: Mapping[str, Any]) -> str:
    """The whole analyze result, as ``shadow analyze --format json`` prints it."""
    return json.dumps(result, indent=2) + "\n"


def _fmt(value: Any, spec: str, missing: str = "-") -> str:
    return missing if value is None else spec.format(value)


def _change(delta: Mapping[str, float | None] | None) -> str:
    if not delta or delta.get("change") is None:
        return ""
    lo, hi = delta.get("lo"), delta.get("hi")
    interval = f" [{lo * 100:+.0f}, {hi * 100:+.0f}]" if lo is not None and hi is not None else ""
    return f"{delta['change']:+.0%}{interval}"


def _models(models: Mapping[str, int] | None) -> str:
    """``small 154, large 42``: which model answered, without the ``shadow-`` prefix."""
    if not models:
        return ""
    ranked = sorted(models.items(), key=lambda item: -item[1])
    return ", ".join(f"{name.removeprefix('shadow-')} {n}" for name, n in ranked)
