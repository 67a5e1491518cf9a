"""How faithfully ``shadow replay`` keeps its schedule, side by side with wrk and hey.

Targets (issue 15, this 2-core machine): one process, schedule lag p99 <= 1 ms at 2,000
sends/s and <= 2 ms at 4,000 (issue 4: >= 4,000 sends/s with lag p99 <= 5 ms; 10,000
concurrent streams under 1 GiB RSS).

- Lag: ``shadow replay --rate R --arrival constant`` of synthetic chat records to a static
  nginx target on core 1 (both arms point at it, so each record is two sends), read from the
  run's summary (``--json``). One process pinned to core 0, its results writer process
  (shadow.results.process) moved to core 1 once it starts; the same with the writer left on
  core 0 (sharing the sending loop's core); then ``--workers 2`` (two processes sharing one
  schedule, both cores, unpinned). ``--runs K`` repeats each rate (the machine is noisy).
- Overload: three times the highest rate one process kept: the run must finish, store one
  result row per send and count its late sends.
- The highest rate with lag p99 <= 5 ms, searched over a rate ladder.
- wrk (closed loop) and hey (fixed rate) against the same nginx target, for scale.
- Streams: N records to a mock-llm with slow decode (one token per second, 20 tokens), both
  arms, so 2N concurrent streams; the replayer's peak RSS (VmHWM) is read from /proc.

Installs nginx, wrk and hey with apt-get when missing. Writes bench/results/replay_fidelity.json.

    python bench/replay_fidelity.py [--seconds 8] [--streams 5000] [--skip-streams]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from capture_overhead import CHAT_RESPONSE, ensure, free_port, pin  # noqa: E402

from shadow.trace.jsonl import write_jsonl  # noqa: E402
from shadow.trace.record import HttpRequest, TraceRecord  # noqa: E402

RESULTS = HERE / "results"


def synthetic_records(path: Path, n: int, *, stream: bool = False, max_tokens: int = 16) -> None:
    body = {
        "model": "shadow-small",
        "messages": [{"role": "user", "content": "complete this line of code please"}],
        "max_tokens": max_tokens,
    }
    if stream:
        body["stream"] = True
    text = json.dumps(body)
    write_jsonl(
        path,
        (
            TraceRecord(
                trace_id=f"bench-{i:07d}",
                captured_at=1_700_000_000_000_000_000 + i * 1_000_000,
                request=HttpRequest(
                    method="POST",
                    path="/v1/chat/completions",
                    headers={"content-type": "application/json"},
                    body=text,
                ),
                slices={"tenant": "bench"},
            )
            for i in range(n)
        ),
    )


def start_nginx(nginx: str, work: Path, port: int) -> subprocess.Popen[bytes]:
    (work / "logs").mkdir(parents=True, exist_ok=True)
    (work / "tmp").mkdir(exist_ok=True)
    body = CHAT_RESPONSE.replace("'", "\\'")
    conf = work / "nginx.conf"
    conf.write_text(
        f"""worker_processes 1; daemon off; error_log {work}/logs/error.log warn;
pid {work}/nginx.pid; events {{ worker_connections 16384; }}
http {{ access_log off; client_body_temp_path {work}/tmp; keepalive_requests 1000000;
  server {{ listen 127.0.0.1:{port} backlog=8192;
    location / {{ default_type application/json; return 200 '{body}'; }} }} }}
