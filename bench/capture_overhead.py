"""What the capture sidecar costs a live request, side by side with nginx in one run.

Targets (issue 15, this 2-core machine): throughput >= 0.75 x nginx in the same run; added
latency p50 <= +0.5 ms and p99 <= +1.0 ms at 1,000 requests/s open loop; 0 records dropped at
2,000 requests/s sustained (and the highest rate with none).

Setup: a static nginx upstream answers a 1 KB chat completion. In front of it, each in turn:
the shadow sidecar (``shadow capture``: its live path is an HTTP/1.1 proxy on asyncio
Protocols with httptools and uvloop, capture/live/; teeing to the embedded Kafka broker, or to
a file with ``--sink file``),
nginx as a reverse proxy with its ``mirror`` directive (the classic shadow-traffic setup), and
minimal forwarding proxies that differ only in the upstream client (aiohttp, httpx,
httpx over aiohttp) or only in the server (uvicorn + httptools, granian, aiohttp.web).
Proxies are pinned to core 0, load generators to core 1; the sidecar's record worker process
(capture/worker.py: the whole tee) runs where the sidecar puts it, off the serving process's
pinned core and at the idle scheduling class (``--worker-core any|1`` re-pins it).

- Added latency: open-loop load (bench/_openloop.py, latency from the scheduled send time) at
  200 and 1,000 req/s through each proxy, minus the same load sent straight to the upstream,
  over ``--rounds`` rounds in which the targets take turns, every latency pooled.
- Throughput: wrk, closed loop, 32 connections, through each proxy.
- ``shadow sidecar, sampling 0``: the same live path teeing nothing (``--sample-rate 0``), to
  tell the proxy's own cost from the tee's (the hand-off to the worker) on the same loop.
- The sidecar's own added-latency histogram over the same open-loop cell is printed under
  the client-side figure (docs/architecture.md, "Sidecar overhead").
- ``--profile``: py-spy samples the sidecar under wrk load; the top frames are printed.
- Drops: open loop at ``--drop-rates`` through the sidecar after wrk, records dropped per rate
  (the sidecar's ``records_dropped``); the highest rate with none is reported.

Installs nginx and wrk (apt-get), httpx-aiohttp and py-spy (pip) when missing. Writes bench/results/capture_overhead.json.

    python bench/capture_overhead.py [--seconds 10] [--sink kafka|file] [--profile]
"""

from __future__ import annotations

import argparse
import collections
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

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
CHAT_RESPONSE = json.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 0,
        "model": "shadow-large",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "The parser reads each record. " * 30},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 120, "completion_tokens": 150, "total_tokens": 270},
    }
)
CHAT_REQUEST = json.dumps(
    {
        "model": "shadow-large",
        "messages": [{"role": "user", "content": "explain the parser " * 60}],
        "max_tokens": 150,
        "metadata": {"intent": "explain"},
    }
).encode()


def ensure(tool: str, package: str) -> str:
    found = shutil.which(tool) or (
        f"/usr/sbin/{tool}" if Path(f"/usr/sbin/{tool}").exists() else None
    )
    if found:
        return found
    print(f"installing {package} (apt-get)...", file=sys.stderr)
    subprocess.run(["apt-get", "update", "-qq"], check=True)
    lock = ["-o", "DPkg::Lock::Timeout=300"]  # another apt-get may hold the lock for a while
    subprocess.run(["apt-get", *lock, "install", "-y", "-qq", package], check=True)
    found = shutil.which(tool) or f"/usr/sbin/{tool}"
    return found


