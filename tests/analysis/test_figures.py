"""The figure registry: one name per figure, in the JSON's order, and the gate's vocabulary."""

from __future__ import annotations

import pytest

from analysis.figures import (
    DELTA_FIGURES,
    FIGURES,
    absolute_gate_figures,
    figure,
    relative_gate_figures,
    summary_figures,
)
from analysis.gate import check_rules
from analysis.sql import SUMMARY_COLUMNS
from shadow.config import GateRule
from shadow.errors import UsageError


def test_relative_changes_are_the_latency_ttft_quantiles_and_cost_per_success() -> None:
    """delta keys: every latency and TTFT quantile, tokens and cost per request, cost per
    success and the geometric-mean ratios; ok_rate is in points."""
    assert DELTA_FIGURES == (
        "latency_p50_ms", "latency_p95_ms", "latency_p99_ms",
        "ttft_p50_ms", "ttft_p95_ms", "ttft_p99_ms", "tokens_per_request",
        "cost_per_request_usd", "cost_per_success_usd", "latency_ratio", "ttft_ratio",
    )  # fmt: skip
    assert relative_gate_figures() == {*DELTA_FIGURES, "ok_rate"}
    assert FIGURES["ok_rate"].change == "points"


def test_counts_are_not_gateable_and_divergence_is_per_request() -> None:
    """max/min rules take every figure but the counts; the headline figures count requests
    (a trace on an arm with all its attempts), the attempt_ ones and token sums attempts."""
    assert set(FIGURES) - absolute_gate_figures() == {
        "n", "skipped", "prompt_tokens", "completion_tokens", "attempts", "divergence_n",
        "noise_floor", "paired_n",
    }  # fmt: skip
    per_attempt = {name for name, f in FIGURES.items() if f.per == "attempt"}
    assert per_attempt == {
        "attempt_ok_rate", "prompt_tokens", "completion_tokens", "cost_usd", "attempts",
        "attempt_latency_p50_ms", "attempt_latency_p95_ms", "attempt_latency_p99_ms",
        "attempt_ttft_p50_ms", "attempt_ttft_p95_ms", "attempt_ttft_p99_ms", "itl_p50_ms",
        "itl_p95_ms",
    }  # fmt: skip
    for name in (
        "n",
        "ok_rate",
        "latency_p99_ms",
        "ttft_p50_ms",
        "tpot_p95_ms",
        "latency_ratio",
        "cost_per_success_usd",
        "schedule_lag_p99_ms",
        "excess_divergence",
    ):
        assert FIGURES[name].per == "request", name
    assert FIGURES["latency_p99_ms"].better == "lower"
    assert FIGURES["goodput"].better == "higher"


def test_the_summary_columns_come_from_the_registry() -> None:
    """Run.summary's columns are the arm and the registry's summary figures, in order."""
    assert ("arm", *summary_figures()) == SUMMARY_COLUMNS
    assert SUMMARY_COLUMNS[:3] == ("arm", "n", "ok_rate")
    assert SUMMARY_COLUMNS[-1] == "cost_per_success_usd"


def test_an_unknown_figure_is_refused_with_the_known_names() -> None:
    """figure() names the registry; a gate rule on an unknown or ungateable figure is bad input."""
    with pytest.raises(KeyError, match="'vibes' is not a figure; figures are n, ok_rate, skipped"):
        figure("vibes")
    with pytest.raises(
        UsageError, match="cannot take max/min; use one of attempt_latency_p50_ms, "
    ):
        check_rules([GateRule(metric="n", max=3)])
    with pytest.raises(UsageError, match="cannot take a relative bound"):
        check_rules([GateRule(metric="goodput", max_increase_pct=3)])
    check_rules([GateRule(metric="ok_rate", max_decrease_pct=1), GateRule(metric="goodput", min=1)])
