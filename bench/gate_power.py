"""How often the gate's verdicts are right: A/A false fails, power and coverage (issue 11).

Simulated paired traffic (``bench/_power_sim.py``: a per-trace effect, lognormal σ 0.6 or a
heavy-tailed Student t₃ of the same spread, times per-call noise σ 0.25 on each arm) is judged
by the rules the way ``shadow gate`` judges them (:func:`analysis.verdicts.settle`: ``pass``
when the 95% interval lies wholly within the bound, ``fail`` wholly beyond, ``inconclusive``
when it straddles):

- ``latency_p50/p95/p99_ms`` with ``max_increase_pct = 10``, by (a) the **paired** interval
  the analyzer now computes (:class:`analysis.paired.PairedBootstrap`, 1,000 Poisson
  replicates shared by both arms, on a random sample of at most
  :data:`analysis.aggregates.SAMPLE_TRACES` traces, its spread scaled by √(m / n) around the
  exact change of all n; the same steps as ``analysis.analyze``) and (b) the **old unpaired**
  one (:func:`analysis.stats.bootstrap_delta`, each arm resampled on its own, below 2,000
  traces; the order-statistic :func:`analysis.stats.quantile_ratio_ci` from 2,000 on, as the
  analyzer did before issue 11);
- ``latency_ratio`` with ``max_increase_pct = 5``: the geometric mean of candidate / baseline
  with :func:`analysis.paired.log_ratio_interval` (Student t on the per-trace log ratios).

Shifts 0 (A/A), +10%, +20%, +30%, uniform or tail-only (the slowest tenth of traces slowed),
and the ``latency_ratio`` target's cell (uniform +15% at n = 400). Per cell and rule: the share
of runs that ``fail`` (the false-fail rate under A/A, the power otherwise), that are
``inconclusive``, and the interval's coverage of the true change. Targets: A/A false-fail
<= 5%; ``latency_ratio`` (+5% rule) fails a uniform +15% at n = 400 in >= 95% of runs;
coverage 93-97%. Writes bench/results/gate_power.json.

    python bench/gate_power.py [--runs 200] [--large-runs 60] [--sizes 150,500,2000,20000]
                               [--seed 0] [--jobs 1] [--sample-traces 4000]

``--sample-traces 2000 --sizes 20000`` checks the m-out-of-n rescaling with the sample a tenth
of the run (the analyzer samples 4,000 traces per slice); ``latency_ratio`` is computed on the
same sample, as the analyzer does.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _power_sim import DISTS, KINDS, Dist, Kind, simulate, true_change  # noqa: E402

from analysis.aggregates import SAMPLE_TRACES  # noqa: E402
from analysis.paired import (  # noqa: E402
    ArmReplicates,
    PairedBootstrap,
    log_ratio_interval,
    quantile_interval,
)
from analysis.stats import bootstrap_delta, quantile_ratio_ci  # noqa: E402
from analysis.verdicts import min_samples, settle  # noqa: E402
from shadow.config import GateRule  # noqa: E402

QUANTILES: Final = {"p50": 0.50, "p95": 0.95, "p99": 0.99}
QUANTILE_BOUND: Final = 0.10  # max_increase_pct = 10
RATIO_BOUND: Final = 0.05  # latency_ratio, max_increase_pct = 5
OLD_SWITCH: Final = 2_000  # the old analyzer's order-statistic intervals from this n (GRID_BASE)
N_BOOT: Final = 1_000
SHIFTS: Final = (0.0, 0.10, 0.20, 0.30)
RATIO_TARGET: Final = (400, 0.15)  # latency_ratio must catch a uniform +15% at n = 400
METHODS: Final = (
    ("p50", "paired"),
    ("p50", "unpaired"),
    ("p95", "paired"),
    ("p95", "unpaired"),
    ("p99", "paired"),
    ("p99", "unpaired"),
    ("ratio", "paired"),
)
"""(figure, interval) judged in every cell, in the table's column order."""
FALSE_FAIL_MAX: Final = 0.05
_LISTED: Final = 12  # clear coverage misses printed (all are in the JSON)
RATIO_POWER_MIN: Final = 0.95
COVERAGE: Final = (0.93, 0.97)


