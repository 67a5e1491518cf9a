"""analysis.cost: unpriced models named with counts, complete or not, the monthly projection."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from analysis.analyze import analyze
from analysis.cost import (
    MONTH_S,
    GroupCost,
    SpendProjection,
    UnpricedModel,
    group_costs,
    spend_projection,
    unpriced,
)
from analysis.figures import FIGURES
from analysis.gate import evaluate
from analysis.report.charts import cost_by_slice
from analysis.report.page import build_report
from analysis.run import Run, open_run
from analysis.sql import NO_SLICE
from analysis.table import summary_notes, summary_table
from analysis.verdicts import decide
from shadow.config import GateRule, ModelPrice, PriceTier
from shadow.replay.budget import NO_MODEL
from shadow.replay.pricing import PricingTable
from shadow.results.rows import ResultRow, TraceRow
from shadow.results.store import ResultsStore

T0_NS = 1_700_000_000_000_000_000
HOUR_NS = 3_600 * 1_000_000_000


def _row(trace: int, arm: str, **fields: Any) -> ResultRow:
    values: dict[str, Any] = {
        "run_id": "r",
        "trace_id": f"t{trace}",
        "arm": arm,
        "attempt": 0,
        "slices": {"tenant": "acme" if trace % 2 else "globex"},
        "scheduled_at": 1_700_000_000.0 + trace,
        "sent_at": 1_700_000_000.0 + trace,
        "latency_ms": 100.0,
        "status": 200,
        "ok": True,
        "model": "priced",
        "prompt_tokens": 1_000,
        "completion_tokens": 100,
        "cost_usd": 0.01,
    }
    values.update(fields)
    return ResultRow(**values)


def _store(path: Path, results: list[ResultRow], *, span_ns: int = HOUR_NS) -> Run:
    traces = sorted({r.trace_id for r in results})
    rows = [
        TraceRow(
            run_id="r",
            trace_id=t,
            captured_at=T0_NS + (span_ns * i // max(len(traces) - 1, 1)),
            service="chat",
            method="POST",
            path="/v1/chat/completions",
        )
        for i, t in enumerate(traces)
    ]
    store = ResultsStore.open(path)
    store.start_run("r", source="test", config={}, arms=["baseline", "candidate"])
    store.write(results, rows)
    store.finish_run("r", status="done", counts={})
    store.close()
    return open_run(path, "r")


@pytest.fixture
def run(tmp_path: Path) -> Iterator[Run]:
    """4 traces over one hour; the candidate's traces 1 and 3 (acme) answer on gpt-9, unpriced,
    and trace 2 reports no model; the baseline is priced throughout."""
    rows = [_row(t, "baseline") for t in range(4)]
    rows += [_row(0, "candidate")]
    rows += [_row(t, "candidate", model="gpt-9", cost_usd=None) for t in (1, 3)]
    rows += [_row(2, "candidate", model=None, cost_usd=None)]
    rows += [_row(0, "candidate", attempt=1, cost_usd=0.02)]  # a paid retry
    # an error with no tokens and no cost is not unpriced: nothing was billed
    rows += [
        _row(0, "baseline", attempt=1, prompt_tokens=None, completion_tokens=None, cost_usd=None)
    ]
    opened = _store(tmp_path / "run.duckdb", rows)
    yield opened
    opened.close()


def test_unpriced_models_are_named_with_their_attempts(run: Run) -> None:
    """Per arm: gpt-9 twice, the nameless answer once; the baseline has none."""
    assert unpriced(run) == [
        UnpricedModel(group=(), arm="candidate", model="gpt-9", attempts=2),
        UnpricedModel(group=(), arm="candidate", model=NO_MODEL, attempts=1),
    ]


def test_unpriced_models_per_slice(run: Run) -> None:
    """By tenant: gpt-9 is acme's (traces 1 and 3), the nameless one globex's (trace 2)."""
    assert unpriced(run, ["tenant"]) == [
        UnpricedModel(group=("acme",), arm="candidate", model="gpt-9", attempts=2),
        UnpricedModel(group=("globex",), arm="candidate", model=NO_MODEL, attempts=1),
    ]
    assert unpriced(run, ["nosuch"]) == [
        UnpricedModel(group=(NO_SLICE,), arm="candidate", model="gpt-9", attempts=2),
        UnpricedModel(group=(NO_SLICE,), arm="candidate", model=NO_MODEL, attempts=1),
    ]


def test_a_group_with_unpriced_attempts_has_no_cost(run: Run) -> None:
    """The candidate's cost is unknown (not $0.03); the baseline's is complete."""
    costs = {c.arm: c for c in group_costs(run)}
    assert costs["baseline"] == GroupCost(
        group=(),
        arm="baseline",
        attempts=5,
        unpriced_attempts=0,
        skipped_requests=0,
        priced_cost_usd=pytest.approx(0.04),  # type: ignore[arg-type]
    )
    assert costs["baseline"].complete
    assert costs["baseline"].cost_usd == pytest.approx(0.04)
    candidate = costs["candidate"]
    assert not candidate.complete
    assert candidate.cost_usd is None
    assert candidate.priced_cost_usd == pytest.approx(0.03)
    assert candidate.unpriced_attempts == 3


def test_spend_projection_at_the_recorded_rate(run: Run) -> None:
    """$0.04 over a recorded hour is $0.04 × 720 a month; the candidate's is n/a."""
    by_arm = {p.arm: p for p in spend_projection(run)}
    assert by_arm["baseline"] == SpendProjection(
        group=(),
        arm="baseline",
        cost_usd=pytest.approx(0.04),  # type: ignore[arg-type]
        span_s=3_600.0,
        monthly_usd=pytest.approx(0.04 / 3_600 * MONTH_S),  # type: ignore[arg-type]
        reason=None,
    )
    assert by_arm["baseline"].monthly_usd == pytest.approx(28.8)
    assert by_arm["candidate"].monthly_usd is None
    assert by_arm["candidate"].reason == "cost incomplete: 3 unpriced attempts"


