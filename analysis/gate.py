"""``shadow gate``: judge the candidate against the baseline with rules, for CI pipelines.

Each ``[[gate]]`` rule names one figure of the registry (:data:`analysis.figures.FIGURES`)
and one bound (``docs/architecture.md``, "Metric definitions"):

- ``max_increase_pct`` / ``max_decrease_pct`` judge the relative change against the baseline
  by its 95% interval (``GroupResult.delta``): ``pass`` when the whole interval lies within
  the bound, ``fail`` when it lies wholly beyond, ``inconclusive`` when it straddles the bound
  (:mod:`analysis.verdicts`). For ``ok_rate`` the change is in percentage points (a drop from
  99% to 97.5% is 1.5 points; ``GroupResult.ok_rate_change``).
- ``max`` / ``min`` judge the candidate's absolute figure (e.g. ``excess_divergence``): by its
  interval where analyze gives one (``excess_divergence_lo``/``_hi``), the same three ways;
  a figure without an interval is judged by its point value (pass or fail).

``by`` judges each slice on its own; it must name slices the run has. Slices with fewer than
the rule's ``min_samples`` samples on either arm are reported as too small, not judged
(:func:`analysis.verdicts.min_samples` gives the default). Each judged check carries the
smallest change the run could detect (``mde``) and, when inconclusive, roughly how many
traces would settle it (``n_needed``).
"""

from __future__ import annotations

from collections.abc import Sequence

from analysis.analyze import analyze
from analysis.embedders.base import Embedder
from analysis.figures import FIGURES, absolute_gate_figures, relative_gate_figures
from analysis.result import AnalysisResult, Change, GroupResult
from analysis.run import Run
from analysis.verdicts import (
    GateOutcome,
    Verdict,
    decide,
    detectable,
    min_samples,
    settle,
    traces_needed,
)
from shadow.config import AnalysisConfig, GateRule
from shadow.errors import UsageError

__all__ = ["Verdict", "check_rules", "check_slices", "evaluate", "judge", "verdict_lines"]


def evaluate(
    run: Run,
    rules: Sequence[GateRule],
    *,
    n_boot: int = 1000,
    embedder: Embedder | None = None,
    settings: AnalysisConfig | None = None,
    reports: dict[tuple[str, ...], AnalysisResult] | None = None,
) -> list[Verdict]:
    """Judge every rule on ``run``; raises :class:`UsageError` for a rule that cannot apply
    (a figure its bound cannot take, a ``by`` slice the run does not have).

    ``reports`` (``by`` tuple -> an :func:`analyze` result) reuses analyses already made, and
    receives the ones made here.
    """
    reports = {} if reports is None else reports
    check_rules(rules)
    check_slices(run, rules)
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
        arms = {g.arm for g in report.groups}
        for group in candidates:
            base = by_key.get((tuple(sorted(group.slice.items())), base_arm))
            verdicts.append(_judge(rule, group, base, arms))
    return verdicts


def judge(
    run: Run,
    rules: Sequence[GateRule],
    *,
    allow_inconclusive: bool = False,
    n_boot: int = 1000,
    embedder: Embedder | None = None,
    settings: AnalysisConfig | None = None,
    reports: dict[tuple[str, ...], AnalysisResult] | None = None,
) -> GateOutcome:
    """:func:`evaluate`, then the gate's verdict (:func:`analysis.verdicts.decide`)."""
    verdicts = evaluate(
        run, rules, n_boot=n_boot, embedder=embedder, settings=settings, reports=reports
    )
    return decide(verdicts, allow_inconclusive=allow_inconclusive)


def verdict_lines(verdicts: Sequence[Verdict]) -> list[str]:
    """What ``shadow gate`` prints: one line per check, then ``gate: <verdict>, ...``."""
    return decide(verdicts).lines()


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


def check_slices(run: Run, rules: Sequence[GateRule]) -> None:
    """Raise :class:`UsageError` for the first rule whose ``by`` names a slice ``run`` lacks."""
    known: list[str] | None = None
    for rule in rules:
        if not rule.by:
            continue
        known = run.slice_names() if known is None else known
        missing = [name for name in rule.by if name not in known]
        if missing:
            raise UsageError(
                f"gate rule {rule.metric!r} has by = {missing[0]!r}, a slice run {run.run_id}"
                f" does not have; its slices are: {', '.join(known) or 'none'}"
            )


def _label(rule: GateRule, group: GroupResult) -> str:
    where = ", ".join(f"{k}={v}" for k, v in sorted(group.slice.items()))
    return f"{rule.metric}" + (f" ({where})" if where else "")


def _no_value(rule: GateRule, group: GroupResult, arms: set[str], fallback: str) -> str:
    """Why a rule found no value: the reasons a user can act on, named."""
    if rule.metric in ("excess_divergence", "noise_floor") and "baseline_repeat" not in arms:
        return "no noise floor: the run has no baseline_repeat arm (replay with --repeat-baseline)"
    if rule.metric.startswith("ttft") and group.value("ttft_p50_ms") is None:
        return "no TTFT: the run was not streamed"
    return fallback


