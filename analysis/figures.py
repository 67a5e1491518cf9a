"""The figure registry: every per-group figure of ``shadow analyze``, named once.

Each :class:`Figure` says what one key of an analyze group means: its unit, which direction
is better, whether it counts attempts (retries included) or requests (one per trace), whether
``shadow gate`` may bound it, and how its change against the reference arm is expressed. The
JSON of ``shadow analyze``, the summary table, the gate, the report and the notebook all take
figure names from :data:`FIGURES`; its order is the order of the keys in an analyze group.
Definitions: ``docs/architecture.md``, "Metric definitions".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Literal

__all__ = [
    "DELTA_FIGURES",
    "FIGURES",
    "Better",
    "Figure",
    "Section",
    "absolute_gate_figures",
    "figure",
    "relative_gate_figures",
    "summary_figures",
]

Better = Literal["lower", "higher"]
Section = Literal["summary", "extra", "itl", "divergence"]


@dataclass(frozen=True, kw_only=True)
class Figure:
    """One figure of an analyze group.

    Attributes:
        name: the key in ``shadow analyze --format json`` and the name gate rules use.
        label: how a person reads it (report, notebook).
        unit: ``ms``, ``ms/token``, ``rate`` (a share in [0, 1]), ``usd``, ``tokens``,
            ``count``, ``rps`` or ``ratio`` (divergence, 0 = same, 1 = unrelated).
        better: which direction is an improvement (None: neither, e.g. a count).
        per: ``attempt`` (every attempt, retries included) or ``request`` (one per trace).
        gateable: a ``max``/``min`` gate rule may bound it.
        change: how its change against the reference is given: ``relative`` (a ``delta``
            object: candidate / reference − 1 with a 95% interval), ``points`` (a difference
            in percentage points, judged by relative gate rules), or None.
        interval: the group also carries ``<name>_lo`` and ``<name>_hi`` (a 95% interval).
        section: where it comes from: the summary of :meth:`analysis.run.Run.summary`, the
            extra aggregates, per-chunk gaps, or the divergence of compared arms.
    """

    name: str
    label: str
    unit: str
    better: Better | None
    per: Literal["attempt", "request"] = "attempt"
    gateable: bool = True
    change: Literal["relative", "points"] | None = None
    interval: bool = False
    section: Section = "summary"


def _quantiles(
    stem: str, label: str, qs: tuple[int, ...], *, unit: str = "ms", delta: bool, section: Section
) -> list[Figure]:
    return [
        Figure(
            name=f"{stem}_p{q}_ms",
            label=f"{label} p{q}",
            unit=unit,
            better="lower",
            change="relative" if delta else None,
            section=section,
        )
        for q in qs
    ]


_ALL: Final = (
    Figure(name="n", label="Attempts", unit="count", better=None, gateable=False),
    Figure(name="ok_rate", label="OK rate", unit="rate", better="higher", change="points"),
    *_quantiles("latency", "Latency", (50, 95, 99), delta=True, section="summary"),
    *_quantiles("ttft", "TTFT", (50, 95, 99), delta=True, section="summary"),
    *_quantiles("tpot", "TPOT", (50, 95), unit="ms/token", delta=False, section="summary"),
    Figure(name="prompt_tokens", label="Prompt tokens", unit="tokens", better=None,
           gateable=False),
    Figure(name="completion_tokens", label="Completion tokens", unit="tokens", better=None,
           gateable=False),
    Figure(name="cost_usd", label="Cost", unit="usd", better="lower"),
    Figure(name="cost_per_success_usd", label="Cost per success", unit="usd", better="lower",
           change="relative"),
    *_quantiles("schedule_lag", "Schedule lag", (50, 99), delta=False, section="extra"),
    Figure(name="completion_tokens_p50", label="Completion tokens p50", unit="tokens",
           better=None, section="extra"),
    Figure(name="completion_tokens_p95", label="Completion tokens p95", unit="tokens",
           better=None, section="extra"),
    Figure(name="completion_tokens_mean", label="Completion tokens mean", unit="tokens",
           better=None, section="extra"),
    Figure(name="goodput", label="Goodput", unit="rate", better="higher", section="extra"),
    Figure(name="goodput_rps", label="Goodput per second", unit="rps", better="higher",
           section="extra"),
    *_quantiles("itl", "Inter-chunk gap", (50, 95), delta=False, section="itl"),
    Figure(name="divergence_mean", label="Divergence mean", unit="ratio", better="lower",
           per="request", section="divergence"),
    Figure(name="divergence_p95", label="Divergence p95", unit="ratio", better="lower",
           per="request", section="divergence"),
    Figure(name="divergence_n", label="Traces compared", unit="count", better=None,
           per="request", gateable=False, section="divergence"),
    Figure(name="noise_floor", label="Noise floor", unit="ratio", better=None, per="request",
           gateable=False, section="divergence"),
    Figure(name="excess_divergence", label="Excess divergence", unit="ratio", better="lower",
           per="request", interval=True, section="divergence"),
)  # fmt: skip

FIGURES: Final[Mapping[str, Figure]] = MappingProxyType({f.name: f for f in _ALL})
"""Every figure by name, in the order of an analyze group's keys."""

DELTA_FIGURES: Final = tuple(f.name for f in _ALL if f.change == "relative")
"""The figures whose relative change gets an interval (each group's ``delta`` keys): every
latency and TTFT quantile of the summary, and cost per success."""


def figure(name: str) -> Figure:
    """The figure called ``name``; raises ``KeyError`` naming the known figures otherwise."""
    try:
        return FIGURES[name]
    except KeyError:
        raise KeyError(f"{name!r} is not a figure; figures are {', '.join(FIGURES)}") from None


def summary_figures() -> tuple[str, ...]:
    """The figures of :meth:`analysis.run.Run.summary`, in its column order."""
    return tuple(f.name for f in _ALL if f.section == "summary")


def absolute_gate_figures() -> frozenset[str]:
    """The figures a ``max``/``min`` gate rule may name."""
    return frozenset(f.name for f in _ALL if f.gateable)


def relative_gate_figures() -> frozenset[str]:
    """The figures a ``max_increase_pct``/``max_decrease_pct`` gate rule may name."""
    return frozenset(f.name for f in _ALL if f.change is not None)