@dataclass(frozen=True)
class Cell:
    dist: Dist
    kind: Kind
    shift: float
    n: int
    runs: int
    cap: int = SAMPLE_TRACES
    """Traces of the paired sample (the analyzer's :data:`SAMPLE_TRACES`; lower with
    ``--sample-traces`` to check the √(m / n) rescaling far below n)."""

    @property
    def key(self) -> str:
        return f"{self.dist}/{self.kind}/{self.shift:+.0%}/n={self.n}"


@dataclass
class Tally:
    """One (figure, method)'s verdicts over a cell's runs."""

    bound: float
    truth: float
    counts: dict[str, int] = field(
        default_factory=lambda: {"pass": 0, "fail": 0, "inconclusive": 0, "none": 0}
    )
    covered: int = 0
    widths: list[float] = field(default_factory=list)

    def add(self, lo: float | None, hi: float | None) -> None:
        if lo is None or hi is None or not (math.isfinite(lo) and math.isfinite(hi)):
            self.counts["none"] += 1
            return
        self.counts[settle(lo, hi, upper=self.bound)] += 1
        self.covered += lo <= self.truth <= hi
        self.widths.append(hi - lo)

    def summary(self, runs: int) -> dict[str, Any]:
        judged = runs - self.counts["none"]
        return {
            "bound": self.bound,
            "true_change": self.truth,
            "fail": self.counts["fail"] / runs,
            "inconclusive": self.counts["inconclusive"] / runs,
            "pass": self.counts["pass"] / runs,
            "no_interval": self.counts["none"] / runs,
            "coverage": self.covered / judged if judged else None,
            "median_width": float(np.median(self.widths)) if self.widths else None,
        }


def _sampled(n: int, cap: int, seed: int) -> npt.NDArray[np.int64]:
    """The traces of the analyzer's sample: every one up to ``cap``, else a random subset (the
    analyzer's is hash-chosen)."""
    if n <= cap:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, cap, replace=False))


def _paired_quantiles(
    base: npt.NDArray[np.float64], cand: npt.NDArray[np.float64], seed: int, cap: int
) -> dict[str, tuple[float | None, float | None]]:
    """The analyzer's paired interval of each quantile's change (``analysis.analyze``'s steps:
    the sample's replicates, log candidate − log baseline, scaled around the exact change)."""
    n = base.size
    traces = _sampled(n, cap, seed)
    ids = traces.astype(object)
    boot = PairedBootstrap(ids, n_boot=N_BOOT, seed=seed)
    arms: list[ArmReplicates] = []
    for values in (base, cand):
        sample = {
            "trace": ids,
            "latency_ms": values[traces],
            "ttft_ms": np.full(traces.size, np.nan),
            "ok": np.ones(traces.size, dtype=bool),
            "cost_usd": np.zeros(traces.size),
            "tokens": np.zeros(traces.size),
        }
        arms.append(boot.arm(sample))
    b_reps, c_reps = arms
    scale = math.sqrt(min(1.0, traces.size / n))
    out: dict[str, tuple[float | None, float | None]] = {}
    for name, q in QUANTILES.items():
        figure = f"latency_{name}_ms"
        point = math.log(float(np.quantile(cand, q)) / float(np.quantile(base, q)))
        center = math.log(c_reps.center[figure] / b_reps.center[figure])
        with np.errstate(divide="ignore", invalid="ignore"):
            reps = np.log(c_reps.reps[figure]) - np.log(b_reps.reps[figure])
        lo, hi = quantile_interval(point, center, reps, scale, beyond=traces.size * (1 - q))
        out[name] = (None, None) if lo is None or hi is None else (math.expm1(lo), math.expm1(hi))
    return out


