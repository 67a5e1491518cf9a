"""Open-loop HTTP load: request i is sent at start + i / rate, whatever earlier requests do.

Latency is measured from the *scheduled* send time (no coordinated omission), as wrk2 and
vegeta do. Prints one JSON object: count, errors, p50/p90/p99/max in ms, the achieved rate and
the garbage collections that ran inside the paced window (none: see below).

The generator's own pauses would be charged to the target: a gen2 collection here took 24 ms
at 1,000 req/s (delaying about 24 requests, a sixth of a 15,000-request p99 tail), so the
collector is run and frozen before the paced window and kept off until it ends, as
wrk2 (C) has no collector at all.

    python bench/_openloop.py URL RATE SECONDS [--body FILE] [--save LATENCIES.npy]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import time

import aiohttp
import numpy as np


async def run(
    url: str, rate: float, seconds: float, body: bytes, save: str = ""
) -> dict[str, float]:
    n = int(rate * seconds)
    latencies = np.full(n, np.nan)
    errors = 0
    connector = aiohttp.TCPConnector(limit=0)
    headers = {"content-type": "application/json"}
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(i: int, due: float) -> None:
            nonlocal errors
            try:
                async with session.post(url, data=body, headers=headers) as resp:
                    await resp.read()
                    if resp.status != 200:
                        errors += 1
            except aiohttp.ClientError:
                errors += 1
            latencies[i] = (time.perf_counter() - due) * 1000.0

        # Warm the pool so connection setup is not part of the measurement.
        await asyncio.gather(*(one(0, time.perf_counter()) for _ in range(32)))
        errors = 0
        gc.collect()
        gc.freeze()
        gc.disable()
        collections = sum(s["collections"] for s in gc.get_stats())
        start = time.perf_counter() + 0.05
        tasks = []
        try:
            for i in range(n):
                due = start + i / rate
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(one(i, due)))
            await asyncio.gather(*tasks)
            elapsed = time.perf_counter() - start
            collections = sum(s["collections"] for s in gc.get_stats()) - collections
        finally:
            gc.enable()
            gc.unfreeze()
    done = latencies[~np.isnan(latencies)]
    if save:
        np.save(save, done)  # every latency, for pooling cells across rounds
    return {
        "rate": rate,
        "count": int(done.size),
        "errors": errors,
        "achieved_rate": n / elapsed,
        "p50_ms": float(np.percentile(done, 50)),
        "p90_ms": float(np.percentile(done, 90)),
        "p99_ms": float(np.percentile(done, 99)),
        "max_ms": float(done.max()),
        "gc_collections": collections,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("rate", type=float)
    parser.add_argument("seconds", type=float)
    parser.add_argument("--body", default="")
    parser.add_argument("--save", default="", help="write every latency (ms) to this .npy file")
    args = parser.parse_args()
    body = open(args.body, "rb").read() if args.body else b"{}"  # noqa: SIM115
    import uvloop

    print(json.dumps(uvloop.run(run(args.url, args.rate, args.seconds, body, args.save))))


if __name__ == "__main__":
    main()
