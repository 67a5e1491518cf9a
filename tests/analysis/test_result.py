"""The typed analysis result: its JSON keeps every documented key in order, and what only the
report draws (the ok rate's change in points, the divergence sample) is computed by analyze."""

from __future__ import annotations

import io
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from analysis.analyze import analyze
from analysis.figures import FIGURES
from analysis.result import AnalysisResult
from analysis.run import Run, open_run
from analysis.settings import resolve_settings
from analysis.table import summary_table
from shadow.config import AnalysisConfig
from shadow.results.rows import ResultRow
from shadow.results.store import ResultsStore

ARMS = ("baseline", "candidate", "baseline_repeat")


@pytest.fixture
def run(tmp_path: Path) -> Iterator[Run]:
    """Three arms of 80 traces; the candidate fails one in eight and answers differently."""
    rng = np.random.default_rng(2)
    rows = [
        ResultRow(
            run_id="r", trace_id=f"t{i}", arm=arm, slices={"intent": ("a", "b")[i % 2]},
            scheduled_at=float(i), sent_at=float(i), latency_ms=float(rng.lognormal(5, 0.3)),
            status=200, ok=not (arm == "candidate" and i % 8 == 0), model="m",
            prompt_tokens=10, completion_tokens=5, cost_usd=0.001,
            output_text="other words here" if arm == "candidate" else f"answer {i}",
        )
        for i in range(80)
        for arm in ARMS
    ]  # fmt: skip
    with ResultsStore.open(tmp_path / "run.duckdb") as store:
        store.start_run("r", source="t", config={}, arms=list(ARMS))
        store.write(rows)
    opened = open_run(tmp_path / "run.duckdb")
    yield opened
    opened.close()


def test_json_keys_are_the_documented_ones_in_order(run: Run) -> None:
    """Top level, reference group and compared group keys, in the order --format json prints."""
    data = analyze(run, ["intent"], settings=AnalysisConfig(pin_models={"candidate": "m"}))
    doc = data.to_json()
    assert list(doc) == ["run_id", "baseline_arm", "by", "divergence_kind", "thresholds",
                         "groups", "fidelity", "flagged", "alarms"]  # fmt: skip
    base, cand = doc["groups"][0], doc["groups"][1]
    summary = [
        n for n, f in FIGURES.items() if f.section in ("summary", "cost", "attempt", "extra")
    ]
    tail = ["cost_complete", "unpriced_models", "monthly_spend_reason", "models", "errors",
            "itl_p50_ms", "itl_p95_ms", "too_small"]  # fmt: skip
    assert list(base) == ["slice", "arm", *summary, *tail]
    divergence = ["divergence_mean", "divergence_p95", "divergence_n", "noise_floor",
                  "excess_divergence", "excess_divergence_lo", "excess_divergence_hi",
                  "latency_ratio", "ttft_ratio", "paired_n", "divergence_flagged",
                  "interval_sample", "delta", "tests"]  # fmt: skip
    assert list(cand) == ["slice", "arm", *summary, *tail, "model_mismatches", *divergence]
    assert list(cand["delta"]) == [n for n, f in FIGURES.items() if f.change == "relative"]
    typed = data.group("candidate", {"intent": "a"})
    assert typed is not None
    assert cand["latency_p50_ms"] == typed.value("latency_p50_ms")
    assert (cand["excess_divergence_lo"], cand["excess_divergence_hi"]) == typed.interval(
        "excess_divergence"
    )
    with pytest.raises(KeyError, match="not a figure"):
        typed.value("latency_p42_ms")


def test_the_ok_rate_change_is_computed_in_points_with_its_interval(run: Run) -> None:
    """The candidate loses 10 of 80 requests: -12.5 points; the interval is the paired
    bootstrap's, about as wide as the normal approximation (the baseline never fails)."""
    group = analyze(run).group("candidate")
    assert group is not None
    assert group.ok_rate_change is not None
    p1, p2, n = 1.0, 70 / 80, 80
    se = math.sqrt(p1 * (1 - p1) / n + p2 * (1 - p2) / n) * 100
    change = group.ok_rate_change
    assert change.change == pytest.approx(-12.5)
    assert change.lo is not None
    assert change.hi is not None
    assert change.lo < -12.5 < change.hi <= 0.0
    assert change.hi - change.lo == pytest.approx(2 * 1.96 * se, rel=0.25)
    assert "ok_rate_change" not in group.to_json()


def test_the_divergence_sample_is_kept_only_when_asked(run: Run) -> None:
    """sample=True keeps every trace's final outputs and each arm's divergence from baseline."""
    assert analyze(run).sample is None
    sample = analyze(run, sample=True).sample
    assert sample is not None
    assert (sample.reference, sample.total, len(sample.rows)) == ("baseline", 80, 80)
    traces, scores = sample.scores["candidate"]
    assert len(traces) == 80
    assert np.nanmin(scores) == 1.0  # no word in common with the baseline's answers
    assert sorted(sample.scores) == ["baseline_repeat", "candidate"]


def test_the_summary_table_reads_the_typed_result(run: Run) -> None:
    """The rich table has a row per group with the registry's figures formatted by unit."""
    result: AnalysisResult = analyze(run, ["intent"])
    buffer = io.StringIO()
    Console(file=buffer, width=250, color_system=None).print(summary_table(result))
    text = buffer.getvalue()
    assert "run r (vs baseline)" in text
    assert "75.0%" in text  # the candidate's ok rate on intent a (10 of 40 fail), as a rate
    assert text.count("candidate") == 2


def test_settings_resolve_a_file_then_overrides(tmp_path: Path) -> None:
    """A config's [analysis] section is the default; pins are merged, other keys replaced."""
    config = tmp_path / "shadow.toml"
    config.write_text('[analysis]\nmin_samples = 7\n[analysis.pin_models]\nbaseline = "b"\n')
    settings = resolve_settings(
        config, slo={"slo_ttft_ms": 200.0}, pins={"candidate": "c"}, embedder="lexical"
    )
    assert settings.min_samples == 7
    assert settings.slo_ttft_ms == 200.0
    assert dict(settings.pin_models) == {"baseline": "b", "candidate": "c"}
    assert settings.embedder == "lexical"
    assert resolve_settings(None).min_samples == 30
