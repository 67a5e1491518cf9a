"""The figures ``shadow analyze`` prints: per (slice, arm) summaries, paired deltas vs the
baseline, tests, divergence with its noise floor, replay fidelity and alarms.

The result is an :class:`~analysis.result.AnalysisResult`; its JSON (``to_json()``; see
``docs/architecture.md``, "Results") is ``{"run_id": ..., "groups": [...]}``; each group has
``slice``, ``arm``, the per-request summary figures of :meth:`analysis.run.Run.summary`, the
per-attempt figures (``attempts``, ``attempt_latency_p50_ms`` ...), and for every arm but the
reference (``baseline``, or ``production`` in a live-mirror run) a ``delta`` object: for each
latency, TTFT, token and cost figure, the relative change (``change`` = candidate / baseline − 1,
always from the exact figures) with a 95% interval (``lo``, ``hi``) from the pairing by trace
(:mod:`analysis.paired`: a Poisson bootstrap over traces, shared by the arms, on the slice's
hash-chosen sample of traces, its spread scaled to all requests). ``latency_ratio`` and
``ttft_ratio`` are geometric means over traces successful on both arms of candidate /
baseline, with Student's t-interval on the mean per-trace log ratio, over those traces of
the slice's sample (every trace up to :data:`~analysis.aggregates.SAMPLE_TRACES`). Each compared
group's ``interval_sample`` says what its intervals used (requests sampled, of all, the scale).

Beyond the summary's keys, each group carries (see :mod:`analysis.aggregates`): ``tpot_p95_ms``,
``itl_p50_ms``/``itl_p95_ms`` (per-chunk gaps; TPOT is the (latency − ttft) / (tokens − 1)
convention), schedule lag p50/p99 (first attempts), output-token p50/p95/mean, ``goodput``
(share of requests that succeeded within the SLOs) and ``goodput_rps``, ``models`` and
``errors`` (attempts by class), ``too_small`` (fewer than ``min_samples`` requests on either
side); and for compared arms ``tests`` — Mann-Whitney U on latency, Fisher exact on ok,
Kolmogorov-Smirnov on output tokens, each with a Benjamini-Hochberg ``q`` across the run's
compared groups — plus ``excess_divergence_lo``/``_hi`` (paired by trace with the
baseline_repeat arm) and ``divergence_flagged`` (excess >= ``flag_abs`` and >= ``flag_rel`` ×
the noise floor). Top level: ``fidelity`` (:mod:`analysis.fidelity`), ``flagged`` slices,
``alarms`` (model-pin mismatches, unfaithful replay) and the thresholds used.

Cost you can trust (:mod:`analysis.cost`): each group has ``monthly_spend_usd`` (its spend
per month at the recorded traffic rate; null with ``monthly_spend_reason`` when n/a),
``cost_complete`` and ``unpriced_models`` (model -> attempts that reported tokens but had no
price). An incomplete group's cost figures are the priced part only, a lower bound, and each
change of a cost figure whose either arm is incomplete carries ``incomplete`` (the reason,
naming the models): ``shadow gate`` never passes a cost rule on it.

Tests use the same sample (a test on a random subset is still a valid test; at that size it
detects any shift that matters).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any, Final

import numpy as np

from analysis.aggregates import (
    GroupFigures,
    PairRatio,
    Slo,
    chunk_gaps,
    group_figures,
    pair_ratios,
)
from analysis.cost import project_spend, recorded_span
from analysis.divergence import kind
from analysis.embedders.base import Embedder
from analysis.fidelity import fidelity
from analysis.figures import DELTA_FIGURES, FIGURES
from analysis.paired import (
    QUANTILE_FIGURES,
    ArmReplicates,
    PairedBootstrap,
    log_ratio_interval,
    poisson_weights,
    quantile_interval,
    scaled_interval,
)
from analysis.pairs import divergence_sample, pair_divergence, reference_arm
from analysis.result import (
    AnalysisResult,
    Change,
    GroupResult,
    TestResult,
    Thresholds,
    unpriced_reason,
)
from analysis.run import Run
from analysis.sql import check_slice_names
from analysis.stats import (
    benjamini_hochberg,
    fisher_ok,
    ks_two_sample,
    mann_whitney,
    mean_difference_ci,
    paired_difference_ci,
)
from shadow.config import AnalysisConfig

__all__ = ["analyze"]

_TESTS: Final = ("latency_mann_whitney", "ok_fisher", "completion_tokens_ks")


def analyze(
    run: Run,
    by: Sequence[str] = (),
    *,
    n_boot: int = 1000,
    seed: int = 0,
    embedder: Embedder | None = None,
    settings: AnalysisConfig | None = None,
    sample: bool = False,
) -> AnalysisResult:
    """Everything ``shadow analyze`` computes for ``run`` (``.to_json()`` is what
    ``--format json`` prints).

    Args:
        by: slice names to group by; one the run does not have raises ``UsageError``.
        n_boot: bootstrap resamples for the intervals of small samples.
        embedder: semantic divergence; None measures it lexically.
        settings: SLOs, pins and thresholds.
        sample: also keep the report's divergence sample
            (:func:`analysis.pairs.divergence_sample`) in ``result.sample``.
    """
    settings = settings or AnalysisConfig()
    keys = list(by)
    check_slice_names(keys)
    run.check_slices(keys)  # an unknown slice is bad input, not a run under "(none)"
    slo = Slo(
        ttft_ms=settings.slo_ttft_ms,
        tpot_ms=settings.slo_tpot_ms,
        latency_ms=settings.slo_latency_ms,
    )
    figures = group_figures(run, keys, slo)
    gaps = chunk_gaps(run, keys)
    arms = sorted({key[-1] for key in figures})
    reference = reference_arm(arms)
    samples = {key: f.sample for key, f in figures.items()}
    per_slice = {key[:-1]: f.summary["n"] for key, f in figures.items() if key[-1] == reference}
    ratios = pair_ratios(samples, reference) if reference else {}
    missing, spend = _costs(run, figures)
    replicates = _Replicates(samples, n_boot=n_boot, seed=seed)
    pairs = (
        pair_divergence(run, keys, reference, embedder, traces_per_slice=per_slice)
        if reference
        else {}
    )
    ordered = sorted(figures, key=_order)
    compared = [k for k in ordered if reference is not None and k[-1] != reference]
    pvalues = {
        key: _tests(figures.get(_base(key, reference)), figures[key],
                    samples.get(_base(key, reference)), samples.get(key))
        for key in compared
    }  # fmt: skip
    qvalues = _adjust([pvalues[key] for key in compared])
    position = {key: i for i, key in enumerate(compared)}
    groups: list[GroupResult] = []
    for key in ordered:
        fig = figures[key]
        values: dict[str, Any] = {name: _clean(v) for name, v in fig.summary.items()}
        values.update({n: _clean(v) for n, v in fig.extra.items() if n not in ("models", "errors")})
        values.update({name: _clean(v) for name, v in fig.attempt.items()})
        values.update(gaps.get(key, {"itl_p50_ms": None, "itl_p95_ms": None}))
        monthly, reason = spend.get(key, (None, "no attempts"))
        own = missing.get(key, {})
        values["monthly_spend_usd"] = _clean(monthly)
        pinned = settings.pin_models.get(key[-1])
        common: dict[str, Any] = {
            "slice": dict(zip(keys, key[:-1], strict=True)),
            "arm": key[-1],
            "models": fig.extra["models"],
            "errors": fig.extra["errors"],
            "model_mismatches": None
            if pinned is None
            else sum(n for m, n in fig.extra["models"].items() if m != pinned),
            "unpriced": own,
            "spend_reason": unpriced_reason(own) if own else reason,
        }
        if key not in pvalues:
            groups.append(
                GroupResult(**common, values=values, too_small=values["n"] < settings.min_samples)
            )
            continue
        base_key = _base(key, reference)
        base = figures.get(base_key)
        divergence, bounds, flagged = _divergence_figures(pairs, key, settings)
        values.update(divergence)
        ratio = ratios.get(key, {})
        values.update(_paired_values(ratio))
        base_reps = replicates.get(base_key) if base is not None else None
        cand_reps = replicates.get(key)
        scale = _scale(cand_reps, fig)
        base_n = base.summary["n"] if base is not None else 0
        too_small = min(base_n, values["n"]) < settings.min_samples
        groups.append(
            GroupResult(
                **common,
                values=values,
                too_small=too_small,
                compared=True,
                bounds=bounds,
                divergence_flagged=None if too_small else flagged,
                delta=_mark_incomplete(
                    _deltas(base, fig, base_reps, cand_reps, scale, ratio),
                    {key[-1]: own, str(reference): missing.get(base_key, {})},
                ),
                tests={
                    name: TestResult(p=p, q=qvalues[name][position[key]])
                    for name, p in pvalues[key].items()
                },
                ok_rate_change=_ok_rate_points(base, fig, base_reps, cand_reps, scale),
                interval_sample=_interval_sample(cand_reps, fig, scale),
            )
        )
    fid = fidelity(run, arms, n_boot=n_boot, seed=seed)
    return AnalysisResult(
        run_id=run.run_id,
        baseline_arm=reference,
        by=keys,
        divergence_kind=kind(embedder),
        thresholds=Thresholds(
            slo=slo.as_dict(),
            min_samples=settings.min_samples,
            flag_abs=settings.flag_abs,
            flag_rel=settings.flag_rel,
            pin_models=dict(settings.pin_models),
        ),
        groups=groups,
        fidelity=fid,
        alarms=_alarms(groups, fid, settings),
        sample=divergence_sample(run, reference, embedder) if sample else None,
    )


def _base(key: tuple[str, ...], reference: str | None) -> tuple[str, ...]:
    return (*key[:-1], str(reference))


def _order(key: tuple[str, ...]) -> tuple[Any, ...]:
    rank = {"baseline": 0, "production": 0, "candidate": 1, "baseline_repeat": 2}
    return (*key[:-1], rank.get(key[-1], 3), key[-1])


class _Replicates:
    """The paired bootstrap of each slice (weights shared by its arms), each arm's statistics
    computed once (the reference's serve every arm compared with it)."""

    def __init__(
        self,
        samples: Mapping[tuple[str, ...], Mapping[str, np.ndarray]],
        *,
        n_boot: int,
        seed: int,
    ) -> None:
        self._samples = samples
        self._n_boot = n_boot
        self._seed = seed
        self._boots: dict[tuple[str, ...], PairedBootstrap] = {}
        self._arms: dict[tuple[str, ...], ArmReplicates] = {}
        arms: dict[tuple[str, ...], list[np.ndarray]] = {}
        for key, sample in samples.items():
            if sample and "trace" in sample:
                arms.setdefault(key[:-1], []).append(sample["trace"])
        # Each slice's traces, in order (most often every arm has the same ones).
        self._traces = {
            key: found[0]
            if all(t.size == found[0].size and np.all(t == found[0]) for t in found[1:])
            else np.unique(np.concatenate(found))
            for key, found in arms.items()
        }
        # One weight matrix for every slice (each slice only needs its own traces' weights
        # independent), as wide as the largest slice's sample.
        self._weights: np.ndarray | None = None

    def _boot(self, slice_key: tuple[str, ...]) -> PairedBootstrap:
        """The slice's bootstrap (made once; every slice shares one weight matrix)."""
        boot = self._boots.get(slice_key)
        if boot is None:
            if self._weights is None:
                width = max(t.size for t in self._traces.values())
                self._weights = poisson_weights(self._n_boot, width, self._seed)
            boot = self._boots[slice_key] = PairedBootstrap(
                self._traces[slice_key],
                n_boot=self._n_boot,
                seed=self._seed,
                weights=self._weights,
            )
        return boot

    def get(self, key: tuple[str, ...]) -> ArmReplicates | None:
        sample = self._samples.get(key)
        if sample is None or "trace" not in sample:
            return None
        if key not in self._arms:
            boot = self._boot(key[:-1])
            self._arms[key] = boot.arm(sample)
        return self._arms[key]


def _scale(reps: ArmReplicates | None, fig: GroupFigures) -> float:
    """√(sampled / all requests) of a group: how much narrower the full run's spread is."""
    n = fig.summary.get("n") or 0
    if reps is None or not reps.size or not n:
        return 1.0
    return math.sqrt(min(1.0, reps.size / n))


def _interval_sample(
    reps: ArmReplicates | None, fig: GroupFigures, scale: float
) -> dict[str, Any] | None:
    """What the group's bootstrap intervals used: ``requests`` of the arm in the slice's
    hash-chosen sample, ``of`` its requests, and ``scale`` = √(requests / of) (1 when every
    request is in the sample)."""
    if reps is None:
        return None
    return {"requests": reps.size, "of": fig.summary.get("n") or 0, "scale": scale}


def _costs(
    run: Run, figures: Mapping[tuple[str, ...], GroupFigures]
) -> tuple[
    dict[tuple[str, ...], dict[str, int]], dict[tuple[str, ...], tuple[float | None, str | None]]
]:
    """Per (slice values..., arm): the unpriced models with their attempts, and the monthly
    spend projection with its reason when n/a (:mod:`analysis.cost`; read in the same pass
    as the per-attempt figures)."""
    missing = {key: dict(f.unpriced) for key, f in figures.items() if f.unpriced}
    costs = [f.cost for f in figures.values() if f.cost is not None]
    spend = {
        (*p.group, p.arm): (p.monthly_usd, p.reason)
        for p in project_spend(costs, recorded_span(run))
    }
    return missing, spend


def _mark_incomplete(
    deltas: dict[str, Change], unpriced_by_arm: Mapping[str, Mapping[str, int]]
) -> dict[str, Change]:
    """The changes of priced figures, marked incomplete when either arm had unpriced
    attempts (the reason names each arm's models)."""
    reasons = [unpriced_reason(found, arm) for arm, found in unpriced_by_arm.items() if found]
    if not reasons:
        return deltas
    reason = "; ".join(reasons)
    return {
        name: replace(change, incomplete=reason) if FIGURES[name].priced else change
        for name, change in deltas.items()
    }


def _paired_values(ratio: Mapping[str, PairRatio]) -> dict[str, Any]:
    """``latency_ratio``, ``ttft_ratio`` (geometric means, as factors) and ``paired_n``."""
    out: dict[str, Any] = {"latency_ratio": None, "ttft_ratio": None, "paired_n": None}
    for name, column in (("latency_ratio", "latency_ms"), ("ttft_ratio", "ttft_ms")):
        found = ratio.get(column)
        if found is not None and found.n and found.mean is not None:
            out[name] = math.exp(found.mean)
    latency = ratio.get("latency_ms")
    out["paired_n"] = latency.n if latency is not None else None
    return out


def _deltas(
    base: GroupFigures | None,
    cand: GroupFigures,
    base_reps: ArmReplicates | None,
    cand_reps: ArmReplicates | None,
    scale: float,
    ratio: Mapping[str, PairRatio],
) -> dict[str, Change]:
    deltas: dict[str, Change] = {}
    for figure in DELTA_FIGURES:
        if figure in ("latency_ratio", "ttft_ratio"):
            found = ratio.get("latency_ms" if figure == "latency_ratio" else "ttft_ms")
            change, lo, hi = (
                (None, None, None)
                if found is None
                else log_ratio_interval(found.n, found.mean, found.var)
            )
            deltas[figure] = Change(change=_clean(change), lo=_clean(lo), hi=_clean(hi))
            continue
        lo = hi = None
        b_point = base.summary.get(figure) if base is not None else None
        c_point = cand.summary.get(figure)
        change = c_point / b_point - 1.0 if b_point and c_point is not None else None
        if change is not None and change > -1.0 and base_reps and cand_reps:
            lo, hi = _log_interval(figure, math.log1p(change), base_reps, cand_reps, scale)
        deltas[figure] = Change(change=_clean(change), lo=_clean(lo), hi=_clean(hi))
    return deltas


def _log_interval(
    figure: str, point: float, base: ArmReplicates, cand: ArmReplicates, scale: float
) -> tuple[float | None, float | None]:
    """The paired interval of a relative change, resampled as log candidate − log reference."""
    if figure not in base.reps or figure not in cand.reps:
        return None, None
    b_center, c_center = base.center[figure], cand.center[figure]
    if not (b_center > 0 and c_center > 0):
        return None, None
    with np.errstate(divide="ignore", invalid="ignore"):
        reps = np.log(cand.reps[figure]) - np.log(base.reps[figure])
    center = math.log(c_center / b_center)
    if figure in QUANTILE_FIGURES:
        beyond = min(base.size, cand.size) * (1 - QUANTILE_FIGURES[figure][1])
        lo, hi = quantile_interval(point, center, reps, scale, beyond=beyond)
    else:
        lo, hi = scaled_interval(point, center, reps, scale)
    if lo is None or hi is None:
        return None, None
    return math.expm1(lo), math.expm1(hi)


def _ok_rate_points(
    base: GroupFigures | None,
    cand: GroupFigures,
    base_reps: ArmReplicates | None,
    cand_reps: ArmReplicates | None,
    scale: float,
) -> Change:
    """The ok rate's change in percentage points, with its paired 95% interval."""
    if base is None:
        return Change(change=None, lo=None, hi=None)
    p1, p2 = base.summary.get("ok_rate"), cand.summary.get("ok_rate")
    if p1 is None or p2 is None:
        return Change(change=None, lo=None, hi=None)
    diff = (p2 - p1) * 100
    if not base_reps or not cand_reps or "ok_rate" not in base_reps.reps:
        return Change(change=diff, lo=None, hi=None)
    center = (cand_reps.center["ok_rate"] - base_reps.center["ok_rate"]) * 100
    reps = (cand_reps.reps["ok_rate"] - base_reps.reps["ok_rate"]) * 100
    lo, hi = scaled_interval(diff, center, reps, scale)
    return Change(change=diff, lo=_clean(lo), hi=_clean(hi))


def _tests(
    base: GroupFigures | None,
    cand: GroupFigures,
    base_rows: dict[str, np.ndarray] | None,
    cand_rows: dict[str, np.ndarray] | None,
) -> dict[str, float | None]:
    """The p-value of each test of :data:`_TESTS` (None where it cannot run)."""
    p: dict[str, float | None] = dict.fromkeys(_TESTS)
    if base is not None:
        n_b, n_c = int(base.summary["n"] or 0), int(cand.summary["n"] or 0)
        if n_b and n_c:
            ok_b = round((base.summary["ok_rate"] or 0.0) * n_b)
            ok_c = round((cand.summary["ok_rate"] or 0.0) * n_c)
            p["ok_fisher"] = fisher_ok(ok_b, n_b, ok_c, n_c)
    if base_rows is not None and cand_rows is not None:
        for name, column, test in (
            ("latency_mann_whitney", "latency_ms", mann_whitney),
            ("completion_tokens_ks", "completion_tokens", ks_two_sample),
        ):
            b, c = base_rows[column], cand_rows[column]
            b, c = b[~np.isnan(b)], c[~np.isnan(c)]
            if b.size >= 2 and c.size >= 2:
                p[name] = _clean(test(b, c))
    return p


def _adjust(pvalues: Sequence[Mapping[str, float | None]]) -> dict[str, list[float | None]]:
    """Benjamini-Hochberg q-values per test, across every compared group of the run (in the
    order of ``pvalues``)."""
    out: dict[str, list[float | None]] = {}
    for name in _TESTS:
        values = [math.nan if (v := p[name]) is None else v for p in pvalues]
        out[name] = [_clean(float(q)) for q in benjamini_hochberg(values)]
    return out


def _divergence_figures(
    pairs: Mapping[tuple[str, ...], tuple[list[str], np.ndarray]],
    key: tuple[str, ...],
    settings: AnalysisConfig,
) -> tuple[dict[str, Any], dict[str, tuple[float | None, float | None]], bool | None]:
    """The divergence figures of a compared group, the excess's interval, and its flag.

    The excess's interval pairs the candidate's and the baseline_repeat's divergence by trace
    (a normal interval on the per-trace differences), unpaired when too few traces share both.
    """
    found = pairs.get(key)
    out: dict[str, Any] = dict.fromkeys(
        ("divergence_mean", "divergence_p95", "divergence_n", "noise_floor", "excess_divergence")
    )
    if found is None or not np.isfinite(found[1]).any():
        return out, {}, None
    traces, values = found
    out["divergence_mean"] = float(np.nanmean(values))
    out["divergence_p95"] = float(np.nanpercentile(values, 95))
    out["divergence_n"] = int(np.isfinite(values).sum())
    noise = pairs.get((*key[:-1], "baseline_repeat"))
    if key[-1] == "baseline_repeat" or noise is None or not np.isfinite(noise[1]).any():
        return out, {}, None
    floor = float(np.nanmean(noise[1]))
    excess = out["divergence_mean"] - floor
    repeat = dict(zip(noise[0], noise[1].tolist(), strict=True))
    common = [(v, repeat[t]) for t, v in zip(traces, values.tolist(), strict=True) if t in repeat]
    lo, hi = paired_difference_ci(excess, [c for c, _ in common], [r for _, r in common])
    if lo is None or hi is None:
        _, lo, hi = mean_difference_ci(values, noise[1])
    out.update(noise_floor=floor, excess_divergence=excess)
    flagged = bool(excess >= settings.flag_abs and excess >= settings.flag_rel * floor)
    return out, {"excess_divergence": (_clean(lo), _clean(hi))}, flagged


def _alarms(
    groups: Sequence[GroupResult], fid: Mapping[str, Any] | None, settings: AnalysisConfig
) -> list[str]:
    alarms: list[str] = []
    for arm, model in sorted(settings.pin_models.items()):
        seen: dict[str, int] = {}
        for group in groups:
            if group.arm == arm:
                for name, count in group.models.items():
                    seen[name] = seen.get(name, 0) + count
        wrong = {name: n for name, n in seen.items() if name != model}
        if wrong:
            listed = ", ".join(f"{name!r} ({n})" for name, n in sorted(wrong.items()))
            alarms.append(
                f"{arm}: {sum(wrong.values())} of {sum(seen.values())} responses report model "
                f"{listed}, not the pinned {model!r}"
            )
    if fid is not None and not fid["faithful"]:
        change = fid["latency_p50_change"]["change"]
        alarms.append(
            f"replay fidelity: the replayed baseline's p50 latency is {change:+.0%} vs production"
            f" and statuses agree on {fid['status_agreement']:.0%} of traces; check the baseline"
            " URL and its load before trusting the candidate's delta"
        )
    return alarms


def _clean(value: Any) -> Any:
    """JSON-safe: NaN and infinities become null; numpy scalars become Python numbers."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
