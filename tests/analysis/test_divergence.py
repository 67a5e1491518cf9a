"""Output divergence: lexical, structural, embedding-based, and the noise floor in analyze."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from analysis.analyze import analyze
from analysis.divergence import divergence, kind, lexical, structural
from analysis.run import open_run
from shadow.results.rows import ResultRow
from shadow.results.store import ResultsStore


def test_lexical_is_one_minus_token_f1() -> None:
    """Identical texts are 0, disjoint ones 1, and a partial overlap is 1 − F1 by hand."""
    assert lexical("The cache reads it", "the CACHE reads it") == 0.0
    assert lexical("alpha beta", "gamma delta") == 1.0
    # 3 of 4 tokens shared on both sides: precision = recall = 0.75, F1 = 0.75.
    assert lexical("a b c d", "a b c x") == pytest.approx(0.25)
    assert lexical("", None) == 0.0


def test_structural_compares_json_leaves() -> None:
    """JSON outputs compare by (path, type, value) leaves; non-JSON gives None."""
    same = '{"name": "f", "args": {"x": 1}}'
    changed = '{"name": "f", "args": {"x": "1"}}'  # a type change on one of two leaves
    assert structural(same, same) == 0.0
    assert structural(same, changed) == pytest.approx(1 - 1 / 3)
    assert structural("plain text", same) is None
    assert structural("42", "42") is None  # scalars are text, not structure


class UnitEmbedder:
    """Maps known texts to fixed unit vectors (a stand-in for a sentence model)."""

    name = "unit-test"

    def __init__(self, vectors: dict[str, Sequence[float]]) -> None:
        self.vectors = {k: np.asarray(v) / np.linalg.norm(v) for k, v in vectors.items()}

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return np.stack([self.vectors[t] for t in texts])


def test_divergence_uses_embeddings_when_given_and_skips_failures() -> None:
    """With an embedder, text pairs use 1 − cosine; a missing output gives NaN."""
    embedder = UnitEmbedder({"hi": [1, 0], "hello": [1, 1], "bye": [0, 1]})
    values = divergence(["hi", "hi", None], ["hello", "hi", "bye"], embedder)
    assert values[0] == pytest.approx(1 - math.cos(math.pi / 4))
    assert values[1] == pytest.approx(0.0)
    assert np.isnan(values[2])
    assert kind(embedder) == "semantic:unit-test"
    assert kind(None) == "lexical"


def test_analyze_reports_excess_divergence_over_the_noise_floor(tmp_path: Path) -> None:
    """Candidate divergence minus the baseline-vs-repeat divergence is the excess."""
    outputs = {
        "baseline": "a b c d",
        "baseline_repeat": "a b c e",  # noise: 1 − F1 = 0.25
        "candidate": "a b x y",  # 1 − F1 = 0.5
    }
    rows = [
        ResultRow(
            run_id="r",
            trace_id=f"t{i}",
            arm=arm,
            scheduled_at=0.0,
            sent_at=0.0,
            latency_ms=100.0 + i,
            status=200,
            ok=True,
            output_text=text,
            slices={"intent": "x"},
        )
        for i in range(10)
        for arm, text in outputs.items()
    ]
    path = tmp_path / "run.duckdb"
    with ResultsStore.open(path) as store:
        store.start_run("r", source="t", config={}, arms=list(outputs))
        store.write(rows)
    report = analyze(open_run(path), ["intent"], n_boot=200).to_json()
    groups = {g["arm"]: g for g in report["groups"]}
    assert report["divergence_kind"] == "lexical"
    assert groups["candidate"]["divergence_mean"] == pytest.approx(0.5)
    assert groups["baseline_repeat"]["divergence_mean"] == pytest.approx(0.25)
    assert groups["candidate"]["excess_divergence"] == pytest.approx(0.25)
    assert groups["baseline_repeat"]["excess_divergence"] is None
    assert "divergence_mean" not in groups["baseline"]


def test_divergent_lists_the_most_different_pairs_with_both_texts(tmp_path: Path) -> None:
    """Run.divergent(k) returns the k traces furthest from the baseline, most divergent first."""
    rows = []
    for i in range(6):
        words = " ".join(["same"] * (6 - i) + ["other"] * i)
        for arm, text in (("baseline", "same " * 6), ("candidate", words)):
            rows.append(
                ResultRow(
                    run_id="r",
                    trace_id=f"t{i}",
                    arm=arm,
                    scheduled_at=0.0,
                    ok=True,
                    output_text=text.strip(),
                )
            )
    path = tmp_path / "run.duckdb"
    with ResultsStore.open(path) as store:
        store.start_run("r", source="t", config={}, arms=["baseline", "candidate"])
        store.write(rows)
    top = open_run(path).divergent(3)
    assert top["trace_id"].to_list() == ["t5", "t4", "t3"]
    assert top["divergence"].to_list() == sorted(top["divergence"].to_list(), reverse=True)
    assert top["candidate_text"][0].count("other") == 5
    assert top["baseline_text"][0] == "same same same same same same"


def test_tool_calls_are_compared_by_name_and_arguments() -> None:
    """Same tool and arguments: 0; another argument value: > 0; another tool: more."""
    from shadow.wire.usage import output_text

    def call(name: str, arguments: str) -> str | None:
        body = {"choices": [{"index": 0, "message": {"content": None, "tool_calls": [
            {"function": {"name": name, "arguments": arguments}}]}}]}  # fmt: skip
        return output_text(json.dumps(body).encode(), None)

    base = call("get_weather", '{"city": "Oslo", "unit": "C"}')
    assert structural(base, call("get_weather", '{"unit": "C", "city": "Oslo"}')) == 0.0
    other_city = structural(base, call("get_weather", '{"city": "Bergen", "unit": "C"}'))
    other_tool = structural(base, call("book_flight", '{"to": "Bergen"}'))
    assert other_city is not None
    assert other_tool is not None
    assert 0.0 < other_city < other_tool <= 1.0


def test_empty_outputs_are_the_same_and_empty_vs_text_is_unrelated_with_an_embedder() -> None:
    """With an embedder, two empty answers diverge 0 and an empty vs a real answer 1, without
    asking the embedder about an empty text."""

    class Refuses:
        name = "refuses-empty"

        def embed(self, texts: Sequence[str]) -> np.ndarray:
            assert all(t.strip() for t in texts)
            return np.tile([1.0, 0.0], (len(texts), 1))

    values = divergence(["", " ", "answer"], ["", "answer", "answer"], Refuses())
    assert values.tolist() == [0.0, 1.0, 0.0]


def test_semantic_divergence_stays_within_zero_and_one() -> None:
    """Opposite embeddings (cosine −1) are unrelated (1), not beyond it; the same text is 0."""

    class Opposite:
        name = "opposite"

        def embed(self, texts: Sequence[str]) -> np.ndarray:
            sign = [(-1.0 if t.startswith("no") else 1.0) for t in texts]
            return np.array([[s, 0.0] for s in sign])

    values = divergence(["yes", "yes"], ["no", "yes"], Opposite())
    assert values.tolist() == [1.0, 0.0]