def _judge(rule: GateRule, group: GroupResult, base: GroupResult | None, arms: set[str]) -> Verdict:
    label = _label(rule, group)
    floor = min_samples(rule)
    n = int(group.value("n") or 0)
    if base is not None:
        n = min(n, int(base.value("n") or 0))
    if n < floor:
        message = f"{label}: fewer than {floor} samples on an arm ({n}), not judged"
        return Verdict(rule=rule, slice=group.slice, status="too_small", value=None, lo=None,
                       hi=None, message=message, n=n)  # fmt: skip
    incomplete = _incomplete_cost(rule, group, label, n)
    if incomplete is not None:
        return incomplete
    if rule.max is not None or rule.min is not None:
        return _judge_absolute(rule, group, arms, label, n)
    points = FIGURES[rule.metric].change == "points"
    found: Change | None = group.delta.get(rule.metric)
    if found is None and points:
        found = group.ok_rate_change
    change, lo, hi = (None, None, None) if found is None else (found.change, found.lo, found.hi)
    unit, scale = (" points", 1.0) if points else ("%", 100.0)
    if change is None or lo is None or hi is None:
        reason = _no_value(rule, group, arms, "no interval (too few values)")
        return Verdict(rule=rule, slice=group.slice, status="no_data", value=None, lo=None,
                       hi=None, message=f"{label}: {reason}", n=n)  # fmt: skip
    if rule.max_increase_pct is not None:
        bound = rule.max_increase_pct / scale
        status = settle(lo, hi, upper=bound)
        said = f"may rise at most {rule.max_increase_pct:g}{unit}"
    else:
        assert rule.max_decrease_pct is not None
        bound = -rule.max_decrease_pct / scale
        status = settle(lo, hi, lower=bound)
        said = f"may fall at most {rule.max_decrease_pct:g}{unit}"
    mde = detectable(lo, hi)
    needed = traces_needed(n, change, bound, mde) if status == "inconclusive" else None
    shown = f"{change * scale:+.2f}{unit} [95% CI {lo * scale:+.2f}, {hi * scale:+.2f}]"
    message = f"{label}: {shown}; {said}" + _power(mde * scale, unit, needed, group)
    return Verdict(rule=rule, slice=group.slice, status=status, value=change, lo=lo, hi=hi,
                   message=message, bound=bound, mde=mde, n=n, n_needed=needed)  # fmt: skip


def _incomplete_cost(rule: GateRule, group: GroupResult, label: str, n: int) -> Verdict | None:
    """A cost rule on a group with unpriced attempts is never a pass: ``inconclusive`` with
    the reason naming the models (``GroupResult.incomplete``, ``Change.incomplete``), or
    ``fail`` for a ``max`` the priced part alone already exceeds (a lower bound of the cost)."""
    relative = rule.max_increase_pct is not None or rule.max_decrease_pct is not None
    if relative:
        found = group.delta.get(rule.metric)
        reason = None if found is None else found.incomplete
    else:
        reason = group.incomplete(rule.metric)
    if reason is None:
        return None
    value = None if relative else group.value(rule.metric)
    if value is not None and rule.max is not None and value > rule.max:
        message = f"{label}: ≥ {value:.4g} (the priced part; {reason}), must be <= {rule.max:g}"
        return Verdict(rule=rule, slice=group.slice, status="fail", value=value, lo=value,
                       hi=None, message=message, bound=rule.max, n=n)  # fmt: skip
    return Verdict(rule=rule, slice=group.slice, status="inconclusive", value=None, lo=None,
                   hi=None, message=f"{label}: {reason}", n=n)  # fmt: skip


def _judge_absolute(
    rule: GateRule, group: GroupResult, arms: set[str], label: str, n: int
) -> Verdict:
    value = group.value(rule.metric)
    if value is None:
        reason = _no_value(rule, group, arms, "no value")
        return Verdict(rule=rule, slice=group.slice, status="no_data", value=None, lo=None,
                       hi=None, message=f"{label}: {reason}", n=n)  # fmt: skip
    upper, lower = rule.max, rule.min
    bound = upper if upper is not None else lower
    assert bound is not None
    said = f"<= {upper:g}" if upper is not None else f">= {lower:g}"
    lo, hi = group.interval(rule.metric)
    if lo is None or hi is None:
        failed = (upper is not None and value > upper) or (lower is not None and value < lower)
        message = f"{label}: {value:.4g}, must be {said} (point value: the figure has no interval)"
        return Verdict(rule=rule, slice=group.slice, status="fail" if failed else "pass",
                       value=value, lo=None, hi=None, message=message, bound=bound,
                       n=n)  # fmt: skip
    status = settle(lo, hi, upper=upper, lower=lower)
    mde = detectable(lo, hi)
    needed = traces_needed(n, value, bound, mde) if status == "inconclusive" else None
    shown = f"{value:.4g} [95% CI {lo:.4g}, {hi:.4g}]"
    message = f"{label}: {shown}, must be {said}" + _power(mde, "", needed, group, digits=".2g")
    return Verdict(rule=rule, slice=group.slice, status=status, value=value, lo=lo, hi=hi,
                   message=message, bound=bound, mde=mde, n=n, n_needed=needed)  # fmt: skip


def _power(
    mde: float, unit: str, needed: int | None, group: GroupResult, *, digits: str = ".1f"
) -> str:
    """``; mde ±6.2%; ≈1,234 traces would settle it``."""
    text = f"; mde ±{mde:{digits}}{unit}"
    if needed is not None:
        where = " in this slice" if group.slice else ""
        text += f"; ≈{needed:,} traces{where} would settle it"
    return text
