"""The readable form of an analysis: one rich table row per (slice, arm), then notes.

Shared by ``shadow analyze`` (its default output) and ``shadow demo`` (its summary), so both
show the same figures the same way. It reads like a before/after table: per arm the median and
P95 latency, the paired latency ratio with its interval, the cost per success and the monthly
spend projection. Columns name figures of the registry (:data:`analysis.figures.FIGURES`) and
format them by its units. A cost with unpriced attempts prints as a lower bound (``≥0.001200*``)
and the notes name the unpriced models; a projection that cannot be made prints ``n/a``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from rich.markup import escape
from rich.table import Table

from analysis.figures import FIGURES
from analysis.result import AnalysisResult, Change, GroupResult

__all__ = ["change", "summary_notes", "summary_table"]

_LATENCY: Final = (  # (header, figure) of the value columns after n (requests)
    ("ok", "ok_rate"),
    ("p50 ms", "latency_p50_ms"),
    ("p95 ms", "latency_p95_ms"),
)
_RATIO: Final = ("ratio (95% CI)", "latency_ratio")  # the paired change, after the latencies
_COST: Final = (("$/ok", "cost_per_success_usd"), ("$/month", "monthly_spend_usd"))
_INCOMPLETE: Final = "*"


def summary_table(result: AnalysisResult) -> Table:
    """The figures that tell the story of a run, per request (a trace on an arm with all its
    attempts): latency, cost, models, divergence, flags; changes with paired intervals."""
    keys = list(result.by)
    table = Table(title=f"run {result.run_id} (vs {result.baseline_arm or 'no baseline'})",
                  title_justify="left")  # fmt: skip
    goodput = any(v is not None for v in result.thresholds.slo.values())
    measure = result.divergence_kind.partition(":")[0]
    left = {*keys, "arm", "models", "flag"}
    columns = [*keys, "arm", "n", *(h for h, _ in _LATENCY), _RATIO[0], *(h for h, _ in _COST),
               *(["goodput"] if goodput else []), "models", f"div ({measure})", "excess",
               "flag"]  # fmt: skip
    for column in columns:  # only the models wrap when the console is narrow
        table.add_column(column, justify="left" if column in left else "right",
                         no_wrap=column != "models")  # fmt: skip
    for g in result.groups:
        table.add_row(
            *(str(g.slice[k]) for k in keys),
            g.arm,
            f"{g.value('n'):,}",
            *(_cell(g, name) for _, name in _LATENCY),
            change(g.delta.get(_RATIO[1])),
            *(_cell(g, name) for _, name in _COST),
            *([_cell(g, "goodput")] if goodput else []),
            _models(g.models),
            _ratio(g.value("divergence_mean")),
            _ratio(g.value("excess_divergence")),
            _flag(g),
        )
    return table


def summary_notes(result: AnalysisResult) -> list[str]:
    """Lines (rich markup) for below the table: which costs are incomplete (their unpriced
    models), why a spend projection is n/a, replay fidelity, then each alarm."""
    lines = []
    for g in result.groups:
        if not g.cost_complete:
            label = ", ".join([*(f"{k}={v}" for k, v in g.slice.items()), g.arm])
            lines.append(
                escape(f"{_INCOMPLETE} {label}: {g.incomplete('cost_usd')}")
                + "; its cost is the priced part only (a lower bound): re-price the run with a"
                " pricing file that has the model to complete it"
            )
    reasons = sorted({g.spend_reason for g in result.groups if g.cost_complete and g.spend_reason
                      and g.value("monthly_spend_usd") is None})  # fmt: skip
    lines += [f"$/month n/a: {escape(reason)}" for reason in reasons]
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
    if name == "monthly_spend_usd":
        if value is None:
            return f"n/a{_INCOMPLETE}" if not group.cost_complete else "n/a"
        return (
            f"{value:,.0f}" if value >= 1_000 else f"{value:,.2f}" if value >= 1 else f"{value:.4g}"
        )
    if value is None:
        return f"n/a{_INCOMPLETE}" if group.incomplete(name) else "-"
    unit = FIGURES[name].unit
    if unit == "rate":
        return _pct(value)
    if unit == "usd":
        if group.incomplete(name):
            return f"≥{value:.6f}{_INCOMPLETE}"  # the priced part: never shown as the cost
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