def ensure_module(module: str, package: str) -> None:
    """pip-install ``package`` into this interpreter when ``module`` does not import."""
    import importlib
    import importlib.util

    if importlib.util.find_spec(module) is not None:
        return
    print(f"installing {package} (pip)...", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", package], check=True)
    importlib.invalidate_caches()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pin(core: int, cmd: list[str]) -> list[str]:
    return ["taskset", "-c", str(core), *cmd] if shutil.which("taskset") else cmd


def start_nginx(
    nginx: str, workdir: Path, upstream_port: int, proxy_port: int
) -> subprocess.Popen[bytes]:
    (workdir / "logs").mkdir(parents=True, exist_ok=True)
    body = CHAT_RESPONSE.replace("'", "\\'")
    conf = f"""
worker_processes 1;
daemon off;
error_log {workdir}/logs/error.log warn;
pid {workdir}/nginx.pid;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {workdir}/tmp;
  proxy_temp_path {workdir}/tmp;
  upstream up {{ server 127.0.0.1:{upstream_port}; keepalive 256; }}
  server {{
    listen 127.0.0.1:{upstream_port};
    location / {{ default_type application/json; return 200 '{body}'; }}
  }}
  server {{
    listen 127.0.0.1:{proxy_port};
    location / {{
      mirror /_mirror;
      mirror_request_body on;
      proxy_pass http://up;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }}
    location = /_mirror {{
      internal;
      proxy_pass http://up/_mirror$request_uri;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }}
  }}
}}
"""
    path = workdir / "nginx.conf"
    path.write_text(conf)
    (workdir / "tmp").mkdir(exist_ok=True)
    proc = subprocess.Popen(pin(0, [nginx, "-c", str(path), "-p", str(workdir)]))
    wait_http(f"http://127.0.0.1:{proxy_port}/v1/chat/completions")
    return proc


def wait_http(url: str, timeout: float = 20.0) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, data=b"{}", timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"{url} did not come up")


