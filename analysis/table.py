"""The readable form of an analysis: one rich table row per (slice, arm), then notes.

Shared by ``shadow analyze`` (its default output) and ``shadow demo`` (its summary), so both
show the same figures the same way. Columns name figures of the registry
(:data:`analysis.figures.FIGURES`) and format them by its units.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from rich.table import Table

from analysis.figures import FIGURES
from analysis.result import AnalysisResult, Change, GroupResult

__all__ = ["change", "summary_notes", "summary_table"]

_VALUES: Final = (  # (header, figure) of the value columns after n
    ("ok", "ok_rate"),
    ("p50 ms", "latency_p50_ms"),
    ("p99 ms", "latency_p99_ms"),
    ("ttft p95", "ttft_p95_ms"),
    ("$/ok", "cost_per_success_usd"),
)
_CHANGES: Final = (  # (header, figure) of the relative-change columns
    ("Δp99 (95% CI)", "latency_p99_ms"),
    ("Δ$/ok (95% CI)", "cost_per_success_usd"),
)


def summary_table(result: AnalysisResult) -> Table:
    """The figures that tell the story of a run: latency, cost, models, divergence, flags."""
    keys = list(result.by)
    table = Table(title=f"run {result.run_id} (vs {result.baseline_arm or 'no baseline'})",
                  title_justify="left")  # fmt: skip
    goodput = any(v is not None for v in result.thresholds.slo.values())
    measure = result.divergence_kind.partition(":")[0]
    left = {*keys, "arm", "models", "flag"}
    columns = [*keys, "arm", "n", *(h for h, _ in _VALUES), *(h for h, _ in _CHANGES),
               *(["goodput"] if goodput else []), "models", f"div ({measure})", "excess",
               "flag"]  # fmt: skip
    for column in columns:
        table.add_column(column, justify="left" if column in left else "right")
    for g in result.groups:
        table.add_row(
            *(str(g.slice[k]) for k in keys),
            g.arm,
            f"{g.value('n'):,}",
            *(_cell(g, name) for _, name in _VALUES),
            *(change(g.delta.get(name)) for _, name in _CHANGES),
            *([_cell(g, "goodput")] if goodput else []),
            _models(g.models),
            _ratio(g.value("divergence_mean")),
            _ratio(g.value("excess_divergence")),
            _flag(g),
        )
    return table


def summary_notes(result: AnalysisResult) -> list[str]:
    """Lines (rich markup) for below the table: replay fidelity, then each alarm."""
    lines = []
    fid = result.fidelity
    if fid is not None:
        lines.append(
            f"replay fidelity ({fid['n']:,} traces): replayed baseline p50 "
            f"{_ms(fid['baseline_latency_p50_ms'])} ms vs production "
            f"{_ms(fid['production_latency_p50_ms'])} ms ({change(fid['latency_p50_change'])}), "
            f"statuses agree on {_pct(fid['status_agreement'])}"
            + ("" if fid["faithful"] else " [red]not faithful[/]")
        )
    lines += [f"[bold red]alarm:[/] {alarm}" for alarm in result.alarms]
    return lines


def change(delta: Change | Mapping[str, float | None] | None) -> str:
    """``-52.0% [-78.1%, +43.0%]``: a relative change with its interval."""
    if isinstance(delta, Change):
        delta = delta.to_json()
    if not delta or delta.get("change") is None:
        return ""
    lo, hi = delta.get("lo"), delta.get("hi")
    interval = f" [{lo:+.1%}, {hi:+.1%}]" if lo is not None and hi is not None else ""
    return f"{delta['change']:+.1%}{interval}"


def _cell(group: GroupResult, name: str) -> str:
    """A figure of ``group`` formatted by its registry unit; ``-`` without a value."""
    value = group.value(name)
    if value is None:
        return "-"
    unit = FIGURES[name].unit
    if unit == "rate":
        return _pct(value)
    if unit == "usd":
        return f"{value:.6f}"
    return _ms(value)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _ratio(value: Any) -> str:
    return "" if value is None else f"{value:.3f}"


def _models(models: Mapping[str, int] | None) -> str:
    """``small 154, large 42``: which models answered, most first, ``shadow-`` left out."""
    ranked = sorted((models or {}).items(), key=lambda item: -item[1])
    return ", ".join(f"{name.removeprefix('shadow-')} {n}" for name, n in ranked)


def _flag(group: GroupResult) -> str:
    if not group.compared:
        return ""
    if group.too_small:
        return "too small"
    return "DIVERGES" if group.divergence_flagged else ""