def test_spend_projection_per_slice_keeps_the_slice_share(run: Run) -> None:
    """A slice's projection divides its own cost by the whole run's span."""
    rows = {(p.group, p.arm): p for p in spend_projection(run, ["tenant"])}
    globex = rows[(("globex",), "baseline")]  # traces 0 and 2, plus the free error
    assert globex.monthly_usd == pytest.approx(0.02 / 3_600 * MONTH_S)


def test_a_zero_span_or_skipped_requests_give_no_projection(tmp_path: Path) -> None:
    """One instant of traffic has no rate; a skipped request's cost is unknown."""
    rows = [_row(0, "baseline"), _row(1, "baseline")]
    rows += [_row(0, "candidate")]
    rows += [
        _row(
            1,
            "candidate",
            sent_at=None,
            latency_ms=None,
            status=None,
            ok=False,
            error="skipped_budget",
            model=None,
            prompt_tokens=None,
            completion_tokens=None,
            cost_usd=None,
        )
    ]
    run = _store(tmp_path / "zero.duckdb", rows, span_ns=0)
    try:
        by_arm = {p.arm: p for p in spend_projection(run)}
    finally:
        run.close()
    assert by_arm["baseline"].reason == "the recorded span of the traces is 0"
    assert by_arm["baseline"].monthly_usd is None
    assert by_arm["candidate"].reason == "cost incomplete: 1 requests skipped"