def start_listening(cmd: list[str], pattern: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(pin(0, cmd), stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.search(pattern, line)
    if not match:
        proc.kill()
        raise SystemExit(f"{cmd[:4]} did not start: {line!r}")
    return proc, match.group(1)


def openloop(
    url: str, rate: float, seconds: float, body_file: Path, save: Path | None = None
) -> dict[str, Any]:
    cmd = pin(1, [sys.executable, str(HERE / "_openloop.py"), url, str(rate), str(seconds),
                  "--body", str(body_file), *(["--save", str(save)] if save else [])])  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return dict(json.loads(out))


def wrk(
    wrk_bin: str, url: str, seconds: int, connections: int, body_file: Path
) -> dict[str, float]:
    script = body_file.with_suffix(".lua")
    script.write_text(
        'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
        f"local f = io.open({str(body_file)!r}, 'rb')\nwrk.body = f:read('*a')\nf:close()\n"
    )
    cmd = pin(1, [wrk_bin, "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s",
                  str(script), url])  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "requests_per_s": rps,
        "p99_ms": float(p99.group(1)) * scale[p99.group(2)] if p99 else float("nan"),
        "non_2xx": int(errors.group(1)) if errors else 0,
    }


def histogram_buckets(base_url: str) -> list[tuple[float, float]]:
    """The sidecar's own added-latency histogram: (upper bound s, cumulative count)."""
    import urllib.request

    with urllib.request.urlopen(base_url + "/shadow/metrics") as reply:
        text = reply.read().decode()
    buckets = []
    for line in text.splitlines():
        m = re.match(
            r'shadow_capture_added_latency_seconds_bucket\{le="([^"]+)"\} ([\d.e+]+)', line
        )
        if m:
            buckets.append((float(m.group(1)), float(m.group(2))))
    return buckets


def histogram_quantiles(
    buckets: list[tuple[float, float]], before: list[tuple[float, float]] | None = None
) -> dict[str, float]:
    """p50/p99 (upper bucket bounds, ms) of the histogram, or of what it gained since ``before``."""
    if before:
        buckets = [(le, n - was) for (le, n), (_, was) in zip(buckets, before, strict=True)]
    total = buckets[-1][1] if buckets else 0
    out = {}
    for q in (0.5, 0.99):
        bound = next((le for le, count in buckets if count >= q * total), float("inf"))
        out[f"p{int(q * 100)}_le_ms"] = bound * 1000
    out["count"] = total
    return out


def dropped(base_url: str) -> float:
    """The sidecar's records dropped so far, every reason."""
    import urllib.request

    with urllib.request.urlopen(base_url + "/shadow/metrics") as reply:
        text = reply.read().decode()
    found = re.findall(r"^shadow_capture_records_dropped_total\{[^}]*\} (\S+)", text, re.M)
    return sum(float(n) for n in found)


def drained(base_url: str, timeout: float = 60.0) -> None:
    """Wait (bounded) until the sidecar's tee queue is empty."""
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with urllib.request.urlopen(base_url + "/shadow/health") as reply:
            if json.loads(reply.read())["queue_depth"] == 0:
                return
        time.sleep(0.1)


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (Linux /proc)."""
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        for child in task.read_text().split():
            out += [int(child), *descendants(int(child))]
    return out


def profile(sidecar_pid: int, wrk_bin: str, url: str, body_file: Path, seconds: int) -> list[str]:
    beside = Path(sys.executable).with_name("py-spy")  # where pip puts the binary in a venv
    if not (shutil.which("py-spy") or beside.exists()):
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "py-spy"], check=True)
    py_spy = shutil.which("py-spy") or str(beside)
    raw = Path(tempfile.mkdtemp()) / "profile.txt"
    spy = subprocess.Popen(
        [py_spy, "record", "--pid", str(sidecar_pid), "--format", "raw", "--output", str(raw),
         "--duration", str(seconds), "--rate", "200", "--nonblocking"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    time.sleep(1)
    wrk(wrk_bin, url, seconds - 2, 32, body_file)
    spy.wait()
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        n = int(count)
        total += n
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    lines = [f"samples: {total}", "self time:"]
    lines += [f"  {100 * n / total:5.1f}%  {frame}" for frame, n in own.most_common(12)]
    keys = ("capture/", "aiohttp", "uvicorn", "prometheus_client")
    interesting = [f for f in inclusive if any(k in f for k in keys)]
    lines.append("inclusive (shadow, prometheus_client, aiohttp, uvicorn frames):")
    lines += [
        f"  {100 * inclusive[f] / total:5.1f}%  {f}"
        for f in sorted(interesting, key=lambda f: -inclusive[f])[:15]
    ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--sink", choices=["kafka", "file"], default="kafka")
    parser.add_argument("--rates", default="200,1000")
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="open-loop rounds per rate; the targets take turns within each, and every "
        "latency is pooled (one cell's p99 swings by about 0.5 ms between runs here)",
    )
    parser.add_argument(
        "--drop-rates", default="1000,2000,3000,4000", help="open-loop rates for the drop check"
    )
    parser.add_argument("--profile", action="store_true")
    parser.add_argument(
        "--worker-core",
        choices=["auto", "any", "1"],
        default="auto",
        help="where the sidecar's record worker runs: auto (the sidecar's own choice: off the "
        "serving loop's pinned core), any (re-pinned to either core), 1 (re-pinned to core 1)",
    )
    parser.add_argument("--skip-clients", action="store_true", help="skip the client comparison")
    args = parser.parse_args()
    nginx = ensure("nginx", "nginx")
    wrk_bin = ensure("wrk", "wrk")
    work = Path(tempfile.mkdtemp(prefix="shadow-bench-"))
    body_file = work / "request.json"
    body_file.write_bytes(CHAT_REQUEST)
    upstream_port, nginx_port = free_port(), free_port()
    procs: list[subprocess.Popen[Any]] = []
    results: dict[str, Any] = {
        "bench": "capture_overhead", "at": time.time(), "sink": args.sink,
        "worker_core": args.worker_core,
    }  # fmt: skip
    try:
        procs.append(start_nginx(nginx, work, upstream_port, nginx_port))
        upstream = f"http://127.0.0.1:{upstream_port}"
        sink_args = ["--out", str(work / "traces.jsonl")]
        if args.sink == "kafka":
            broker, bootstrap = start_listening(
                [sys.executable, "-m", "shadow", "broker", "--port", "0"],
                r"bootstrap servers: (\S+)",
            )
            procs.append(broker)
            sink_args = ["--kafka", bootstrap, "--topic", "bench.capture"]
        sidecar, sidecar_url = start_listening(
            [sys.executable, "-m", "shadow", "capture", "--upstream", upstream, "--listen",
             "127.0.0.1:0", "--spool-dir", str(work / "spool"), "--log-format", "text", *sink_args],
            r"listening on (http://\S+) ->",
        )  # fmt: skip
        procs.append(sidecar)
        # The same live path with nothing teed: what the proxy itself costs, beside the tee.
        bare, bare_url = start_listening(
            [sys.executable, "-m", "shadow", "capture", "--upstream", upstream, "--listen",
             "127.0.0.1:0", "--spool-dir", str(work / "spool-bare"), "--log-format", "text",
             "--sample-rate", "0", "--out", str(work / "bare.jsonl")],
            r"listening on (http://\S+) ->",
        )  # fmt: skip
        procs.append(bare)
        targets = {
            "direct": upstream,
            "shadow sidecar": sidecar_url,
            "shadow sidecar, sampling 0": bare_url,
            "nginx proxy+mirror": f"http://127.0.0.1:{nginx_port}",
        }
        if not args.skip_clients:
            ensure_module("httpx_aiohttp", "httpx-aiohttp")
            ensure_module("granian", "granian")
            variants = [("aiohttp", "uvicorn"), ("httpx-aiohttp", "uvicorn"), ("httpx", "uvicorn"),
                        ("aiohttp", "granian"), ("aiohttp", "aiohttp-web")]  # fmt: skip
            for client, server in variants:
                proc, url = start_listening(
                    [sys.executable, str(HERE / "_minimal_proxy.py"), "--client", client,
                     "--upstream", upstream, "--server", server],
                    r"listening on (http://\S+)",
                )  # fmt: skip
                procs.append(proc)
                label = client if server == "uvicorn" else f"{client}, {server}"
                targets[f"minimal proxy ({label})"] = url
        path = "/v1/chat/completions"
        for url in targets.values():
            wait_http(url + path)
        # The sidecar builds and delivers records in a worker process. By itself (auto) it runs
        # off the serving process's pinned core (core 0, like nginx), so on core 1, at the idle
        # scheduling class; --worker-core any / 1 re-pin it to test other placements.
        if args.worker_core != "auto":
            worker_cores = "0,1" if args.worker_core == "any" else args.worker_core
            for child in descendants(sidecar.pid):
                subprocess.run(["taskset", "-a", "-p", "-c", worker_cores, str(child)],
                               capture_output=True, check=False)  # fmt: skip

        print(
            f"\nopen loop, {args.rounds} rounds of {args.seconds:.0f} s per cell, targets "
            "interleaved; latency from the scheduled send (ms), pooled over the rounds"
        )
        openloop_rows: list[dict[str, Any]] = []
        for rate in (float(r) for r in args.rates.split(",")):
            pooled: dict[str, list[Any]] = {name: [] for name in targets}
            own_counts: dict[str, list[tuple[float, float]]] = {}
            per_round: dict[str, list[float]] = {name: [] for name in targets}
            for r in range(args.rounds):
                order = list(targets)[r % len(targets) :] + list(targets)[: r % len(targets)]
                cells = {}
                for name in order:
                    url = targets[name]
                    teeing = name.startswith("shadow sidecar")
                    buckets_before = histogram_buckets(url) if teeing else None
                    save = work / f"lat-{rate:.0f}-{r}-{len(openloop_rows)}-{hash(name)}.npy"
                    cells[name] = openloop(url + path, rate, args.seconds, body_file, save)
                    pooled[name].append(np.load(save))
                    if buckets_before is not None:
                        after = histogram_buckets(url)
                        gained = [(le, n - was) for (le, n), (_, was) in
                                  zip(after, buckets_before, strict=True)]  # fmt: skip
                        so_far = own_counts.get(name, [(le, 0.0) for le, _ in gained])
                        own_counts[name] = [(le, n + m) for (le, n), (_, m) in
                                            zip(gained, so_far, strict=True)]  # fmt: skip
                for name in targets:
                    per_round[name].append(cells[name]["p99_ms"] - cells["direct"]["p99_ms"])
            direct_all = np.concatenate(pooled["direct"])
            for name in targets:
                lat = np.concatenate(pooled[name])
                row: dict[str, Any] = {
                    "target": name, "rate": rate, "rounds": args.rounds, "count": int(lat.size),
                    "p50_ms": float(np.percentile(lat, 50)),
                    "p99_ms": float(np.percentile(lat, 99)), "max_ms": float(lat.max()),
                }  # fmt: skip
                line = f"  {rate:>6.0f}/s  {name:<34} p50 {row['p50_ms']:6.2f}  "
                line += f"p99 {row['p99_ms']:6.2f}  max {row['max_ms']:7.2f}"
                if name != "direct":
                    row["added_p50_ms"] = row["p50_ms"] - float(np.percentile(direct_all, 50))
                    row["added_p99_ms"] = row["p99_ms"] - float(np.percentile(direct_all, 99))
                    row["added_p99_ms_per_round"] = per_round[name]
                    spread = ", ".join(f"{x:+.2f}" for x in per_round[name])
                    line += f"  added p50 {row['added_p50_ms']:+.2f}  p99 "
                    line += f"{row['added_p99_ms']:+.2f} (rounds: {spread})"
                print(line)
                if name in own_counts:
                    own = histogram_quantiles(own_counts[name])
                    row["sidecar_own"] = own
                    print(f"  {'':>8}  {'  its own histogram':<28} added p50 <= "
                          f"{own['p50_le_ms']:.2f}  p99 <= {own['p99_le_ms']:.2f} "
                          f"(bucket bounds, {own['count']:.0f} requests)")  # fmt: skip
                openloop_rows.append(row)
        results["open_loop"] = openloop_rows

        own = histogram_quantiles(histogram_buckets(sidecar_url))
        results["sidecar_own_added_latency"] = own
        print(
            f"  sidecar's own histogram: added p50 <= {own['p50_le_ms']:.2f} ms, "
            f"p99 <= {own['p99_le_ms']:.2f} ms over {own['count']:.0f} requests"
        )

        print("\nclosed loop (wrk, 32 connections), requests/s")
        throughput = {}
        for name, url in targets.items():
            teeing = name == "shadow sidecar"
            if teeing:
                drained(url)
                before = dropped(url)
            throughput[name] = wrk(wrk_bin, url + path, int(args.seconds), 32, body_file)
            t = throughput[name]
            shed = ""
            if teeing:
                # past what the tee can keep up with, the live path sheds records, never requests
                t["records_dropped"] = dropped(url) - before
                t["records_dropped_share"] = t["records_dropped"] / max(
                    1.0, t["requests_per_s"] * int(args.seconds)
                )
                shed = (f"  records dropped {t['records_dropped']:.0f}"
                        f" ({t['records_dropped_share']:.0%} of requests)")  # fmt: skip
            print(f"  {name:<34} {t['requests_per_s']:>8.0f} req/s  p99 {t['p99_ms']:.1f} ms"
                  f"  non-2xx {t['non_2xx']}{shed}")  # fmt: skip
        results["throughput"] = throughput
        ratio = (
            throughput["shadow sidecar"]["requests_per_s"]
            / throughput["nginx proxy+mirror"]["requests_per_s"]
        )
        results["sidecar_to_nginx_throughput_ratio"] = ratio
        print(f"  sidecar / nginx throughput: {ratio:.2f}")

        print(f"\nrecords dropped by the sidecar, open loop, {args.seconds:.0f} s per rate")
        drops = []
        for rate in (float(r) for r in args.drop_rates.split(",")):
            drained(sidecar_url)  # what wrk left queued is not this cell's
            before = dropped(sidecar_url)
            cell = openloop(sidecar_url + path, rate, args.seconds, body_file)
            lost = dropped(sidecar_url) - before
            drops.append({"rate": rate, "achieved_rate": cell["achieved_rate"], "dropped": lost,
                          "p99_ms": cell["p99_ms"]})  # fmt: skip
            print(f"  {rate:>6.0f}/s (achieved {cell['achieved_rate']:6.0f}/s)  dropped {lost:.0f}"
                  f"  p99 {cell['p99_ms']:.2f} ms")  # fmt: skip
        results["drops"] = drops
        # a rate counts only if the load generator kept it up (within 5%) and nothing dropped
        clean = [d["rate"] for d in drops
                 if d["dropped"] == 0 and d["achieved_rate"] >= 0.95 * d["rate"]]  # fmt: skip
        results["highest_rate_without_drops"] = max(clean) if clean else None
        print(f"  highest rate with 0 drops: {max(clean) if clean else 'none'}")

        if args.profile:
            print("\npy-spy profile of the sidecar under wrk load")
            lines = profile(sidecar.pid, wrk_bin, sidecar_url + path, body_file, 12)
            results["profile"] = lines
            print("\n".join(lines))

        sidecar.terminate()
        sidecar.wait(30)
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "capture_overhead.json"
    out.write_text(json.dumps(results, indent=2))
    print(f"\nwrote {out}")
    if os.environ.get("SHADOW_BENCH_KEEP"):
        print(f"work dir kept: {work}")


if __name__ == "__main__":
    main()
