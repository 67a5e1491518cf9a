"""The readable form of an analyze result: one rich table row per (slice, arm), then notes.

Shared by ``shadow analyze`` (its default output) and ``shadow demo`` (its summary), so both
show the same figures the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.table import Table

__all__ = ["summary_notes", "summary_table"]


def summary_table(result: Mapping[str, Any]) -> Table:
    """The figures that tell the story of a run: latency, cost, models, divergence, flags."""
    keys: list[str] = list(result["by"])
    table = Table(title=f"run {result['run_id']} (vs {result['baseline_arm'] or 'no baseline'})",
                  title_justify="left")  # fmt: skip
    slo = (result.get("thresholds") or {}).get("slo") or {}
    goodput = any(v is not None for v in slo.values())
    measure = str(result["divergence_kind"]).partition(":")[0]
    left = {*keys, "arm", "models", "flag"}
    columns = [*keys, "arm", "n", "ok", "p50 ms", "p99 ms", "ttft p95", "$/ok",
               "Δp99 (95% CI)", "Δ$/ok (95% CI)", *(["goodput"] if goodput else []), "models",
               f"div ({measure})", "excess", "flag"]  # fmt: skip
    for column in columns:
        table.add_column(column, justify="left" if column in left else "right")
    for g in result["groups"]:
        delta = g.get("delta") or {}
        table.add_row(
            *(str(g["slice"][k]) for k in keys),
            g["arm"],
            f"{g['n']:,}",
            _pct(g.get("ok_rate")),
            _num(g.get("latency_p50_ms")),
            _num(g.get("latency_p99_ms")),
            _num(g.get("ttft_p95_ms")),
            "-" if g.get("cost_per_success_usd") is None else f"{g['cost_per_success_usd']:.6f}",
            change(delta.get("latency_p99_ms")),
            change(delta.get("cost_per_success_usd")),
            *([_pct(g.get("goodput"))] if goodput else []),
            _models(g.get("models")),
            "" if g.get("divergence_mean") is None else f"{g['divergence_mean']:.3f}",
            "" if g.get("excess_divergence") is None else f"{g['excess_divergence']:.3f}",
            _flag(g),
        )
    return table


def summary_notes(result: Mapping[str, Any]) -> list[str]:
    """Lines (rich markup) for below the table: replay fidelity, then each alarm."""
    lines = []
    fid = result.get("fidelity")
    if fid is not None:
        lines.append(
            f"replay fidelity ({fid['n']:,} traces): replayed baseline p50 "
            f"{_num(fid['baseline_latency_p50_ms'])} ms vs production "
            f"{_num(fid['production_latency_p50_ms'])} ms ({change(fid['latency_p50_change'])}), "
            f"statuses agree on {_pct(fid['status_agreement'])}"
            + ("" if fid["faithful"] else " [red]not faithful[/]")
        )
    lines += [f"[bold red]alarm:[/] {alarm}" for alarm in result.get("alarms") or []]
    return lines


def change(delta: Mapping[str, float | None] | None) -> str:
    """``-52.0% [-78.1%, +43.0%]``: a relative change with its interval."""
    if not delta or delta.get("change") is None:
        return ""
    lo, hi = delta.get("lo"), delta.get("hi")
    interval = f" [{lo:+.1%}, {hi:+.1%}]" if lo is not None and hi is not None else ""
    return f"{delta['change']:+.1%}{interval}"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _models(models: Mapping[str, int] | None) -> str:
    """``small 154, large 42``: which models answered, most first, ``shadow-`` left out."""
    ranked = sorted((models or {}).items(), key=lambda item: -item[1])
    return ", ".join(f"{name.removeprefix('shadow-')} {n}" for name, n in ranked)


def _flag(group: Mapping[str, Any]) -> str:
    if "delta" not in group:
        return ""
    if group.get("too_small"):
        return "too small"
    return "DIVERGES" if group.get("divergence_flagged") else ""
