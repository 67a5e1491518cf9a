"""Simulated paired traffic for ``bench/gate_power.py``, and the true changes it must cover.

A trace ``i`` has a trace effect ``e_i`` (how slow that request is on any arm). Its baseline
latency is ``exp(μ + e_i) × ε_b`` and its candidate latency ``exp(μ + e_i) × (1 + s_i) × ε_c``,
each arm's per-call noise ``ε`` lognormal with σ 0.25, drawn on its own.

- ``lognormal``: ``e ~ N(0, 0.6²)``.
- ``heavy``: ``e = 0.6 × T₃ / √3`` (Student t with 3 degrees of freedom, scaled to the same
  standard deviation 0.6): a few traces are tens of times slower than the median.

The shift ``s_i`` is ``s`` for every trace (``uniform``) or only for the traces whose noise-free
baseline latency ``exp(μ + e_i)`` is above its population p90 (``tail``: the slowest tenth of
traces got slower, the rest did not).

The true change of a quantile is the population's: ``q_c / q_b − 1`` with ``q`` the quantile of
each arm's latency distribution, solved from the CDF ``F(y) = ∫ f_e(e) Φ((y − e − d(e)) / σ) de``
(``d(e)`` the log shift) by quadrature. The true ``latency_ratio`` is
``exp(E[log c − log b]) − 1``: ``s`` uniform, ``(1 + s)^0.1 − 1`` tail-only.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Final, Literal

import numpy as np
import numpy.typing as npt
from scipy import integrate, optimize
from scipy import stats as sps

__all__ = ["DISTS", "KINDS", "Dist", "Kind", "Traffic", "simulate", "true_change"]

Dist = Literal["lognormal", "heavy"]
Kind = Literal["uniform", "tail"]
DISTS: Final[tuple[Dist, ...]] = ("lognormal", "heavy")
KINDS: Final[tuple[Kind, ...]] = ("uniform", "tail")

MU: Final = math.log(400.0)  # a 400 ms median trace
TRACE_SIGMA: Final = 0.6
NOISE_SIGMA: Final = 0.25
T_DF: Final = 3
_T_SCALE: Final = TRACE_SIGMA / math.sqrt(T_DF / (T_DF - 2))
TAIL_Q: Final = 0.90


@dataclass(frozen=True)
class Traffic:
    """One simulated run: per trace, the baseline's and the candidate's latency (ms)."""

    baseline: npt.NDArray[np.float64]
    candidate: npt.NDArray[np.float64]


def _effects(dist: Dist, n: int, rng: np.random.Generator) -> npt.NDArray[np.float64]:
    if dist == "lognormal":
        return rng.normal(0.0, TRACE_SIGMA, n)
    return _T_SCALE * rng.standard_t(T_DF, n)


def _threshold(dist: Dist) -> float:
    """The p90 of the trace effect (the tail-only shift slows the traces above it)."""
    if dist == "lognormal":
        return float(sps.norm.ppf(TAIL_Q, scale=TRACE_SIGMA))
    return float(sps.t.ppf(TAIL_Q, T_DF, scale=_T_SCALE))


def simulate(dist: Dist, kind: Kind, shift: float, n: int, rng: np.random.Generator) -> Traffic:
    """``n`` traces of paired traffic (module docstring)."""
    effect = _effects(dist, n, rng)
    trace = np.exp(MU + effect)
    factor = np.full(n, 1.0 + shift)
    if kind == "tail":
        factor[effect <= _threshold(dist)] = 1.0
    baseline = trace * rng.lognormal(0.0, NOISE_SIGMA, n)
    candidate = trace * factor * rng.lognormal(0.0, NOISE_SIGMA, n)
    return Traffic(baseline=baseline, candidate=candidate)


def _pdf(dist: Dist, e: float) -> float:
    if dist == "lognormal":
        return float(sps.norm.pdf(e, scale=TRACE_SIGMA))
    return float(sps.t.pdf(e, T_DF, scale=_T_SCALE))


def _cdf(dist: Dist, y: float, below: float, above: float) -> float:
    """P(log latency − μ ≤ y) with log shift ``below`` / ``above`` the tail threshold."""
    tau = _threshold(dist)

    def part(d: float) -> Callable[[float], float]:
        return lambda e: _pdf(dist, e) * float(sps.norm.cdf((y - e - d) / NOISE_SIGMA))

    lo, _ = integrate.quad(part(below), -np.inf, tau, limit=200)
    hi, _ = integrate.quad(part(above), tau, np.inf, limit=200)
    return float(lo + hi)


def _quantile(dist: Dist, q: float, below: float, above: float) -> float:
    root = optimize.brentq(lambda y: _cdf(dist, y, below, above) - q, -20.0, 20.0, xtol=1e-10)
    return float(root)


@cache
def true_change(dist: Dist, kind: Kind, shift: float, figure: str) -> float:
    """The population's relative change of ``figure`` (``p50``, ``p95``, ``p99`` or
    ``ratio``, the geometric-mean ratio) under the shift."""
    d = math.log1p(shift)
    if kind == "uniform" or shift == 0.0:
        return shift
    if figure == "ratio":
        return math.expm1((1.0 - TAIL_Q) * d)
    q = {"p50": 0.50, "p95": 0.95, "p99": 0.99}[figure]
    return math.expm1(_quantile(dist, q, 0.0, d) - _quantile(dist, q, 0.0, 0.0))
