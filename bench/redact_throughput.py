"""Redaction throughput: how long the tee worker spends scrubbing one record's bodies.

Redaction runs off the live path, in the tee worker (capture/tee.py), so its cost is not
added latency; but a slow body holds the worker, and the queue fills behind it. This bench
times ``Redactor.body`` (every scrubber on, the defaults) on:

- **1 MB chat**: a JSON chat request whose messages hold long prose with code, numbers,
  ids and a few planted secrets (the worst common case: a long-context request);
- **small chat**: 2 KB chat bodies, many of them (the common case);
- **1 MB numbers**: an embeddings-style response, mostly floats;
- **SSE text**: 100 KB of reassembled streamed text through ``Redactor.text``.

Each figure is the best of ``--repeat`` runs: MB/s and milliseconds per MB (for small
bodies, microseconds per body too). Installs nothing beyond the project. Writes
bench/results/redact_throughput.json.

    python bench/redact_throughput.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from capture.redact import Redactor

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
WORDS = (
    "the parser reads each token and returns a tree; call render(node) with max_tokens=256 "
    "and check status 200 before retrying the request id 550e8400-e29b-41d4-a716-446655440000 "
    "at 2025-01-15T10:30:00Z for version v1.2.3 priced $12.50 or 1234 units of 0.25"
).split()
SECRETS = [
    "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789ABCD",
    "AKIAIOSFODNN7EXAMPLE",
    "ann@example.com",
    "4111 1111 1111 1111",
    "password=hunter2x!",
    "+44 20 7946 0958",
]


def _prose(rng: random.Random, size: int) -> str:
    parts: list[str] = []
    total = 0
    while total < size:
        word = rng.choice(SECRETS) if rng.random() < 0.002 else rng.choice(WORDS)
        parts.append(word)
        total += len(word) + 1
    return " ".join(parts)


def _chat(rng: random.Random, size: int) -> bytes:
    per = max(64, size // 8)
    messages = [{"role": "user", "content": _prose(rng, per)} for _ in range(max(1, size // per))]
    return json.dumps({"model": "gpt-4o-mini", "messages": messages, "max_tokens": 512}).encode()


def _numbers(rng: random.Random, size: int) -> bytes:
    count = size // 21
    data = [{"embedding": [rng.uniform(-1, 1) for _ in range(count)], "index": 0}]
    return json.dumps({"object": "list", "data": data}).encode()


def _best(run: Callable[[], Any], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    rng = random.Random(13)
    redactor = Redactor()
    big = _chat(rng, 1 << 20)
    small = [_chat(rng, 2048) for _ in range(500)]
    numbers = _numbers(rng, 1 << 20)
    stream = _prose(rng, 100 * 1024)
    results: dict[str, Any] = {"bench": "redact_throughput", "at": time.time()}

    def row(name: str, seconds: float, nbytes: int, count: int = 1) -> None:
        mb = nbytes / 1e6
        results[name] = {
            "bytes": nbytes,
            "bodies": count,
            "seconds": seconds,
            "mb_per_s": mb / seconds,
            "ms_per_mb": seconds * 1000 / mb,
            "us_per_body": seconds * 1e6 / count,
        }
        print(
            f"{name:14s} {mb / seconds:8.1f} MB/s  {seconds * 1000 / mb:7.2f} ms/MB  "
            f"{seconds * 1e6 / count:10.1f} us/body"
        )

    kind = "application/json"
    row("chat_1mb", _best(lambda: redactor.body(big, kind), args.repeat), len(big))
    row(
        "chat_2kb",
        _best(lambda: [redactor.body(b, kind) for b in small], args.repeat),
        sum(map(len, small)),
        len(small),
    )
    row("numbers_1mb", _best(lambda: redactor.body(numbers, kind), args.repeat), len(numbers))
    row("sse_text_100kb", _best(lambda: redactor.text(stream), args.repeat), len(stream))
    assert b"AKIAIOSFODNN7EXAMPLE" not in redactor.body(big, kind)
    results["load_average"] = os.getloadavg()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "redact_throughput.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {RESULTS / 'redact_throughput.json'}")


if __name__ == "__main__":
    main()