"""
    )
    proc = subprocess.Popen(pin(1, [nginx, "-c", str(conf), "-p", str(work)]))
    time.sleep(0.3)
    return proc


def replay(
    records: Path,
    target: str,
    rate: float,
    n: int,
    out: Path,
    *,
    shards: int = 1,
    workers: int = 1,
    extra: list[str] | None = None,
    cores: list[int] | None = None,
    writer_core: int | None = 1,
) -> dict[str, Any]:
    """Run one replay (``shards`` processes sharing one schedule, or one ``--workers``
    replay) and merge their summaries.

    A pinned replay's results writer process (shadow.results.process) is moved to
    ``writer_core`` once it starts: the sending loop keeps its core to itself (None: the writer
    shares the loop's core)."""
    start_at = time.time() + 5.0  # every shard starts at the same instant (slow starts: load)
    procs = []
    if workers > 1:
        extra = [*(extra or []), "--workers", str(workers)]
    for shard in range(shards):
        cmd = [
            sys.executable, "-m", "shadow", "replay", str(records), "--baseline", target,
            "--candidate", target, "--rate", str(rate), "--arrival", "constant",
            "--limit", str(n), "--out", f"{out}-{shard}/", "--json", "--max-in-flight", "50000",
            "--start-at", f"{start_at:.3f}", *(extra or []),
        ]  # fmt: skip
        if shards > 1:
            cmd += ["--shard", f"{shard}/{shards}"]
        core = (cores or [0, 1])[shard % len(cores or [0, 1])]
        cmd = cmd if workers > 1 else pin(core, cmd)  # workers spread over both cores
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True))
    summaries = []
    peak_rss_kb = 0
    while any(p.poll() is None for p in procs):
        for p in procs:
            peak_rss_kb = max(peak_rss_kb, _vm_hwm(p.pid))
            if workers == 1 and writer_core is not None:
                # taskset's pid is the replay's (it execs); its writer child inherits core 0.
                _move_children(p.pid, writer_core)
        time.sleep(0.05)
    for p in procs:
        stdout, _ = p.communicate()
        summaries.append(json.loads(stdout))
    lags = []
    for s in summaries:
        lags.append((s["lag_p50_ms"], s["lag_p99_ms"], s["lag_max_ms"]))
    sends = sum(a["sent"] for s in summaries for a in s["arms"].values())
    errors = sum(sum(a["errors"].values()) for s in summaries for a in s["arms"].values())
    rows = _stored_rows(out, shards)
    return {
        "rate_records_per_s": rate,
        "processes": max(shards, workers),
        "stored_rows": rows,
        "records": sum(s["scheduled"] for s in summaries),
        "sends": sends,
        "errors": errors,
        "offered_sends_per_s": 2 * rate,
        "lag_p50_ms": max(lag[0] for lag in lags),
        "lag_p99_ms": max(lag[1] for lag in lags),
        "lag_max_ms": max(lag[2] for lag in lags),
        "late": sum(s["late"] for s in summaries),
        "peak_rss_mib": peak_rss_kb / 1024,
        "latency_p99_ms": max(
            (a["latency_p99_ms"] or 0) for s in summaries for a in s["arms"].values()
        ),
    }


def _stored_rows(out: Path, shards: int) -> int:
    """Result rows the run(s) stored (every send must be one)."""
    import duckdb

    from shadow.results.views import results_relation

    total = 0
    for shard in range(shards):
        con = duckdb.connect()
        results_relation(con, f"{out}-{shard}/")
        total += int(con.execute("select count(*) from results").fetchone()[0])  # type: ignore[index]
        con.close()
    return total


def _move_children(pid: int, core: int) -> None:
    """Pin the child processes of ``pid`` (its results writer) to ``core``."""
    with contextlib.suppress(OSError):
        for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
            with contextlib.suppress(OSError):
                os.sched_setaffinity(int(child), {core})


def _vm_hwm(pid: int) -> int:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    match = re.search(r"VmHWM:\s+(\d+) kB", text)
    return int(match.group(1)) if match else 0


def wrk_closed(wrk: str, url: str, seconds: int, body: Path) -> float:
    script = body.with_suffix(".lua")
    script.write_text(
        'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
        f"local f = io.open({str(body)!r}, 'rb')\nwrk.body = f:read('*a')\nf:close()\n"
    )
    out = subprocess.run(
        pin(0, [wrk, "-t1", "-c32", f"-d{seconds}s", "-s", str(script), url]),
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]


