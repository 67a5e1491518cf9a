"""Three verdicts: a gate rule's 95% interval against its bound, and the gate's verdict.

A rule on one slice is ``pass`` when the whole interval lies within its bound, ``fail`` when
it lies wholly beyond, and ``inconclusive`` when it straddles the bound: the run cannot tell,
and more traces would settle it. A figure without an interval is judged by its point value
(``pass`` or ``fail``, never ``inconclusive``). A slice the rule does not judge is
``too_small`` (fewer than the rule's ``min_samples`` on either arm) or ``no_data``.

What the run could detect (:func:`detectable`), with the interval's half-width ``h``, read as
1.96 standard errors: ``mde = (1.96 + 0.84) × h / 1.96 ≈ 1.43 h``, the distance from the bound
at which a true value is caught (fails, or passes) in 80% of runs at this size. How many traces
would settle an inconclusive rule (:func:`traces_needed`): widths shrink as ``1/√n``, so a run
of ``n × (mde / |estimate − bound|)²`` traces catches a true value at today's estimate with 80%
power.

The gate's verdict (:func:`decide`): ``fail`` when any judged check fails; otherwise
``nothing_judged`` when a rule judged no slice at all (its reason is named: judging nothing is
never a pass); otherwise ``inconclusive`` when a check could not tell; otherwise ``pass``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from analysis.paired import TAIL_PERCENTILE
from shadow.config import GateRule

__all__ = [
    "DEFAULT_MIN_SAMPLES",
    "JUDGED",
    "POWER_FACTOR",
    "GateOutcome",
    "GateVerdict",
    "Status",
    "Verdict",
    "decide",
    "detectable",
    "min_samples",
    "settle",
    "traces_needed",
]

Status = Literal["pass", "fail", "inconclusive", "too_small", "no_data"]
GateVerdict = Literal["pass", "fail", "inconclusive", "nothing_judged"]

JUDGED: Final[frozenset[str]] = frozenset({"pass", "fail", "inconclusive"})
"""The statuses of a judged check (the others say why a slice was not judged)."""

DEFAULT_MIN_SAMPLES: Final = 30
"""The fewest samples per arm a slice needs to be judged, for figures other than tail quantiles."""

_Z95: Final = 1.959964  # two-sided 95%
_Z80: Final = 0.841621  # 80% power
POWER_FACTOR: Final = (_Z95 + _Z80) / _Z95
"""``mde`` per unit of the interval's half-width (≈ 1.43)."""


@dataclass(frozen=True, kw_only=True)
class Verdict:
    """The outcome of one rule on one slice.

    ``value``, ``lo``, ``hi``, ``bound`` and ``mde`` share the rule's unit: a fraction for a
    relative change (0.1 is +10%), percentage points for ``ok_rate``, the figure's own unit for
    ``max``/``min`` rules. ``n`` is the smaller arm's sample count; ``n_needed`` (inconclusive
    checks only) the count that would settle the check.
    """

    rule: GateRule
    slice: dict[str, str]
    status: Status
    value: float | None
    lo: float | None
    hi: float | None
    message: str
    bound: float | None = None
    mde: float | None = None
    n: int | None = None
    n_needed: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "metric": self.rule.metric,
            "slice": self.slice,
            "status": self.status,
            "value": self.value,
            "lo": self.lo,
            "hi": self.hi,
            "bound": self.bound,
            "mde": self.mde,
            "n": self.n,
            "n_needed": self.n_needed,
            "message": self.message,
        }


def min_samples(rule: GateRule) -> int:
    """The rule's ``min_samples``, or its default: ``max(30, 1.5 / (1 − q))`` for a quantile
    ``q`` (150 for a p99: 1.5 requests beyond it, :data:`analysis.paired.TAIL_PERCENTILE`), 30
    otherwise; below it the 95% interval of a change covered the truth in fewer than 93% of
    simulated runs (``bench/gate_power.py``, the README's analyzer section)."""
    if rule.min_samples is not None:
        return rule.min_samples
    found = re.search(r"_p(\d{2})(?:_|$)", rule.metric)
    q = int(found.group(1)) / 100 if found else 0.5
    return max(DEFAULT_MIN_SAMPLES, math.ceil(TAIL_PERCENTILE / (1 - q) - 1e-9))


def settle(
    lo: float, hi: float, *, upper: float | None = None, lower: float | None = None
) -> Status:
    """``pass`` when ``[lo, hi]`` is wholly within the bound, ``fail`` wholly beyond, else
    ``inconclusive``; ``upper`` is a largest allowed value, ``lower`` a smallest."""
    if upper is not None:
        return "pass" if hi <= upper else "fail" if lo > upper else "inconclusive"
    assert lower is not None
    return "pass" if lo >= lower else "fail" if hi < lower else "inconclusive"


