"""The figures ``shadow analyze`` prints: per (slice, arm) summaries, deltas vs the baseline,
tests, divergence with its noise floor, replay fidelity and alarms.

The result is an :class:`~analysis.result.AnalysisResult`; its JSON (``to_json()``; see
``docs/architecture.md``, "Results") is ``{"run_id": ..., "groups": [...]}``; each group has
``slice``, ``arm``, the summary figures of :meth:`analysis.run.Run.summary`, and for every arm
but the reference (``baseline``, or ``production`` in a live-mirror run) a ``delta`` object: for
each latency and cost figure, the relative change (``change`` = candidate / baseline − 1, always
from the exact figures) with a 95% interval (``lo``, ``hi``). Which interval applies:

- quantiles (latency, TTFT p50/p95/p99): distribution-free order-statistic intervals computed
  in DuckDB once both arms have :data:`~analysis.aggregates.GRID_BASE` (2,000) values; a
  percentile bootstrap (1,000 resamples, vectorised) on the rows below that;
- cost per success: the delta method on per-group sums from 2,000 attempts per arm, the
  bootstrap below.

Beyond the summary's keys, each group carries (see :mod:`analysis.aggregates`): ``tpot_p95_ms``,
``itl_p50_ms``/``itl_p95_ms`` (per-chunk gaps; TPOT is the (latency − ttft) / (tokens − 1)
convention), schedule lag p50/p99, output-token p50/p95/mean, ``goodput`` (share of attempts
that are ok and meet the SLOs) and ``goodput_rps``, ``models`` and ``errors`` (counts by class),
``too_small`` (fewer than ``min_samples`` attempts on either side); and for compared arms
``tests`` — Mann-Whitney U on latency, Fisher exact on ok, Kolmogorov-Smirnov on output tokens,
each with a Benjamini-Hochberg ``q`` across the run's compared groups — plus
``excess_divergence_lo``/``_hi`` and ``divergence_flagged`` (excess >= ``flag_abs`` and >=
``flag_rel`` × the noise floor). Top level: ``fidelity`` (:mod:`analysis.fidelity`),
``flagged`` slices, ``alarms`` (model-pin mismatches, unfaithful replay) and the thresholds used.

Tests use a hash-chosen sample of up to :data:`~analysis.aggregates.SAMPLE_ROWS` rows per group
(a test on a random subset is still a valid test; at that size it detects any shift that matters).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Final

import numpy as np

from analysis.aggregates import (
    GRID_BASE,
    GroupFigures,
    Slo,
    chunk_gaps,
    group_figures,
)
from analysis.divergence import kind
from analysis.embedders.base import Embedder
from analysis.fidelity import fidelity
from analysis.figures import DELTA_FIGURES
from analysis.pairs import divergence_sample, pair_divergence, reference_arm
from analysis.result import AnalysisResult, Change, GroupResult, TestResult, Thresholds
from analysis.run import Run
from analysis.sql import check_slice_names
from analysis.stats import (
    benjamini_hochberg,
    bootstrap_delta,
    cost_per_success_ratio_delta,
    fisher_ok,
    ks_two_sample,
    mann_whitney,
    mean_difference_ci,
    ratio_ci_cost_per_success,
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
        by: slice names to group by.
        n_boot: bootstrap resamples for the intervals of small samples.
        embedder: semantic divergence; None measures it lexically.
        settings: SLOs, pins and thresholds.
        sample: also keep the report's divergence sample
            (:func:`analysis.pairs.divergence_sample`) in ``result.sample``.
    """
    settings = settings or AnalysisConfig()
    keys = list(by)
    check_slice_names(keys)
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
        values.update(gaps.get(key, {"itl_p50_ms": None, "itl_p95_ms": None}))
        pinned = settings.pin_models.get(key[-1])
        common: dict[str, Any] = {
            "slice": dict(zip(keys, key[:-1], strict=True)),
            "arm": key[-1],
            "models": fig.extra["models"],
            "errors": fig.extra["errors"],
            "model_mismatches": None
            if pinned is None
            else sum(n for m, n in fig.extra["models"].items() if m != pinned),
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
                delta=_deltas(
                    base, fig, samples.get(base_key), samples.get(key), n_boot=n_boot, seed=seed
                ),
                tests={
                    name: TestResult(p=p, q=qvalues[name][position[key]])
                    for name, p in pvalues[key].items()
                },
                ok_rate_change=_ok_rate_points(base, fig),
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


def _deltas(
    base: GroupFigures | None,
    cand: GroupFigures,
    base_rows: dict[str, np.ndarray] | None,
    cand_rows: dict[str, np.ndarray] | None,
    *,
    n_boot: int,
    seed: int,
) -> dict[str, Change]:
    deltas: dict[str, Change] = {}
    for figure in DELTA_FIGURES:
        lo = hi = None
        b_point = base.summary.get(figure) if base is not None else None
        c_point = cand.summary.get(figure)
        change = c_point / b_point - 1.0 if b_point and c_point is not None else None
        if base is not None and change is not None:
            lo, hi = _interval(figure, base, cand, base_rows, cand_rows, n_boot, seed)
        deltas[figure] = Change(change=_clean(change), lo=_clean(lo), hi=_clean(hi))
    return deltas


def _ok_rate_points(base: GroupFigures | None, cand: GroupFigures) -> Change:
    """The ok rate's change in percentage points, with a 95% normal-approximation interval."""
    if base is None:
        return Change(change=None, lo=None, hi=None)
    p1, n1 = base.summary.get("ok_rate"), base.summary.get("n")
    p2, n2 = cand.summary.get("ok_rate"), cand.summary.get("n")
    if p1 is None or p2 is None or not n1 or not n2:
        return Change(change=None, lo=None, hi=None)
    diff = (p2 - p1) * 100
    se = math.sqrt(p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2) * 100
    return Change(change=diff, lo=diff - 1.96 * se, hi=diff + 1.96 * se)


def _interval(
    figure: str,
    base: GroupFigures,
    cand: GroupFigures,
    base_rows: dict[str, np.ndarray] | None,
    cand_rows: dict[str, np.ndarray] | None,
    n_boot: int,
    seed: int,
) -> tuple[float | None, float | None]:
    if figure == "cost_per_success_usd":
        if min(base.cost_sums[0], cand.cost_sums[0]) >= GRID_BASE:
            _, lo, hi = cost_per_success_ratio_delta(base.cost_sums, cand.cost_sums)
            return lo, hi
        if base_rows is None or cand_rows is None:
            return None, None
        if base_rows["ok"].sum() == 0 or cand_rows["ok"].sum() == 0:
            return None, None
        _, lo, hi = ratio_ci_cost_per_success(
            base_rows["cost_usd"], base_rows["ok"], cand_rows["cost_usd"], cand_rows["ok"],
            n_boot=n_boot, seed=seed,
        )  # fmt: skip
        return lo, hi
    if figure in base.bounds and figure in cand.bounds:
        lo_b, hi_b = base.bounds[figure]
        lo_c, hi_c = cand.bounds[figure]
        if lo_b <= 0:
            return None, None
        return lo_c / hi_b - 1.0, hi_c / lo_b - 1.0
    if base_rows is None or cand_rows is None:
        return None, None
    column = figure.rpartition("_p")[0] + "_ms"  # latency_p99_ms -> latency_ms
    b, c = base_rows[column], cand_rows[column]
    b, c = b[~np.isnan(b)], c[~np.isnan(c)]
    if not (b.size and c.size):
        return None, None
    stat = figure.rpartition("_")[0].rpartition("_")[2]  # latency_p99_ms -> p99
    _, lo, hi = bootstrap_delta(b, c, stat, n_boot=n_boot, seed=seed)  # type: ignore[arg-type]
    return lo, hi


def _tests(
    base: GroupFigures | None,
    cand: GroupFigures,
    base_rows: dict[str, np.ndarray] | None,
    cand_rows: dict[str, np.ndarray] | None,
) -> dict[str, float | None]:
    """The p-value of each test of :data:`_TESTS` (None where it cannot run)."""
    p: dict[str, float | None] = dict.fromkeys(_TESTS)
    if base is not None:
        n_b, _, _, _, ok_b = base.cost_sums
        n_c, _, _, _, ok_c = cand.cost_sums
        if n_b and n_c:
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
    pairs: Mapping[tuple[str, ...], np.ndarray], key: tuple[str, ...], settings: AnalysisConfig
) -> tuple[dict[str, Any], dict[str, tuple[float | None, float | None]], bool | None]:
    """The divergence figures of a compared group, the excess's interval, and its flag."""
    values = pairs.get(key)
    out: dict[str, Any] = dict.fromkeys(
        ("divergence_mean", "divergence_p95", "divergence_n", "noise_floor", "excess_divergence")
    )
    if values is None or not np.isfinite(values).any():
        return out, {}, None
    out["divergence_mean"] = float(np.nanmean(values))
    out["divergence_p95"] = float(np.nanpercentile(values, 95))
    out["divergence_n"] = int(np.isfinite(values).sum())
    noise = pairs.get((*key[:-1], "baseline_repeat"))
    if key[-1] == "baseline_repeat" or noise is None or not np.isfinite(noise).any():
        return out, {}, None
    floor = float(np.nanmean(noise))
    _, lo, hi = mean_difference_ci(values, noise)
    excess = out["divergence_mean"] - floor
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
