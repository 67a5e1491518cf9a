"""Throughput of ``shadow mock-llm`` at time-scale 0: it must never be a benchmark's bottleneck.

Target (issue 2): >= 2,000 non-streaming chat completions/s on one core.

The server runs as a real ``shadow mock-llm`` process pinned to core 0; the load comes from wrk
(Debian's package, installed here if missing) pinned to core 1, closed loop, with a realistic
chat body (a 200-token prompt, max_tokens 32). A streaming run (one SSE event per token) is
measured too. Prints a table and writes JSON to ``bench/results/mockllm_throughput.json``.

    python bench/mockllm_throughput.py [--seconds 10] [--connections 1,8,32]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def ensure_wrk() -> str:
    path = shutil.which("wrk")
    if path:
        return path
    print("installing wrk (apt-get)...", file=sys.stderr)
    subprocess.run(["apt-get", "update", "-qq"], check=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True)
    found = shutil.which("wrk")
    if not found:
        raise SystemExit("wrk is not available")
    return found


def start_server(extra: list[str]) -> tuple[subprocess.Popen[str], str]:
    cmd = [sys.executable, "-m", "shadow", "mock-llm", "--port", "0", "--time-scale", "0", *extra]
    if shutil.which("taskset"):
        cmd = ["taskset", "-c", "0", *cmd]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.search(r"http://[\d.]+:\d+", line)
    if not match:
        proc.kill()
        raise SystemExit(f"mock-llm did not start: {line!r}")
    return proc, match.group(0)


def lua_script(stream: bool) -> str:
    prompt = " ".join(["word"] * 200)
    body = {
        "model": "shadow-large",
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": 32,
        "temperature": 0,
    }
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    encoded = json.dumps(body).replace("\\", "\\\\").replace('"', '\\"')
    return (
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.body = "{encoded}"\n'
        "done = function(summary, latency, requests)\n"
        '  io.write(string.format("JSON {\\"requests\\": %d, \\"errors\\": %d, '
        '\\"p50_us\\": %d, \\"p99_us\\": %d}\\n", summary.requests, '
        "summary.errors.status + summary.errors.connect + summary.errors.read + "
        "summary.errors.write + summary.errors.timeout, "
        "latency:percentile(50), latency:percentile(99)))\n"
        "end\n"
    )


def run_wrk(wrk: str, url: str, connections: int, seconds: int, stream: bool) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
        fh.write(lua_script(stream))
        script = fh.name
    cmd = [wrk, "-t1", f"-c{connections}", f"-d{seconds}s", "-s", script]
    cmd += [f"{url}/v1/chat/completions"]
    if shutil.which("taskset"):
        cmd = ["taskset", "-c", "1", *cmd]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    os.unlink(script)
    stats = json.loads(out.split("JSON ", 1)[1].splitlines()[0])
    return {
        "connections": connections,
        "requests_per_s": stats["requests"] / seconds,
        "errors": stats["errors"],
        "p50_ms": stats["p50_us"] / 1000,
        "p99_ms": stats["p99_us"] / 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", default="1,8,32")
    args = parser.parse_args()
    wrk = ensure_wrk()
    rows = []
    for stream in (False, True):
        proc, url = start_server([])
        try:
            for conns in (int(c) for c in args.connections.split(",")):
                row = run_wrk(wrk, url, conns, args.seconds, stream)
                row["mode"] = "stream (33 events)" if stream else "non-streaming"
                rows.append(row)
                print(
                    f"{row['mode']:<20} conns={conns:<3} {row['requests_per_s']:>8.0f} req/s  "
                    f"p50 {row['p50_ms']:.2f} ms  p99 {row['p99_ms']:.2f} ms  "
                    f"errors {row['errors']}"
                )
        finally:
            proc.terminate()
            proc.wait(10)
    best = max(r["requests_per_s"] for r in rows if r["mode"] == "non-streaming")
    verdict = "meets" if best >= 2000 else "MISSES"
    print(
        f"best non-streaming: {best:.0f} req/s on one server core "
        f"({verdict} the 2,000 req/s target)"
    )
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "mockllm_throughput.json"
    out.write_text(
        json.dumps(
            {
                "bench": "mockllm_throughput",
                "at": time.time(),
                "cpus": os.cpu_count(),
                "rows": rows,
                "best_non_streaming_rps": best,
                "target_rps": 2000,
            },
            indent=2,
        )
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
