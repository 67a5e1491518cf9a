"""How ``shadow analyze`` scales: generated results, ``--by`` two slices, all figures and intervals.

Targets (issue 15, this 2-core machine): 10 million result rows analysed within 3 times the time
of a plain DuckDB ``GROUP BY`` computing the same point figures on the same file, with peak
RSS <= 2 GiB. "The same point figures" are every per-group figure analyze reports that is an
aggregate of rows: per slice and arm the counts and ok rate; latency, TTFT and attempt latency
and TTFT p50/p95/p99; TPOT and completion-token p50/p95; schedule lag p50/p99; tokens; cost,
cost per request and per success (no intervals, no sample, no divergence, which are what
analyze adds; nor models and error classes, whose histograms would make the GROUP BY slower). A narrower GROUP BY (latency and TTFT quantiles, ok
rate, cost per success, tokens per request: the comparison until December 2026) is printed
beside it. All run in fresh processes, one after the other, and the ratios are printed. The summary computed in pandas is printed too (issue 5).

Rows are generated inside DuckDB (lognormal latencies, two arms, tenant x intent slices, short
output texts) into a real results store, then ``analysis.analyze`` runs on it in a fresh
process, whose wall time and peak RSS are reported. Writes bench/results/analyze_scale.json.

    python bench/analyze_scale.py [--rows 10000000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

GENERATE = """
INSERT INTO results
SELECT 'bench' AS run_id, 't' || (i // 2) AS trace_id,
       CASE WHEN i % 2 = 0 THEN 'baseline' ELSE 'candidate' END AS arm, 0 AS attempt,
       MAP {{'tenant': 'tenant-' || ((i // 2) % 4), 'intent': 'intent-' || ((i // 8) % 5)}},
       (i // 2) / 1000.0 AS scheduled_at, (i // 2) / 1000.0 + random() * 0.002 AS sent_at,
       lat * 0.2 AS ttft_ms, lat AS latency_ms, lat AS service_ms, 200, random() > 0.02, NULL,
       'm', 100, tokens, 0, 0.0001 * tokens, 'the answer is '
         || ((i // 2) % 97) || CASE WHEN i % 2 = 1 THEN ' maybe' ELSE '' END, NULL,
       0 AS cache_write_tokens
FROM (SELECT i, exp(6 + 0.4 * sqrt(-2 * ln(random())) * cos(2 * pi() * random()))
         * CASE WHEN i % 2 = 1 AND (i // 8) % 5 = 0 THEN 1.3 ELSE 1.0 END AS lat,
         CAST(1 + floor(random() * 200) AS INTEGER) AS tokens
      FROM range({rows}) t(i))
"""

# Each child reports its own peak: VmHWM of its address space. Not ru_maxrss, which on Linux
# keeps the larger of the parent's RSS at the fork and the child's own across the exec: it read
# 2.9 GiB for every child of a bench process that had just generated the file.
PEAK_RSS = """
import resource
def peak_rss_mib():
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
"""

ANALYZE = (
    PEAK_RSS
    + """
import json, sys, time
from analysis import analyze, open_run
t = time.perf_counter()
report = analyze(open_run(sys.argv[1]), ["tenant", "intent"], n_boot=1000)
elapsed = time.perf_counter() - t
print("RESULT " + json.dumps({"seconds": elapsed, "groups": len(report.groups),
                  "peak_rss_mib": peak_rss_mib(),
                  "cpu_seconds": time.process_time()}))
"""
)

# One plain query over the table, timed in a fresh process (the SQL comes as argv[2]).
TIMED_QUERY = (
    PEAK_RSS
    + """
import json, sys, time
import duckdb
t = time.perf_counter()
con = duckdb.connect(sys.argv[1], read_only=True)
rows = con.execute(sys.argv[2]).fetchall()
elapsed = time.perf_counter() - t
print("RESULT " + json.dumps({"seconds": elapsed, "groups": len(rows),
                  "peak_rss_mib": peak_rss_mib(),
                  "cpu_seconds": time.process_time()}))
"""
)

NARROW_GROUP_BY = (
    "SELECT slices['tenant'] AS tenant, slices['intent'] AS intent, arm,"
    " quantile_cont(CASE WHEN ok THEN latency_ms END, [0.5, 0.95, 0.99]) AS latency_q,"
    " quantile_cont(CASE WHEN ok THEN ttft_ms END, [0.5, 0.95, 0.99]) AS ttft_q,"
    " avg(CAST(coalesce(ok, false) AS DOUBLE)) AS ok_rate,"
    " sum(cost_usd) / nullif(count_if(ok), 0) AS cost_per_success_usd,"
    " avg(coalesce(prompt_tokens, 0) + coalesce(completion_tokens, 0)) AS tokens_per_request"
    " FROM results GROUP BY ALL"
)

# Every point figure analyze reports per group, written as one plain query over the table (the
# bench's runs have no retried attempt, so a request is its row): the request figures (over
# successful requests), the per-attempt ones (over every attempt), schedule lag, tokens, cost.
# Models and error classes are left out (histogram() of them costs 0.6 s more on 10 M rows, so
# leaving them out makes the comparison stricter). TPOT as docs/architecture.md defines it.
_TPOT = (
    "CASE WHEN ok AND completion_tokens > 1 AND ttft_ms IS NOT NULL"
    " THEN (latency_ms - ttft_ms) / (completion_tokens - 1) END"
)
GROUP_BY = (
    "SELECT slices['tenant'] AS tenant, slices['intent'] AS intent, arm, count(*) AS n,"
    " avg(CAST(coalesce(ok, false) AS DOUBLE)) AS ok_rate,"
    " quantile_cont(CASE WHEN ok THEN latency_ms END, [0.5, 0.95, 0.99]) AS latency_q,"
    " quantile_cont(CASE WHEN ok THEN ttft_ms END, [0.5, 0.95, 0.99]) AS ttft_q,"
    f" quantile_cont({_TPOT}, [0.5, 0.95]) AS tpot_q,"
    " quantile_cont(latency_ms, [0.5, 0.95, 0.99]) AS attempt_latency_q,"
    " quantile_cont(ttft_ms, [0.5, 0.95, 0.99]) AS attempt_ttft_q,"
    " quantile_cont((sent_at - scheduled_at) * 1000, [0.5, 0.99]) AS lag_q,"
    " quantile_cont(CASE WHEN ok THEN completion_tokens END, [0.5, 0.95]) AS completion_q,"
    " avg(CASE WHEN ok THEN completion_tokens END) AS completion_mean,"
    " sum(prompt_tokens) AS prompt_tokens, sum(completion_tokens) AS completion_tokens,"
    " avg(coalesce(prompt_tokens, 0) + coalesce(completion_tokens, 0)) AS tokens_per_request,"
    " sum(cost_usd) AS cost_usd, sum(coalesce(cost_usd, 0)) / count(*) AS cost_per_request_usd,"
    " sum(cost_usd) / nullif(count_if(ok), 0) AS cost_per_success_usd,"
    " count_if(NOT coalesce(ok, false)) AS failed,"
    " min(scheduled_at) AS t0, max(sent_at + latency_ms / 1000) AS t1"
    " FROM results GROUP BY ALL"
)

PANDAS = (
    PEAK_RSS
    + """
import json, sys, time
import duckdb
t0 = time.perf_counter()
con = duckdb.connect(sys.argv[1], read_only=True)
df = con.execute("select slices['tenant'] tenant, slices['intent'] intent, arm, latency_ms, "
                 "ok, cost_usd from results").df()
t = time.perf_counter()
g = df.groupby(["tenant", "intent", "arm"])
out = g["latency_ms"].quantile([0.5, 0.95, 0.99]).unstack()
out["ok_rate"] = g["ok"].mean()
out["cost"] = g["cost_usd"].sum()
elapsed = time.perf_counter() - t
print("RESULT " + json.dumps({"seconds": elapsed, "load_seconds": t - t0,
                  "peak_rss_mib": peak_rss_mib()}))
"""
)


def _result(stdout: str) -> dict[str, Any]:
    """The RESULT line a child printed (libraries may print before it)."""
    line = next(x for x in stdout.splitlines() if x.startswith("RESULT "))
    return dict(json.loads(line.removeprefix("RESULT ")))


def _child(script: str, path: Path, *args: str) -> dict[str, Any]:
    """Run ``script`` on ``path`` (then ``args``) in a fresh process; its RESULT."""
    done = subprocess.run(
        [sys.executable, "-c", script, str(path), *args],
        capture_output=True,
        text=True,
        check=True,
    )
    return _result(done.stdout)


def _generate(path: Path, rows: int) -> None:
    import duckdb

    from shadow.results.store import ResultsStore

    ResultsStore.open(path).close()
    started = time.perf_counter()
    with duckdb.connect(str(path)) as con:
        con.execute(GENERATE.format(rows=rows))
        con.execute(
            "INSERT INTO runs (run_id, started_at, source, arms, status) "
            "VALUES ('bench', now(), 'bench', ['baseline', 'candidate'], 'done')"
        )
    print(f"generated {rows:,} rows in {time.perf_counter() - started:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--keep", metavar="DIR", help="Keep (and reuse) the generated file in DIR.")
    args = parser.parse_args()

    work = Path(args.keep or tempfile.mkdtemp(prefix="shadow-analyze-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    path = work / f"run-{args.rows}.duckdb"
    if path.exists() and args.keep:
        print(f"reusing {path}")
    else:
        path.unlink(missing_ok=True)
        _generate(path, args.rows)
    # One untimed pass first, so every timed process finds the file in the page cache (the
    # first timed one used to read it cold: analyze 4.0 s against 3.1-3.5 warm).
    _child(TIMED_QUERY, path, GROUP_BY)
    ours = _child(ANALYZE, path)
    plain = _child(TIMED_QUERY, path, GROUP_BY)
    narrow = _child(TIMED_QUERY, path, NARROW_GROUP_BY)
    ours["ratio_to_group_by"] = ours["seconds"] / plain["seconds"]
    ours["cpu_ratio_to_group_by"] = ours["cpu_seconds"] / plain["cpu_seconds"]
    ours["ratio_to_narrow_group_by"] = ours["seconds"] / narrow["seconds"]
    print(f"{'':<62} {'seconds':>8} {'peak RSS':>10}  (CPU seconds)")
    for label, cell in (
        ("shadow analyze --by tenant,intent (all figures, intervals)", ours),
        ("plain DuckDB GROUP BY, every point figure analyze reports", plain),
        ("plain DuckDB GROUP BY, latency/TTFT quantiles, ok, cost only", narrow),
    ):
        print(
            f"{label:<62} {cell['seconds']:>8.2f} {cell['peak_rss_mib']:>6,.0f} MiB"
            f"  ({cell['cpu_seconds']:.2f} CPU s, {cell['groups']} groups)"
        )
    print(
        f"analyze / GROUP BY of the same point figures = x{ours['ratio_to_group_by']:.2f} wall"
        f" (target <= x3), x{ours['cpu_ratio_to_group_by']:.2f} CPU (user + system; less moved"
        f" by other load); / the narrow GROUP BY x{ours['ratio_to_narrow_group_by']:.2f};"
        f" peak RSS {ours['peak_rss_mib'] / 1024:.2f} GiB (target <= 2 GiB)"
    )
    try:
        subprocess.run([sys.executable, "-c", "import pandas"], check=True, capture_output=True)
    except subprocess.CalledProcessError:
        print("installing pandas for the comparison (pip)...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "pandas"], check=True)
    try:
        theirs = _child(PANDAS, path)
        ratio = theirs["seconds"] / ours["seconds"]
        total = (theirs["seconds"] + theirs["load_seconds"]) / ours["seconds"]
        theirs["ratio_compute"], theirs["ratio_with_load"] = ratio, total
        print(
            f"pandas, percentiles + ok rate + cost only (no intervals): {theirs['seconds']:.1f} s "
            f"after {theirs['load_seconds']:.1f} s loading, peak RSS {theirs['peak_rss_mib']:,.0f} MiB "
            f"(pandas / shadow = {ratio:.2f} computing, {total:.2f} with loading)"
        )
    except (subprocess.CalledProcessError, json.JSONDecodeError) as exc:
        theirs = {"error": str(exc)}
        print(f"pandas comparison skipped: {exc}")
    out = HERE / "results" / "analyze_scale.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"bench": "analyze_scale", "at": time.time(), "rows": args.rows,
                               "shadow": ours, "group_by": plain,
                               "narrow_group_by": narrow,
                               "pandas": theirs}, indent=2))  # fmt: skip
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