def detectable(lo: float, hi: float) -> float:
    """The smallest distance from the bound a run of this precision catches with 80% power:
    ``(1.96 + 0.84)`` standard errors, the standard error being the half-width / 1.96."""
    return POWER_FACTOR * (hi - lo) / 2.0


def traces_needed(n: int, estimate: float, bound: float, mde: float) -> int | None:
    """``n × (mde / |estimate − bound|)²``, at least ``n + 1``: the traces that would settle a
    check with 80% power if the true value were today's estimate (None: estimate on the bound)."""
    distance = abs(estimate - bound)
    if distance == 0 or not math.isfinite(mde):
        return None
    return max(n + 1, math.ceil(n * (mde / distance) ** 2))


@dataclass(frozen=True, kw_only=True)
class GateOutcome:
    """Every check of a gate and the verdict they add up to."""

    verdicts: list[Verdict]
    verdict: GateVerdict
    unjudged: list[str]
    """Why each rule that judged no slice judged nothing (one line per rule)."""
    allow_inconclusive: bool = False

    @property
    def exit_code(self) -> int:
        """0 for ``pass`` (and ``inconclusive`` when allowed), else 1."""
        if self.verdict == "pass":
            return 0
        return 0 if self.verdict == "inconclusive" and self.allow_inconclusive else 1

    @property
    def passed(self) -> bool:
        """The gate lets the candidate through (exit code 0)."""
        return self.exit_code == 0

    def to_json(self) -> dict[str, Any]:
        """What ``shadow gate --format json`` prints."""
        return {
            "passed": self.passed,
            "verdict": self.verdict,
            "allow_inconclusive": self.allow_inconclusive,
            "unjudged": list(self.unjudged),
            "verdicts": [v.as_dict() for v in self.verdicts],
        }

    def lines(self) -> list[str]:
        """One line per check (its status in capitals, then what was judged), then the
        verdict: ``gate: passed|FAILED|INCONCLUSIVE|NOTHING JUDGED, ...``."""
        lines = [f"{v.status.upper():<12} {v.message}" for v in self.verdicts]
        statuses = [v.status for v in self.verdicts]
        judged = sum(s in JUDGED for s in statuses)
        failed, unsure = statuses.count("fail"), statuses.count("inconclusive")
        unjudged = len(statuses) - judged
        tail = f"; {unjudged} not judged (too small or no data)" if unjudged else ""
        unsure_text = f", {unsure} inconclusive" if unsure else ""
        if self.verdict == "fail":
            head = f"FAILED, {failed} of {judged} judged checks failed{unsure_text}"
        elif self.verdict == "nothing_judged":
            head = "NOTHING JUDGED, " + "; ".join(self.unjudged)
        elif self.verdict == "inconclusive":
            # More traces settle a check whose interval straddles its bound (n_needed); not
            # one whose cost is incomplete: a price for the unpriced model does.
            sizable = sum(v.status == "inconclusive" and v.n_needed is not None
                          for v in self.verdicts)  # fmt: skip
            if sizable == unsure:
                fix = "more traces would settle them"
            elif sizable == 0:
                fix = "each check says what would settle it"
            else:
                fix = f"more traces would settle {sizable}; the others say what would"
            head = (
                f"INCONCLUSIVE, {unsure} of {judged} judged checks could not tell (none failed);"
                f" {fix}"
            )
        else:
            head = f"passed, all {judged} judged checks pass"
        lines.append(f"gate: {head}{tail}")
        return lines


def decide(verdicts: Sequence[Verdict], *, allow_inconclusive: bool = False) -> GateOutcome:
    """The gate's verdict from its checks (rules are told apart by identity, in order)."""
    rules: list[GateRule] = []
    for v in verdicts:
        if not any(v.rule is r for r in rules):
            rules.append(v.rule)
    unjudged = []
    for rule in rules:
        own = [v for v in verdicts if v.rule is rule]
        if not any(v.status in JUDGED for v in own):
            unjudged.append(_nothing_reason(rule, own))
    statuses = {v.status for v in verdicts}
    verdict: GateVerdict
    if "fail" in statuses:
        verdict = "fail"
    elif unjudged or not verdicts:
        verdict = "nothing_judged"
        unjudged = unjudged or ["no rules"]
    elif "inconclusive" in statuses:
        verdict = "inconclusive"
    else:
        verdict = "pass"
    return GateOutcome(
        verdicts=list(verdicts),
        verdict=verdict,
        unjudged=unjudged,
        allow_inconclusive=allow_inconclusive,
    )


def _nothing_reason(rule: GateRule, own: Sequence[Verdict]) -> str:
    name = rule.metric + (f" by {', '.join(rule.by)}" if rule.by else "")
    if own and all(v.status == "too_small" for v in own):
        where = "every slice has" if rule.by else "the run has"
        floor = min_samples(rule)
        return f"{name} judged nothing: {where} fewer than {floor} samples on an arm (min_samples)"
    reason = next((v.message for v in own if v.status == "no_data"), "no check")
    return f"{name} judged nothing ({reason})"
