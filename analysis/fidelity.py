"""Replay fidelity: does the replayed baseline behave like production did?

Before trusting a candidate's delta, a user should know whether the harness reproduces
production at all (same pipeline, same traffic: the replayed baseline should show about the
latency and status mix production showed). Production's side comes from the ``production`` arm
when the run has one (a live mirror that also replayed a baseline), else from what the sidecar
captured: ``traces.production_latency_ms`` and ``production_status``. Only traces with both
sides count, each on its first attempt.

The figures: n, p50/p95/p99 latency of each side with the relative change of the baseline vs
production (95% interval: bootstrap for small samples, order statistics from 2,000), and the
status agreement (share of traces where both sides succeeded or both failed, by HTTP class).
``faithful`` is false when the interval of the p50 change lies wholly outside ±:data:`TOLERANCE`.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, Final, Literal

import numpy as np

from analysis.sql import Queryable
from analysis.stats import bootstrap_delta, quantile_ratio_ci

__all__ = ["TOLERANCE", "fidelity"]

TOLERANCE: Final = 0.25
_SAMPLE: Final = 20_000
_ORDER_STATISTIC_MIN_N: Final = 2_000


def _pairs_sql(arms: Collection[str]) -> str:
    if "baseline" not in arms:
        return ""
    if "production" in arms:
        return (
            "SELECT p.latency_ms AS prod, b.latency_ms AS base,"
            " p.status AS prod_status, b.status AS base_status FROM run_results AS b"
            " JOIN run_results AS p ON p.trace_id = b.trace_id AND p.arm = 'production'"
            " AND p.attempt = 0 WHERE b.arm = 'baseline' AND b.attempt = 0"
            " AND p.latency_ms IS NOT NULL AND b.latency_ms IS NOT NULL"
        )
    return (
        "SELECT t.production_latency_ms AS prod, b.latency_ms AS base,"
        " t.production_status AS prod_status, b.status AS base_status FROM run_results AS b"
        " JOIN traces AS t ON t.run_id = b.run_id AND t.trace_id = b.trace_id"
        " WHERE b.arm = 'baseline' AND b.attempt = 0"
        " AND t.production_latency_ms IS NOT NULL AND b.latency_ms IS NOT NULL"
    )


def fidelity(
    run: Queryable, arms: Collection[str], *, n_boot: int = 1000, seed: int = 0
) -> dict[str, Any] | None:
    """The replay-fidelity figures of ``run`` (whose arms are ``arms``), or None when it has
    nothing to compare."""
    pairs = _pairs_sql(arms)
    if not pairs:
        return None
    head = run.records(
        "SELECT count(*) AS n, quantile_cont(prod, [0.5, 0.95, 0.99]) AS p,"
        " quantile_cont(base, [0.5, 0.95, 0.99]) AS b,"
        " avg(CASE WHEN (coalesce(prod_status, 0) BETWEEN 200 AND 299)"
        " = (coalesce(base_status, 0) BETWEEN 200 AND 299) THEN 1.0 ELSE 0.0 END) AS agree"
        f" FROM ({pairs})"
    )[0]
    n = int(head["n"])
    if n == 0:
        return None
    sample = run.records(
        f"SELECT prod, base FROM ({pairs}) USING SAMPLE reservoir({_SAMPLE} ROWS) REPEATABLE (7)"
    )
    prod = np.asarray([r["prod"] for r in sample], dtype=float)
    base = np.asarray([r["base"] for r in sample], dtype=float)
    out: dict[str, Any] = {"n": n, "status_agreement": head["agree"]}
    names: tuple[Literal["p50", "p95", "p99"], ...] = ("p50", "p95", "p99")
    for i, name in enumerate(names):
        p, b = head["p"][i], head["b"][i]
        out[f"production_latency_{name}_ms"] = p
        out[f"baseline_latency_{name}_ms"] = b
        if min(prod.size, base.size) >= _ORDER_STATISTIC_MIN_N:
            _, lo, hi = quantile_ratio_ci(prod, base, (0.5, 0.95, 0.99)[i])
        elif prod.size >= 2:
            _, lo, hi = bootstrap_delta(prod, base, name, n_boot=n_boot, seed=seed)
        else:
            lo = hi = float("nan")
        change = b / p - 1.0 if p else None
        out[f"latency_{name}_change"] = {
            "change": change,
            "lo": lo if np.isfinite(lo) else None,
            "hi": hi if np.isfinite(hi) else None,
        }
    p50 = out["latency_p50_change"]
    outside = p50["lo"] is not None and (p50["lo"] > TOLERANCE or p50["hi"] < -TOLERANCE)
    out["faithful"] = not outside and (head["agree"] or 0.0) >= 1.0 - TOLERANCE
    return out
