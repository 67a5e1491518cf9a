"""``shadow gate``: judge the candidate against the baseline with rules, for CI pipelines.

Each ``[[gate]]`` rule names one figure of ``shadow analyze`` and one bound (DESIGN.md):

- ``max_increase_pct`` / ``max_decrease_pct`` judge the relative change against the baseline.
  A rule fails only when the whole 95% interval of the change lies beyond the bound, so noise
  alone never fails a build. For ``ok_rate`` the change is in percentage points (a drop from
  99% to 97.5% is 1.5 points), with a normal-approximation interval for the difference of two
  proportions.
- ``max`` / ``min`` judge the candidate's absolute figure (e.g. ``excess_divergence``). Where
  analyze gives the figure an interval (``excess_divergence_lo``/``_hi``), a ``max`` rule fails
  only when the whole interval lies above it (a ``min`` rule: below it); other figures are
  compared by their point value.

``by`` judges each slice on its own; slices with fewer than ``min_samples`` attempts on either
arm are reported as too small, not judged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from analysis.analyze import DELTA_FIGURES, analyze
from analysis.divergence import Embedder
from analysis.run import Run
from shadow.config import AnalysisConfig, GateRule
from shadow.errors import UsageError

__all__ = ["Verdict", "evaluate", "verdict_lines"]

_ABSOLUTE = frozenset(
    {
        "ok_rate", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms", "ttft_p50_ms",
        "ttft_p95_ms", "ttft_p99_ms", "tpot_p50_ms", "cost_usd", "cost_per_success_usd",
        "divergence_mean", "divergence_p95", "excess_divergence", "tpot_p95_ms", "itl_p50_ms",
        "itl_p95_ms", "schedule_lag_p50_ms", "schedule_lag_p99_ms", "goodput", "goodput_rps",
        "completion_tokens_mean", "completion_tokens_p50", "completion_tokens_p95",
    }
)  # fmt: skip


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
    reports: dict[tuple[str, ...], dict[str, Any]] | None = None,
) -> list[Verdict]:
    """Judge every rule on ``run``; raises :class:`UsageError` for a rule that cannot apply.

    ``reports`` (``by`` tuple -> an :func:`analyze` result) reuses analyses already made, and
    receives the ones made here.
    """
    reports = {} if reports is None else reports
    verdicts: list[Verdict] = []
    for rule in rules:
        _check(rule)
        report = reports.get(rule.by)
        if report is None:
            report = reports[rule.by] = analyze(
                run, rule.by, n_boot=n_boot, embedder=embedder, settings=settings
            )
        base_arm = report["baseline_arm"]
        by_key = {(tuple(sorted(g["slice"].items())), g["arm"]): g for g in report["groups"]}
        candidates = [g for g in report["groups"] if g["arm"] == "candidate"]
        if not candidates or base_arm is None:
            verdicts.append(
                Verdict(rule=rule, slice={}, status="no_data", value=None, lo=None, hi=None,
                        message=f"{rule.metric}: the run has no candidate and baseline to compare")
            )  # fmt: skip
            continue
        for group in candidates:
            base = by_key.get((tuple(sorted(group["slice"].items())), base_arm))
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


def _check(rule: GateRule) -> None:
    relative = rule.max_increase_pct is not None or rule.max_decrease_pct is not None
    allowed = (set(DELTA_FIGURES) | {"ok_rate"}) if relative else _ABSOLUTE
    if rule.metric not in allowed:
        kind = "a relative bound (max_increase_pct/max_decrease_pct)" if relative else "max/min"
        raise UsageError(
            f"gate metric {rule.metric!r} cannot take {kind}; use one of "
            f"{', '.join(sorted(allowed))}"
        )


def _label(rule: GateRule, group: dict[str, Any]) -> str:
    where = ", ".join(f"{k}={v}" for k, v in sorted(group["slice"].items()))
    return f"{rule.metric}" + (f" ({where})" if where else "")


def _judge(rule: GateRule, group: dict[str, Any], base: dict[str, Any] | None) -> Verdict:
    label = _label(rule, group)
    small = group["n"] < rule.min_samples or (base is not None and base["n"] < rule.min_samples)
    if small:
        message = f"{label}: fewer than {rule.min_samples} samples, not judged"
        return Verdict(rule=rule, slice=group["slice"], status="too_small", value=None, lo=None,
                       hi=None, message=message)  # fmt: skip
    if rule.max is not None or rule.min is not None:
        value = group.get(rule.metric)
        if value is None:
            return Verdict(rule=rule, slice=group["slice"], status="no_data", value=None,
                           lo=None, hi=None, message=f"{label}: no value")  # fmt: skip
        lo, hi = group.get(f"{rule.metric}_lo"), group.get(f"{rule.metric}_hi")
        failed = (rule.max is not None and (value if lo is None else lo) > rule.max) or (
            rule.min is not None and (value if hi is None else hi) < rule.min
        )
        bound = f"<= {rule.max}" if rule.max is not None else f">= {rule.min}"
        shown = f"{value:.4g}" + (
            f" [95% CI {lo:.4g}, {hi:.4g}]" if lo is not None and hi is not None else ""
        )
        return Verdict(rule=rule, slice=group["slice"], status="fail" if failed else "pass",
                       value=value, lo=lo, hi=hi,
                       message=f"{label}: {shown}, must be {bound}")  # fmt: skip
    if rule.metric == "ok_rate":
        change, lo, hi = _ok_rate_points(group, base)
        unit, scale = " points", 1.0
    else:
        delta = (group.get("delta") or {}).get(rule.metric) or {}
        change, lo, hi = delta.get("change"), delta.get("lo"), delta.get("hi")
        unit, scale = "%", 100.0
    if change is None or lo is None or hi is None:
        return Verdict(rule=rule, slice=group["slice"], status="no_data", value=None, lo=None,
                       hi=None, message=f"{label}: no interval (too few values)")  # fmt: skip
    if rule.max_increase_pct is not None:
        failed = lo * scale > rule.max_increase_pct
        bound = f"may rise at most {rule.max_increase_pct:g}{unit}"
    else:
        assert rule.max_decrease_pct is not None
        failed = hi * scale < -rule.max_decrease_pct
        bound = f"may fall at most {rule.max_decrease_pct:g}{unit}"
    shown = f"{change * scale:+.2f}{unit} [95% CI {lo * scale:+.2f}, {hi * scale:+.2f}]"
    return Verdict(rule=rule, slice=group["slice"], status="fail" if failed else "pass",
                   value=change, lo=lo, hi=hi, message=f"{label}: {shown}; {bound}")  # fmt: skip


def _ok_rate_points(
    group: dict[str, Any], base: dict[str, Any] | None
) -> tuple[float | None, float | None, float | None]:
    """Change of the ok rate in percentage points, with a 95% normal-approximation interval."""
    if base is None or group["ok_rate"] is None or base["ok_rate"] is None:
        return None, None, None
    p1, n1, p2, n2 = base["ok_rate"], base["n"], group["ok_rate"], group["n"]
    diff = (p2 - p1) * 100
    se = math.sqrt(p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2) * 100
    return diff, diff - 1.96 * se, diff + 1.96 * se
