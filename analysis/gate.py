"""``shadow gate``: judge the candidate against the baseline with rules, for CI pipelines.

Each ``[[gate]]`` rule names one figure of the registry (:data:`analysis.figures.FIGURES`)
and one bound (``docs/architecture.md``, "Metric definitions"):

- ``max_increase_pct`` / ``max_decrease_pct`` judge the relative change against the baseline.
  A rule fails only when the whole 95% interval of the change lies beyond the bound, so noise
  alone never fails a build. For ``ok_rate`` the change is in percentage points (a drop from
  99% to 97.5% is 1.5 points), with a normal-approximation interval for the difference of two
  proportions (computed by analyze: ``GroupResult.ok_rate_change``).
- ``max`` / ``min`` judge the candidate's absolute figure (e.g. ``excess_divergence``). Where
  analyze gives the figure an interval (``excess_divergence_lo``/``_hi``), a ``max`` rule fails
  only when the whole interval lies above it (a ``min`` rule: below it); other figures are
  compared by their point value.

``by`` judges each slice on its own; slices with fewer than ``min_samples`` attempts on either
arm are reported as too small, not judged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from analysis.analyze import analyze
from analysis.embedders.base import Embedder
from analysis.figures import FIGURES, absolute_gate_figures, relative_gate_figures
from analysis.result import AnalysisResult, GroupResult
from analysis.run import Run
from shadow.config import AnalysisConfig, GateRule
from shadow.errors import UsageError

__all__ = ["Verdict", "check_rules", "evaluate", "verdict_lines"]


@dataclass(frozen=True, kw_only=True)
class Verdict:
    """The outcome of one rule on one slice."""

    rule: GateRule
    slice: dict[str, str]
    status: str  # "pass", "fail", "too_small" or "no_data"
    value: float | None
    lo: float | None
    hi: float | None
    message: str

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "metric": self.rule.metric,
            "slice": self.slice,
            "status": self.status,
            "value": self.value,
            "lo": self.lo,
            "hi": self.hi,
            "message": self.message,
        }


def evaluate(
    run: Run,
    rules: Sequence[GateRule],
    *,
    n_boot: int = 1000,
    embedder: Embedder | None = None,
    settings: AnalysisConfig | None = None,
    reports: dict[tuple[str, ...], AnalysisResult] | None = None,
) -> list[Verdict]:
    """Judge every rule on ``run``; raises :class:`UsageError` for a rule that cannot apply.

    ``reports`` (``by`` tuple -> an :func:`analyze` result) reuses analyses already made, and
    receives the ones made here.
    """
    reports = {} if reports is None else reports
    check_rules(rules)
    verdicts: list[Verdict] = []
    for rule in rules:
        report = reports.get(rule.by)
        if report is None:
            report = reports[rule.by] = analyze(
                run, rule.by, n_boot=n_boot, embedder=embedder, settings=settings
            )
        base_arm = report.baseline_arm
        by_key = {(tuple(sorted(g.slice.items())), g.arm): g for g in report.groups}
        candidates = [g for g in report.groups if g.arm == "candidate"]
        if not candidates or base_arm is None:
            verdicts.append(
                Verdict(rule=rule, slice={}, status="no_data", value=None, lo=None, hi=None,
                        message=f"{rule.metric}: the run has no candidate and baseline to compare")
            )  # fmt: skip
            continue
        for group in candidates:
            base = by_key.get((tuple(sorted(group.slice.items())), base_arm))
            verdicts.append(_judge(rule, group, base))
    return verdicts


def verdict_lines(verdicts: Sequence[Verdict]) -> list[str]:
    """What ``shadow gate`` prints: one line per check, then ``gate: passed|FAILED, ...``."""
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
    return lines


def check_rules(rules: Sequence[GateRule]) -> None:
    """Raise :class:`UsageError` for the first rule whose figure its bound cannot apply to
    (each figure's gate kinds come from the registry)."""
    for rule in rules:
        relative = rule.max_increase_pct is not None or rule.max_decrease_pct is not None
        allowed = relative_gate_figures() if relative else absolute_gate_figures()
        if rule.metric not in allowed:
            kind = "a relative bound (max_increase_pct/max_decrease_pct)" if relative else "max/min"
            raise UsageError(
                f"gate metric {rule.metric!r} cannot take {kind}; use one of "
                f"{', '.join(sorted(allowed))}"
            )


def _label(rule: GateRule, group: GroupResult) -> str:
    where = ", ".join(f"{k}={v}" for k, v in sorted(group.slice.items()))
    return f"{rule.metric}" + (f" ({where})" if where else "")


def _judge(rule: GateRule, group: GroupResult, base: GroupResult | None) -> Verdict:
    label = _label(rule, group)
    small = group.value("n") < rule.min_samples or (
        base is not None and base.value("n") < rule.min_samples
    )
    if small:
        message = f"{label}: fewer than {rule.min_samples} samples, not judged"
        return Verdict(rule=rule, slice=group.slice, status="too_small", value=None, lo=None,
                       hi=None, message=message)  # fmt: skip
    if rule.max is not None or rule.min is not None:
        value = group.value(rule.metric)
        if value is None:
            return Verdict(rule=rule, slice=group.slice, status="no_data", value=None,
                           lo=None, hi=None, message=f"{label}: no value")  # fmt: skip
        lo, hi = group.interval(rule.metric)
        failed = (rule.max is not None and (value if lo is None else lo) > rule.max) or (
            rule.min is not None and (value if hi is None else hi) < rule.min
        )
        bound = f"<= {rule.max}" if rule.max is not None else f">= {rule.min}"
        shown = f"{value:.4g}" + (
            f" [95% CI {lo:.4g}, {hi:.4g}]" if lo is not None and hi is not None else ""
        )
        return Verdict(rule=rule, slice=group.slice, status="fail" if failed else "pass",
                       value=value, lo=lo, hi=hi,
                       message=f"{label}: {shown}, must be {bound}")  # fmt: skip
    points = FIGURES[rule.metric].change == "points"
    found = group.ok_rate_change if points else group.delta.get(rule.metric)
    change, lo, hi = (None, None, None) if found is None else (found.change, found.lo, found.hi)
    unit, scale = (" points", 1.0) if points else ("%", 100.0)
    if change is None or lo is None or hi is None:
        return Verdict(rule=rule, slice=group.slice, status="no_data", value=None, lo=None,
                       hi=None, message=f"{label}: no interval (too few values)")  # fmt: skip
    if rule.max_increase_pct is not None:
        failed = lo * scale > rule.max_increase_pct
        bound = f"may rise at most {rule.max_increase_pct:g}{unit}"
    else:
        assert rule.max_decrease_pct is not None
        failed = hi * scale < -rule.max_decrease_pct
        bound = f"may fall at most {rule.max_decrease_pct:g}{unit}"
    shown = f"{change * scale:+.2f}{unit} [95% CI {lo * scale:+.2f}, {hi * scale:+.2f}]"
    return Verdict(rule=rule, slice=group.slice, status="fail" if failed else "pass",
                   value=change, lo=lo, hi=hi, message=f"{label}: {shown}; {bound}")  # fmt: skip
