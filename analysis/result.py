"""The typed result of :func:`analysis.analyze.analyze`: an :class:`AnalysisResult` of groups.

A :class:`GroupResult` is one (slice values..., arm) group: its figures by the names of
:data:`analysis.figures.FIGURES`, the models and error classes seen, and, for every arm
compared with the reference arm, the relative changes (:class:`Change`), the tests
(:class:`TestResult`) and the divergence flag. :meth:`AnalysisResult.to_json` gives exactly
what ``shadow analyze --format json`` prints; the result also carries what only the report
draws (the ok rate's change in points, the divergence sample), which the JSON leaves out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from analysis.figures import FIGURES, figure

__all__ = [
    "AnalysisResult",
    "Change",
    "DivergenceSample",
    "GroupResult",
    "TestResult",
    "Thresholds",
    "unpriced_reason",
]


def unpriced_reason(unpriced: Mapping[str, int], arm: str | None = None) -> str:
    """``cost incomplete: model gpt-9 unpriced (2 attempts)``, naming every unpriced model
    (most attempts first) and, when given, the arm they were on."""
    ranked = sorted(unpriced.items(), key=lambda item: (-item[1], item[0]))
    listed = ", ".join(f"{model} ({n:,} attempt{'' if n == 1 else 's'})" for model, n in ranked)
    where = f" on {arm}" if arm else ""
    if len(ranked) == 1:
        model, _, counted = listed.rpartition(" (")
        return f"cost incomplete{where}: model {model} unpriced ({counted}"
    return f"cost incomplete{where}: models {listed} unpriced"


@dataclass(frozen=True, kw_only=True)
class Change:
    """A change against the reference arm, with its 95% interval (None: not computable)."""

    change: float | None
    lo: float | None
    hi: float | None
    incomplete: str | None = None
    """Set on a cost figure's change when either arm had unpriced attempts: the numbers
    compare priced parts only, so they are not the change of the cost (the reason names the
    models, :func:`unpriced_reason`)."""

    def to_json(self) -> dict[str, Any]:
        """``{"change": ..., "lo": ..., "hi": ...}``, plus ``"incomplete": reason`` when the
        change compares incomplete costs."""
        out: dict[str, Any] = {"change": self.change, "lo": self.lo, "hi": self.hi}
        if self.incomplete is not None:
            out["incomplete"] = self.incomplete
        return out


@dataclass(frozen=True, kw_only=True)
class TestResult:
    """One two-sample test: its p-value and the Benjamini-Hochberg q across the run."""

    __test__ = False  # not a pytest test class

    p: float | None
    q: float | None

    def to_json(self) -> dict[str, float | None]:
        """``{"p": ..., "q": ...}``."""
        return {"p": self.p, "q": self.q}


@dataclass(frozen=True, kw_only=True)
class GroupResult:
    """The figures of one (slice values..., arm) group.

    ``values`` maps figure names (:data:`~analysis.figures.FIGURES`) to numbers or None;
    ``bounds`` holds the 95% intervals of the figures that have one (``excess_divergence``).
    The comparison fields are set on compared arms only (``compared``), as in the JSON.
    """

    slice: dict[str, str]
    arm: str
    values: dict[str, Any]
    models: dict[str, int]
    errors: dict[str, int]
    too_small: bool
    model_mismatches: int | None = None
    compared: bool = False
    bounds: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)
    divergence_flagged: bool | None = None
    delta: dict[str, Change] = field(default_factory=dict)
    tests: dict[str, TestResult] = field(default_factory=dict)
    interval_sample: dict[str, Any] | None = None
    """What the intervals of ``delta`` used (compared arms): ``requests`` of the arm in the
    slice's hash-chosen sample, ``of`` all its requests, ``scale`` √(requests / of) by which the
    replicates' spread was narrowed (1 when the sample holds every request)."""
    ok_rate_change: Change | None = None
    """The ok rate's change in percentage points with a normal-approximation 95% interval
    (compared arms only; not part of the JSON)."""
    unpriced: dict[str, int] = field(default_factory=dict)
    """Attempts that reported tokens but had no price, by model (:func:`analysis.cost.unpriced`);
    when any, the priced figures (``cost_usd``...) are the priced part only, a lower bound."""
    spend_reason: str | None = None
    """Why ``monthly_spend_usd`` is None (``"n/a"``), else None."""

    @property
    def cost_complete(self) -> bool:
        """True when every attempt of the group that reported tokens was priced."""
        return not self.unpriced

    def incomplete(self, name: str) -> str | None:
        """Why figure ``name`` of this group is not the whole of it (an attempt had no
        price: ``cost incomplete: model gpt-9 unpriced (2 attempts)``), or None. A gate rule on
        a figure with a reason must not pass (``inconclusive``); the change of a priced figure
        carries its own reason (:attr:`Change.incomplete`), either arm's models named.

        Raises:
            KeyError: ``name`` is not a figure of the registry.
        """
        if not figure(name).priced or self.cost_complete:
            return None
        return unpriced_reason(self.unpriced)

    def value(self, name: str) -> Any:
        """The figure ``name`` of this group (None when it has no value here).

        Raises:
            KeyError: ``name`` is not a figure of the registry.
        """
        figure(name)
        return self.values.get(name)

    def interval(self, name: str) -> tuple[float | None, float | None]:
        """The 95% interval of figure ``name`` when the group has one, else (None, None)."""
        figure(name)
        return self.bounds.get(name, (None, None))

    def to_json(self) -> dict[str, Any]:
        """The group as ``shadow analyze --format json`` prints it (keys in its order)."""
        out: dict[str, Any] = {"slice": dict(self.slice), "arm": self.arm}
        for name, fig in FIGURES.items():
            if fig.section in ("summary", "cost", "attempt", "extra"):
                out[name] = self.values.get(name)
        out["cost_complete"] = self.cost_complete
        out["unpriced_models"] = dict(self.unpriced)
        out["monthly_spend_reason"] = self.spend_reason
        out["models"] = dict(self.models)
        out["errors"] = dict(self.errors)
        for name, fig in FIGURES.items():
            if fig.section == "itl":
                out[name] = self.values.get(name)
        out["too_small"] = self.too_small
        if self.model_mismatches is not None:
            out["model_mismatches"] = self.model_mismatches
        if not self.compared:
            return out
        for name, fig in FIGURES.items():
            if fig.section in ("divergence", "paired"):
                out[name] = self.values.get(name)
                if fig.interval:
                    out[f"{name}_lo"], out[f"{name}_hi"] = self.interval(name)
        out["divergence_flagged"] = self.divergence_flagged
        out["interval_sample"] = (
            None if self.interval_sample is None else dict(self.interval_sample)
        )
        out["delta"] = {name: change.to_json() for name, change in self.delta.items()}
        out["tests"] = {name: test.to_json() for name, test in self.tests.items()}
        return out


