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
    "priced_figures",
    "relative_gate_figures",
    "summary_figures",
]

Better = Literal["lower", "higher"]
Section = Literal["summary", "cost", "attempt", "extra", "itl", "divergence", "paired"]


@dataclass(frozen=True, kw_only=True)
class Figure:
    """One figure of an analyze group.

    Attributes:
        name: the key in ``shadow analyze --format json`` and the name gate rules use.
        label: how a person reads it (report, notebook).
        unit: ``ms``, ``ms/token``, ``rate`` (a share in [0, 1]), ``usd``, ``tokens``,
            ``count``, ``rps``, ``ratio`` (divergence, 0 = same, 1 = unrelated) or ``factor``
            (candidate / reference, 1 = the same).
        better: which direction is an improvement (None: neither, e.g. a count).
        per: ``attempt`` (every attempt, retries included) or ``request`` (one per trace and
            arm, all its attempts together).
        gateable: a ``max``/``min`` gate rule may bound it.
        change: how its change against the reference is given: ``relative`` (a ``delta``
            object: candidate / reference − 1 with a 95% interval), ``points`` (a difference
            in percentage points, judged by relative gate rules), or None.
        interval: the group also carries ``<name>_lo`` and ``<name>_hi`` (a 95% interval).
        priced: it adds up the attempts' ``cost_usd``: when an attempt of the group had no
            price the value is the priced part only, a lower bound, and the group says so
            (``GroupResult.incomplete``; a gate rule on it is never judged ``pass``).
        section: where it comes from: the summary of :meth:`analysis.run.Run.summary`, the
            spend projection (:mod:`analysis.cost`), the per-attempt figures, the extra
            aggregates, per-chunk gaps, the divergence of compared arms, or the paired ratios
            of compared arms.
    """

    name: str
    label: str
    unit: str
    better: Better | None
    per: Literal["attempt", "request"] = "attempt"
    gateable: bool = True
    change: Literal["relative", "points"] | None = None
    interval: bool = False
    priced: bool = False
    section: Section = "summary"


def _quantiles(
    stem: str,
    label: str,
    qs: tuple[int, ...],
    *,
    unit: str = "ms",
    delta: bool,
    section: Section,
    per: Literal["attempt", "request"] = "request",
) -> list[Figure]:
    return [
        Figure(
            name=f"{stem}_p{q}_ms",
            label=f"{label} p{q}",
            unit=unit,
            better="lower",
            per=per,
            change="relative" if delta else None,
            section=section,
        )
        for q in qs
    ]


_ALL: Final = (
    Figure(name="n", label="Requests", unit="count", better=None, per="request",
           gateable=False),
    Figure(name="ok_rate", label="OK rate", unit="rate", better="higher", per="request",
           change="points"),
    Figure(name="skipped", label="Skipped", unit="count", better=None, per="request",
           gateable=False),
    Figure(name="attempts_per_request", label="Attempts per request", unit="count",
           better="lower", per="request"),
    Figure(name="attempt_ok_rate", label="Attempt OK rate", unit="rate", better="higher"),
    *_quantiles("latency", "Latency", (50, 95, 99), delta=True, section="summary"),
    *_quantiles("ttft", "TTFT", (50, 95, 99), delta=True, section="summary"),
    *_quantiles("tpot", "TPOT", (50, 95), unit="ms/token", delta=False, section="summary"),
    Figure(name="prompt_tokens", label="Prompt tokens", unit="tokens", better=None,
           gateable=False),
    Figure(name="completion_tokens", label="Completion tokens", unit="tokens", better=None,
           gateable=False),
    Figure(name="tokens_per_request", label="Tokens per request", unit="tokens", better="lower",
           per="request", change="relative"),
    Figure(name="cost_usd", label="Cost", unit="usd", better="lower", priced=True),
    Figure(name="cost_per_request_usd", label="Cost per request", unit="usd", better="lower",
           per="request", change="relative", priced=True),
    Figure(name="cost_per_success_usd", label="Cost per success", unit="usd", better="lower",
           per="request", change="relative", priced=True),
    Figure(name="monthly_spend_usd", label="Monthly spend (projected)", unit="usd",
           better="lower", per="request", priced=True, section="cost"),
    Figure(name="attempts", label="Attempts", unit="count", better=None, gateable=False,
           section="attempt"),
    *_quantiles("attempt_latency", "Attempt latency", (50, 95, 99), delta=False,
                section="attempt", per="attempt"),
    *_quantiles("attempt_ttft", "Attempt TTFT", (50, 95, 99), delta=False, section="attempt",
                per="attempt"),
    *_quantiles("schedule_lag", "Schedule lag", (50, 99), delta=False, section="extra"),
    Figure(name="completion_tokens_p50", label="Completion tokens p50", unit="tokens",
           better=None, per="request", section="extra"),
    Figure(name="completion_tokens_p95", label="Completion tokens p95", unit="tokens",
           better=None, per="request", section="extra"),
    Figure(name="completion_tokens_mean", label="Completion tokens mean", unit="tokens",
           better=None, per="request", section="extra"),
    Figure(name="goodput", label="Goodput", unit="rate", better="higher", per="request",
           section="extra"),
    Figure(name="goodput_rps", label="Goodput per second", unit="rps", better="higher",
           per="request", section="extra"),
    *_quantiles("itl", "Inter-chunk gap", (50, 95), delta=False, section="itl", per="attempt"),
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
    Figure(name="latency_ratio", label="Latency ratio (geometric mean)", unit="factor",
           better="lower", per="request", change="relative", section="paired"),
    Figure(name="ttft_ratio", label="TTFT ratio (geometric mean)", unit="factor",
           better="lower", per="request", change="relative", section="paired"),
    Figure(name="paired_n", label="Traces paired", unit="count", better=None, per="request",
           gateable=False, section="paired"),
)  # fmt: skip

FIGURES: Final[Mapping[str, Figure]] = MappingProxyType({f.name: f for f in _ALL})
"""Every figure by name, in the order of an analyze group's keys."""

DELTA_FIGURES: Final = tuple(f.name for f in _ALL if f.change == "relative")
"""The figures whose relative change gets a paired interval (each group's ``delta`` keys):
every latency and TTFT quantile of the summary, tokens and cost per request, cost per success,
and the geometric-mean ratios ``latency_ratio`` and ``ttft_ratio``."""


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


def priced_figures() -> frozenset[str]:
    """The figures that add up attempts' costs (incomplete when an attempt had no price)."""
    return frozenset(f.name for f in _ALL if f.priced)