def _unpaired_quantiles(
    base: npt.NDArray[np.float64], cand: npt.NDArray[np.float64], seed: int
) -> dict[str, tuple[float | None, float | None]]:
    """The old analyzer's unpaired intervals (bootstrap below 2,000, order statistics above)."""
    out: dict[str, tuple[float | None, float | None]] = {}
    for name, q in QUANTILES.items():
        if base.size < OLD_SWITCH:
            _, lo, hi = bootstrap_delta(base, cand, name, n_boot=N_BOOT, seed=seed)  # type: ignore[arg-type]
        else:
            _, lo, hi = quantile_ratio_ci(base, cand, q)
        out[name] = (lo, hi)
    return out


def _ratio(
    base: npt.NDArray[np.float64], cand: npt.NDArray[np.float64], seed: int, cap: int
) -> tuple[float | None, float | None]:
    """The analyzer's latency_ratio interval: Student t on the sample's per-trace log ratios."""
    traces = _sampled(base.size, cap, seed)
    logs = np.log(cand[traces]) - np.log(base[traces])
    _, lo, hi = log_ratio_interval(logs.size, float(logs.mean()), float(logs.var(ddof=1)))
    return lo, hi


def run_cell(cell: Cell, seed: int) -> dict[str, Any]:
    """Judge every rule of :data:`METHODS` on ``cell.runs`` simulated runs of the cell."""
    started = time.perf_counter()
    tallies = {
        (figure, method): Tally(
            bound=RATIO_BOUND if figure == "ratio" else QUANTILE_BOUND,
            truth=true_change(cell.dist, cell.kind, cell.shift, figure),
        )
        for figure, method in METHODS
    }
    entropy = [seed, DISTS.index(cell.dist), KINDS.index(cell.kind), round(cell.shift * 1000)]
    for run in range(cell.runs):
        rng = np.random.default_rng([*entropy, cell.n, run])
        traffic = simulate(cell.dist, cell.kind, cell.shift, cell.n, rng)
        boot_seed = int(rng.integers(2**31))
        b, c = traffic.baseline, traffic.candidate
        for name, (lo, hi) in _paired_quantiles(b, c, boot_seed, cell.cap).items():
            tallies[(name, "paired")].add(lo, hi)
        for name, (lo, hi) in _unpaired_quantiles(b, c, boot_seed).items():
            tallies[(name, "unpaired")].add(lo, hi)
        tallies[("ratio", "paired")].add(*_ratio(b, c, boot_seed, cell.cap))
    return {
        "dist": cell.dist,
        "kind": cell.kind,
        "shift": cell.shift,
        "n": cell.n,
        "runs": cell.runs,
        "seconds": round(time.perf_counter() - started, 2),
        "rules": {f"{f}/{m}": t.summary(cell.runs) for (f, m), t in tallies.items()},
    }


def cells(sizes: list[int], runs: int, large_runs: int, cap: int = SAMPLE_TRACES) -> Iterator[Cell]:
    """Every (distribution, shift, size) cell, then the ``latency_ratio`` target's cell."""
    for dist in DISTS:
        for kind in KINDS:
            for shift in SHIFTS:
                if shift == 0.0 and kind == "tail":
                    continue  # A/A is one cell
                for n in sizes:
                    yield Cell(dist, kind, shift, n, runs if n <= cap else large_runs, cap)
        n, shift = RATIO_TARGET
        if n not in sizes:
            yield Cell(dist, "uniform", shift, n, runs, cap)


def _mcse(p: float, runs: int) -> float:
    return math.sqrt(max(p * (1 - p), 1e-12) / runs)


def _entry(rule: dict[str, Any]) -> str:
    cover = rule["coverage"]
    shown = "  -" if cover is None else f"{cover * 100:3.0f}"
    return f"{rule['fail'] * 100:3.0f}/{rule['inconclusive'] * 100:3.0f}/{shown}"