def test_reprice_applies_tiers_and_leaves_unknown_models_null(tmp_path: Path) -> None:
    """Run.reprice prices each attempt at the tier its prompt is above, LiteLLM's rule."""
    rows = [
        _row(0, "baseline", model="g", prompt_tokens=250_000, completion_tokens=2_000),
        _row(1, "baseline", model="g", prompt_tokens=100_000, completion_tokens=0),
        _row(2, "baseline", model="gpt-9"),
        _row(3, "baseline", model="g", prompt_tokens=10_000, completion_tokens=100,
             cached_tokens=6_000, cache_write_tokens=3_000),
    ]  # fmt: skip
    run = _store(tmp_path / "tiers.duckdb", rows)
    table = PricingTable(
        {
            "g": ModelPrice(
                input=1.25,
                output=10.0,
                cached_input=0.125,
                cache_write_input=1.5,
                tiers=(PriceTier(above_tokens=200_000, input=2.5, output=15.0),),
            )
        }
    )
    repriced = run.reprice(table)
    try:
        costs = {
            r["trace_id"]: r["cost_usd"]
            for r in repriced.records("SELECT trace_id, cost_usd FROM run_results")
        }
    finally:
        repriced.close()
        run.close()
    assert costs["t0"] == pytest.approx((250_000 * 2.5 + 2_000 * 15.0) / 1e6)
    assert costs["t1"] == pytest.approx(100_000 * 1.25 / 1e6)
    assert costs["t2"] is None
    # cache reads and writes at their own prices, the rest of the prompt at the input price
    assert costs["t3"] == pytest.approx(
        (1_000 * 1.25 + 6_000 * 0.125 + 3_000 * 1.5 + 100 * 10.0) / 1e6
    )
    assert costs["t3"] == pytest.approx(table.cost("g", 10_000, 100, 6_000, 3_000))
    assert repriced.unknown_models == {"gpt-9"}


# -- analyze, the summary table, the report's headline and the gate ---------------------------


@pytest.fixture
def mixed(tmp_path: Path) -> Iterator[Run]:
    """40 traces over one hour, every one priced at $0.01 on the baseline; the candidate
    answers traces 0, 4, 8... on gpt-9 (unpriced, 10 attempts) and the rest at $0.01."""
    rows = [_row(t, "baseline") for t in range(40)]
    rows += [
        _row(t, "candidate", model="gpt-9", cost_usd=None) if t % 4 == 0 else _row(t, "candidate")
        for t in range(40)
    ]
    opened = _store(tmp_path / "mixed.duckdb", rows)
    yield opened
    opened.close()


def test_analyze_marks_an_incomplete_cost_and_keeps_its_priced_part(mixed: Run) -> None:
    """The candidate's cost is the priced $0.30 with cost_complete false and gpt-9 named; its
    projection is n/a with the reason; the baseline's is $0.40 an hour, × 720 a month."""
    result = analyze(mixed)
    base, cand = result.group("baseline"), result.group("candidate")
    assert base is not None
    assert cand is not None
    assert base.cost_complete
    assert base.incomplete("cost_usd") is None
    assert base.value("monthly_spend_usd") == pytest.approx(0.40 / 3_600 * MONTH_S)
    assert base.spend_reason is None
    assert not cand.cost_complete
    assert cand.unpriced == {"gpt-9": 10}
    assert cand.value("cost_usd") == pytest.approx(0.30)  # the priced part, a lower bound
    reason = "cost incomplete: model gpt-9 unpriced (10 attempts)"
    assert cand.incomplete("cost_per_success_usd") == reason
    assert cand.incomplete("latency_p50_ms") is None  # not a cost
    assert cand.value("monthly_spend_usd") is None
    assert cand.spend_reason == reason
    delta = cand.delta["cost_per_success_usd"]
    assert delta.incomplete == "cost incomplete on candidate: model gpt-9 unpriced (10 attempts)"
    assert cand.delta["latency_p50_ms"].incomplete is None
    doc = cand.to_json()
    assert (doc["cost_complete"], doc["unpriced_models"]) == (False, {"gpt-9": 10})
    assert doc["cost_usd"] == pytest.approx(0.30)
    assert (doc["monthly_spend_usd"], doc["monthly_spend_reason"]) == (None, reason)
    assert doc["delta"]["cost_per_success_usd"]["incomplete"] == delta.incomplete
    assert "incomplete" not in doc["delta"]["latency_p50_ms"]
    base_doc = base.to_json()
    assert (base_doc["cost_complete"], base_doc["unpriced_models"]) == (True, {})
    assert base_doc["monthly_spend_usd"] == pytest.approx(28.8 * 10)