def hey_rate(hey: str, url: str, seconds: int, rate: int, body: Path) -> dict[str, float]:
    workers = 50
    out = subprocess.run(
        pin(0, [hey, "-z", f"{seconds}s", "-c", str(workers), "-q", str(rate / workers), "-m",
                "POST", "-T", "application/json", "-D", str(body), url]),
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"99% in ([\d.]+) secs", out)
    return {"requests_per_s": rps, "latency_p99_ms": float(p99.group(1)) * 1000 if p99 else -1}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--streams", type=int, default=5000, help="records; x2 arms = streams")
    parser.add_argument("--skip-streams", action="store_true")
    parser.add_argument("--ladder", default="1000,2000,3000,4000,5000", help="records/s")
    parser.add_argument("--runs", type=int, default=1, help="repeat each ladder rate")
    parser.add_argument("--skip-closed-loop", action="store_true", help="no wrk / hey")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    nginx, wrk = ensure("nginx", "nginx"), ensure("wrk", "wrk")
    hey = ensure("hey", "hey")
    work = Path(tempfile.mkdtemp(prefix="shadow-replay-bench-"))
    port = free_port()
    target = f"http://127.0.0.1:{port}"
    results: dict[str, Any] = {"bench": "replay_fidelity", "at": time.time()}
    procs: list[subprocess.Popen[Any]] = [start_nginx(nginx, work, port)]
    try:
        ladder = [float(r) for r in args.ladder.split(",")]
        records = work / "records.jsonl"
        synthetic_records(records, int(max(ladder) * args.seconds) + 10)
        body = work / "body.json"
        body.write_text(json.loads(records.read_text().splitlines()[0])["request"]["body"])

        print("open loop replay to static nginx; each record = 2 sends (baseline, candidate)")
        print(f"{'records/s':>10} {'procs':>5} {'writer':>9} {'sends/s':>9} {'lag p50':>8} "
              f"{'lag p99':>8} {'lag max':>8} {'late':>6} {'errors':>6} {'RSS MiB':>8}")  # fmt: skip
        rows: list[dict[str, Any]] = []
        # (processes, the writer's core): one sending process on core 0 with its writer process
        # on core 1 (beside nginx), the same with the writer sharing core 0, --workers 2.
        configs: list[tuple[int, int | None]] = [(1, 1), (1, None), (2, None)]
        for shards, writer_core in configs:
            where = "any" if shards > 1 else ("core 0" if writer_core is None else "core 1")
            for rate in [r for r in ladder for _ in range(args.runs)]:
                row = replay(records, target, rate, int(rate * args.seconds),
                             work / f"lag-{shards}-{rate:.0f}-{len(rows)}", workers=shards,
                             writer_core=writer_core)  # fmt: skip
                row["writer"] = where
                rows.append(row)
                print(f"{rate:>10.0f} {shards:>5} {where:>9} {row['offered_sends_per_s']:>9.0f} "
                      f"{row['lag_p50_ms']:>8.2f} {row['lag_p99_ms']:>8.2f} {row['lag_max_ms']:>8.1f} "
                      f"{row['late']:>6} {row['errors']:>6} {row['peak_rss_mib']:>8.0f}")  # fmt: skip
        results["open_loop"] = rows
        for shards in (1, 2):
            ok = [r for r in rows if r["processes"] == shards and r["lag_p99_ms"] <= 5.0
                  and r["errors"] == 0 and r["writer"] != "core 0"]  # fmt: skip
            best = max((r["offered_sends_per_s"] for r in ok), default=0.0)
            results[f"max_sends_per_s_lag_p99_le_5ms_{shards}proc"] = best
            print(
                f"highest sustained with lag p99 <= 5 ms, {shards} process(es): {best:,.0f} sends/s"
            )
        # Overload: three times the highest rate one process sent with lag p99 <= 5 ms (or the
        # top of the ladder): it must finish, store a row per send and count the late ones.
        capacity = results["max_sends_per_s_lag_p99_le_5ms_1proc"] / 2 or max(ladder)
        over = 3 * capacity
        n = int(over * min(args.seconds, 4))
        overload_records = work / "overload.jsonl"  # the ladder's file may be too short
        synthetic_records(overload_records, n)
        row = replay(overload_records, target, over, n, work / "overload")
        results["overload"] = row
        print(f"overload at 3x ({2 * over:,.0f} sends/s offered for {n / over:.0f} s): finished, "
              f"{row['sends']:,} sends, {row['stored_rows']:,} rows stored of "
              f"{2 * row['records']:,} scheduled, {row['late']:,} late, {row['errors']:,} errors, "
              f"lag p99 {row['lag_p99_ms']:,.0f} ms")  # fmt: skip
        if args.skip_closed_loop:
            _write(results)
            return

        seconds = int(args.seconds)
        results["wrk_closed_loop_rps"] = wrk_closed(
            wrk, target + "/v1/chat/completions", seconds, body
        )
        results["hey_1000rps"] = hey_rate(hey, target + "/v1/chat/completions", seconds, 1000, body)
        print(f"wrk closed loop (32 conns): {results['wrk_closed_loop_rps']:,.0f} req/s; "
              f"hey at 1,000 req/s: p99 {results['hey_1000rps']['latency_p99_ms']:.2f} ms")  # fmt: skip

        if not args.skip_streams:
            mock, url = _start_mock(args.streams)
            procs.append(mock)
            stream_records = work / "streams.jsonl"
            synthetic_records(stream_records, args.streams, stream=True, max_tokens=20)
            rate = args.streams / 5.0  # everything starts within 5 s; each stream lasts ~20 s
            row = replay(stream_records, url, rate, args.streams, work / "streams",
                         extra=["--timeout", "120"])  # fmt: skip
            results["streams"] = {**row, "concurrent_streams": 2 * args.streams}
            print(f"{2 * args.streams:,} concurrent streams: peak RSS {row['peak_rss_mib']:.0f} MiB, "
                  f"errors {row['errors']}, lag p99 {row['lag_p99_ms']:.1f} ms")  # fmt: skip
    finally:
        for proc in procs:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(work, ignore_errors=True)
    _write(results)


def _write(results: dict[str, Any]) -> None:
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "replay_fidelity.json"
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")


def _start_mock(streams: int) -> tuple[subprocess.Popen[str], str]:
    # small profile: decode 7 ms/token x time-scale 143 = 1 s per token; 20 tokens ~ 20 s.
    cmd = [sys.executable, "-m", "shadow", "mock-llm", "--port", "0", "--profile", "small",
           "--time-scale", "143", "--slots", str(4 * streams)]  # fmt: skip
    proc = subprocess.Popen(pin(1, cmd), stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    match = re.search(r"(http://\S+)", proc.stdout.readline())
    assert match
    return proc, match.group(1)


if __name__ == "__main__":
    main()