def table(results: list[dict[str, Any]]) -> list[str]:
    """The printed table: a row per cell, per rule ``fail% / inconclusive% / coverage%``."""
    heads = [f"{f} {m[:6]}" for f, m in METHODS]
    lines = [
        "cell: dist kind shift n runs | per rule: fail% / inconclusive% / coverage% "
        "(bounds: quantiles +10%, ratio +5%)",
        f"{'dist':<9} {'kind':<7} {'shift':>5} {'n':>6} {'runs':>4} | "
        + " | ".join(f"{h:^11}" for h in heads),
    ]
    for r in results:
        row = " | ".join(_entry(r["rules"][f"{f}/{m}"]) for f, m in METHODS)
        lines.append(
            f"{r['dist']:<9} {r['kind']:<7} {r['shift']:>+5.0%} {r['n']:>6} {r['runs']:>4} | {row}"
        )
    return lines


def targets(results: list[dict[str, Any]]) -> tuple[list[str], dict[str, Any]]:
    """PASS/MISS per target; a MISS within two Monte-Carlo standard errors is marked ``*``."""
    lines: list[str] = []
    out: dict[str, Any] = {}

    def mark(ok: bool, near: bool) -> str:
        return "PASS" if ok else "MISS*" if near else "MISS"

    aa = [(r, key, rule) for r in results if r["shift"] == 0.0 for key, rule in r["rules"].items()]
    worst = max(aa, key=lambda x: x[2]["fail"])
    ok = all(rule["fail"] <= FALSE_FAIL_MAX for _, _, rule in aa)
    lines.append(
        f"{mark(ok, False)}  A/A false-fail <= 5%: worst {worst[2]['fail']:.1%} "
        f"({worst[1]}, {worst[0]['dist']}, n={worst[0]['n']}) over {len(aa)} rule cells"
    )
    out["aa_false_fail"] = {"pass": ok, "worst": worst[2]["fail"]}
    n, shift = RATIO_TARGET
    for r in results:
        if r["n"] == n and r["shift"] == shift and r["kind"] == "uniform":
            power = r["rules"]["ratio/paired"]["fail"]
            near = power + 2 * _mcse(power, r["runs"]) >= RATIO_POWER_MIN
            ok = power >= RATIO_POWER_MIN
            lines.append(
                f"{mark(ok, near)}  latency_ratio (+5% rule) fails a uniform +15% at n={n} "
                f"in >= 95% of runs: {power:.1%} ({r['dist']}, {r['runs']} runs)"
            )
            out[f"ratio_power_{r['dist']}"] = {"pass": ok, "power": power}
    for method in ("paired", "unpaired"):
        line, found = _coverage(results, method)
        lines += line
        out[f"coverage_{method}"] = found
    return lines, out


def _judged_from(figure: str) -> int:
    """The default ``min_samples`` of a rule on ``figure``: below it the gate does not judge
    (too_small), so the coverage target leaves those cells out (the table still shows them)."""
    metric = "latency_ratio" if figure == "ratio" else f"latency_{figure}_ms"
    return min_samples(GateRule(metric=metric, max_increase_pct=10))