def test_an_unpriced_baseline_marks_the_candidates_change_too(tmp_path: Path) -> None:
    """A change against a baseline whose cost is a lower bound is no change of the cost."""
    rows = [_row(t, "baseline", model=None, cost_usd=None) for t in range(4)]
    rows += [_row(t, "candidate") for t in range(4)]
    run = _store(tmp_path / "base.duckdb", rows)
    try:
        cand = analyze(run).group("candidate")
    finally:
        run.close()
    assert cand is not None
    assert cand.cost_complete
    assert cand.delta["cost_per_request_usd"].incomplete == (
        f"cost incomplete on baseline: model {NO_MODEL} unpriced (4 attempts)"
    )


def test_the_table_prints_an_incomplete_cost_as_a_lower_bound_with_a_note(mixed: Run) -> None:
    """Never as free, never as if complete: ≥ the priced part, starred, the model named."""
    result = analyze(mixed)
    buffer = io.StringIO()
    Console(file=buffer, width=250, color_system=None).print(summary_table(result))
    text = buffer.getvalue()
    for header in ("p50 ms", "p95 ms", "ratio (95% CI)", "$/ok", "$/month"):
        assert header in text
    assert "≥0.007500*" in text  # $0.30 over 40 successes, a lower bound
    assert "288.00" in text  # the baseline's monthly spend
    assert "n/a*" in text
    notes = summary_notes(result)
    assert any("candidate: cost incomplete: model gpt-9 unpriced (10 attempts)" in n for n in notes)


def test_the_reports_headline_reads_before_and_after_with_the_spend(mixed: Run) -> None:
    """Median, P95, the latency ratio, cost per success (≥ …*, gpt-9 named) and monthly spend."""
    page = build_report(mixed)
    for name in ("latency_p50_ms", "latency_p95_ms", "latency_ratio", "cost_per_success_usd",
                 "monthly_spend_usd"):  # fmt: skip
        label = FIGURES[name].label
        assert f">{label}</td>" in page
    assert "≥ $0.0075*" in page
    assert "cost incomplete on candidate: model gpt-9 unpriced (10 attempts)" in page
    assert "$288" in page
    assert "n/a*" in page


def test_a_cost_rule_on_an_incomplete_cost_never_passes(mixed: Run) -> None:
    """A relative rule is inconclusive naming gpt-9; a max the priced part already exceeds
    fails; a generous max is inconclusive; a latency rule is judged as usual."""
    rules = [
        GateRule(metric="cost_per_success_usd", max_increase_pct=1000.0, min_samples=5),
        GateRule(metric="cost_usd", max=0.1, min_samples=5),
        GateRule(metric="cost_usd", max=100.0, min_samples=5),
        GateRule(metric="latency_p50_ms", max_increase_pct=1000.0, min_samples=5),
    ]
    verdicts = evaluate(mixed, rules, n_boot=200)
    assert [v.status for v in verdicts] == ["inconclusive", "fail", "inconclusive", "pass"]
    assert verdicts[0].message == (
        "cost_per_success_usd: cost incomplete on candidate: model gpt-9 unpriced (10 attempts)"
    )
    assert "gpt-9 unpriced" in verdicts[1].message
    assert "≥ 0.3 (the priced part" in verdicts[1].message
    assert verdicts[2].message == "cost_usd: cost incomplete: model gpt-9 unpriced (10 attempts)"
    assert decide(verdicts).verdict == "fail"
    assert decide(verdicts[2:]).verdict == "inconclusive"


def test_the_cost_chart_hatches_an_incomplete_bar_and_names_the_models(mixed: Run) -> None:
    """The candidate's bar is the priced part: hatched, labelled ≥, gpt-9 in its hover and a
    subtitle saying so; the complete baseline's bar is plain."""
    fig = cost_by_slice(analyze(mixed).groups)
    bars = {bar.name: bar for bar in fig.data}
    cand, base = bars["candidate"], bars["baseline"]
    assert list(cand.marker.pattern.shape) == ["/"]
    assert list(cand.text) == ["≥"]
    assert "model gpt-9 unpriced (10 attempts): the priced part only" in cand.customdata[0]
    assert cand.y[0] == pytest.approx(0.0075)
    assert list(base.marker.pattern.shape) == [""]
    assert list(base.text) == [""]
    assert "cost incomplete" in fig.layout.title.text