@dataclass(frozen=True, kw_only=True)
class Thresholds:
    """The settings a result was judged with."""

    slo: dict[str, float | None]
    min_samples: int
    flag_abs: float
    flag_rel: float
    pin_models: dict[str, str]

    def to_json(self) -> dict[str, Any]:
        """The ``thresholds`` object of the JSON."""
        return {
            "slo": dict(self.slo),
            "min_samples": self.min_samples,
            "flag_abs": self.flag_abs,
            "flag_rel": self.flag_rel,
            "pin_models": dict(self.pin_models),
        }


@dataclass(frozen=True, kw_only=True)
class DivergenceSample:
    """Final outputs of hash-sampled traces that reached the reference arm, and each other
    arm's divergence from it: the report's histogram and examples come from one sample."""

    reference: str
    total: int
    """Traces with an attempt on the reference arm, sampled or not."""
    rows: dict[str, dict[str, dict[str, Any]]]
    """trace -> arm -> ``output_text`` and ``slices`` (JSON text)."""
    scores: dict[str, tuple[list[str], np.ndarray]]
    """arm -> (traces, the divergence of each from the reference)."""


@dataclass(frozen=True, kw_only=True)
class AnalysisResult:
    """Everything ``shadow analyze`` computes for one run, sliced by ``by``."""

    run_id: str
    baseline_arm: str | None
    """The reference arm: ``baseline``, or ``production`` in a live-mirror run."""
    by: list[str]
    divergence_kind: str
    thresholds: Thresholds
    groups: list[GroupResult]
    fidelity: dict[str, Any] | None
    """Replay fidelity (:mod:`analysis.fidelity`), or None when there is nothing to compare."""
    alarms: list[str]
    sample: DivergenceSample | None = None
    """The report's divergence sample, when analyze was asked for it (not in the JSON)."""

    @property
    def flagged(self) -> list[GroupResult]:
        """The groups whose excess divergence is flagged."""
        return [g for g in self.groups if g.divergence_flagged]

    def group(self, arm: str, slice: Mapping[str, str] | None = None) -> GroupResult | None:
        """The group of ``arm`` and slice values ``slice`` (default: no slices), if any."""
        wanted = dict(slice or {})
        return next((g for g in self.groups if g.arm == arm and g.slice == wanted), None)

    def to_json(self) -> dict[str, Any]:
        """Exactly what ``shadow analyze --format json`` prints (keys in its order)."""
        return {
            "run_id": self.run_id,
            "baseline_arm": self.baseline_arm,
            "by": list(self.by),
            "divergence_kind": self.divergence_kind,
            "thresholds": self.thresholds.to_json(),
            "groups": [g.to_json() for g in self.groups],
            "fidelity": self.fidelity,
            "flagged": [
                {
                    "slice": dict(g.slice),
                    "arm": g.arm,
                    "excess_divergence": g.values.get("excess_divergence"),
                }
                for g in self.flagged
            ],
            "alarms": list(self.alarms),
        }