def _coverage(results: list[dict[str, Any]], method: str) -> tuple[list[str], dict[str, Any]]:
    """Coverage 93-97% in every judged cell of ``method``'s rules (n at least the rule's default
    ``min_samples``): the share of cells in range, the
    pooled coverage per figure, and the cells outside the range by more than two Monte-Carlo
    standard errors (of a share at the nearer end of the range)."""
    lo, hi = COVERAGE
    rows = [
        (r, key, rule)
        for r in results
        for key, rule in r["rules"].items()
        if key.split("/")[1] == method
        and rule["coverage"] is not None
        and r["n"] >= _judged_from(key.split("/")[0])
    ]
    misses, clear = [], []
    pooled: dict[str, list[int]] = {}
    for r, key, rule in rows:
        judged = round(r["runs"] * (1 - rule["no_interval"]))
        hits = pooled.setdefault(key.split("/")[0], [0, 0])
        hits[0] += round(rule["coverage"] * judged)
        hits[1] += judged
        c = rule["coverage"]
        if lo <= c <= hi:
            continue
        misses.append((r, key, rule))
        end = lo if c < lo else hi
        if abs(c - end) > 2 * _mcse(end, judged):
            clear.append((r, key, rule))
    ok = not misses
    pooled_text = ", ".join(f"{f} {h / max(t, 1):.1%}" for f, (h, t) in pooled.items())
    lines = [
        f"{'PASS' if ok else 'MISS*' if not clear else 'MISS'}  coverage 93-97% ({method}): "
        f"{len(rows) - len(misses)} of {len(rows)} cells in range, {len(clear)} outside by more "
        f"than 2 MC s.e.; pooled over cells: {pooled_text}"
    ]
    shown = sorted(clear, key=lambda x: -abs(x[2]["coverage"] - 0.95))[:_LISTED]
    lines += [
        f"       {key:<14} {r['dist']:<9} {r['kind']:<7} {r['shift']:>+4.0%} n={r['n']:<6} "
        f"coverage {rule['coverage']:.1%} ({r['runs']} runs)"
        for r, key, rule in shown
    ]
    if len(clear) > len(shown):
        lines.append(f"       ... and {len(clear) - len(shown)} more (in the JSON's cells)")
    found = {
        "pass": ok,
        "cells": len(rows),
        "in_range": len(rows) - len(misses),
        "outside_2se": len(clear),
        "pooled": {f: h / max(t, 1) for f, (h, t) in pooled.items()},
    }
    return lines, found


def show(payload: dict[str, Any]) -> dict[str, Any]:
    """Print the table, the Monte-Carlo error and the targets; return the targets' verdicts."""
    results = payload["cells"]
    target_lines, verdicts = targets(results)
    mc = ", ".join(
        f"{runs} runs: ±{_mcse(0.5, runs):.1%} at 50%, ±{_mcse(0.95, runs):.1%} at 95%"
        for runs in sorted({r["runs"] for r in results}, reverse=True)
    )
    print("\n".join(table(results)))
    print(f"\nMonte-Carlo standard error of a share: {mc}")
    print("\n".join(target_lines))
    print(
        "MISS* = outside the target by no more than 2 Monte-Carlo standard errors (consistent "
        "with it); coverage is judged from each rule's default min_samples (p99: 150) on"
    )
    print(f"{len(results)} cells in {payload['seconds']:.0f} s (seed {payload['seed']})")
    return verdicts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=200, help="runs per cell up to the sample size")
    parser.add_argument(
        "--large-runs", type=int, default=60, help="runs per cell above the sample size"
    )
    parser.add_argument("--sizes", default="150,500,2000,20000", help="traces per run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--sample-traces",
        type=int,
        default=SAMPLE_TRACES,
        help="traces of the paired sample (default: the analyzer's); lower it far below n to"
        " check the sqrt(m / n) rescaling",
    )
    parser.add_argument("--jobs", type=int, default=1, help="worker processes (2 cores here)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "gate_power.json")
    parser.add_argument("--report", type=Path, help="reprint a saved JSON instead of running")
    args = parser.parse_args()
    if args.report is not None:
        show(json.loads(args.report.read_text()))
        return
    sizes = sorted(int(s) for s in args.sizes.split(",") if s.strip())
    todo = list(cells(sizes, args.runs, args.large_runs, args.sample_traces))
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        results = list(pool.map(run_cell, todo, [args.seed] * len(todo)))
    payload = {
        "seed": args.seed,
        "n_boot": N_BOOT,
        "sample_traces": args.sample_traces,
        "jobs": args.jobs,
        "seconds": round(time.perf_counter() - started, 1),
        "targets": {},
        "cells": results,
    }
    payload["targets"] = show(payload)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
