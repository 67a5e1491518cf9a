"""analysis.verdicts: pass, fail or inconclusive by the interval; mde, n_needed; the verdict."""

from __future__ import annotations

import pytest

from analysis.verdicts import (
    POWER_FACTOR,
    Status,
    Verdict,
    decide,
    detectable,
    min_samples,
    settle,
    traces_needed,
)
from shadow.config import GateRule


def test_an_interval_is_within_beyond_or_astride_its_bound() -> None:
    """Upper bounds: pass when hi <= bound, fail when lo > bound; lower bounds mirror it."""
    assert settle(0.01, 0.09, upper=0.1) == "pass"
    assert settle(0.11, 0.30, upper=0.1) == "fail"
    assert settle(0.05, 0.15, upper=0.1) == "inconclusive"
    assert settle(-0.5, 0.1, upper=0.1) == "pass"  # touching the bound is within it
    assert settle(-0.009, 0.02, lower=-0.01) == "pass"
    assert settle(-0.05, -0.02, lower=-0.01) == "fail"
    assert settle(-0.02, 0.0, lower=-0.01) == "inconclusive"


def test_mde_is_two_point_eight_standard_errors_and_n_needed_scales_with_its_square() -> None:
    """Half-width 0.1 is 1.96 SE, so mde = 2.80 SE = 0.143; at half that distance from the
    bound the run needs 4x the traces."""
    assert pytest.approx((1.959964 + 0.841621) / 1.959964) == POWER_FACTOR
    mde = detectable(0.0, 0.2)
    assert mde == pytest.approx(0.1429, abs=1e-4)
    assert traces_needed(500, 0.1 + mde, 0.1, mde) == 501  # already settled: at least n + 1
    assert traces_needed(500, 0.1 + mde / 2, 0.1, mde) == 2000
    assert traces_needed(500, 0.1, 0.1, mde) is None  # estimate on the bound: no number helps


def test_min_samples_defaults_come_from_the_figure() -> None:
    """30 for means, ratios and medians, 150 for a p99 figure; an explicit value wins."""
    assert min_samples(GateRule(metric="latency_p50_ms", max_increase_pct=5)) == 30
    assert min_samples(GateRule(metric="ttft_p95_ms", max_increase_pct=5)) == 30
    assert min_samples(GateRule(metric="latency_p99_ms", max_increase_pct=5)) == 150
    assert min_samples(GateRule(metric="excess_divergence", max=0.05)) == 30
    assert min_samples(GateRule(metric="latency_p99_ms", max_increase_pct=5, min_samples=7)) == 7


def _v(rule: GateRule, status: Status, message: str = "m") -> Verdict:
    return Verdict(rule=rule, slice={}, status=status, value=None, lo=None, hi=None,
                   message=message)  # fmt: skip


def test_the_gate_verdict_orders_fail_nothing_judged_inconclusive_pass() -> None:
    """Any fail fails; a rule that judged nothing is never a pass, even with inconclusive
    allowed; inconclusive exits 1 unless allowed; only all-pass passes."""
    a = GateRule(metric="latency_p50_ms", max_increase_pct=5)
    b = GateRule(metric="ok_rate", max_decrease_pct=1)
    assert decide([_v(a, "pass"), _v(b, "pass")]).exit_code == 0
    assert decide([_v(a, "pass"), _v(a, "too_small"), _v(b, "pass")]).verdict == "pass"
    unsure = decide([_v(a, "pass"), _v(b, "inconclusive")])
    assert (unsure.verdict, unsure.exit_code, unsure.passed) == ("inconclusive", 1, False)
    allowed = decide([_v(a, "pass"), _v(b, "inconclusive")], allow_inconclusive=True)
    assert (allowed.exit_code, allowed.passed) == (0, True)
    failed = decide([_v(a, "fail"), _v(b, "inconclusive")], allow_inconclusive=True)
    assert (failed.verdict, failed.exit_code) == ("fail", 1)
    nothing = decide([_v(a, "inconclusive"), _v(b, "no_data", "ok_rate: no interval")],
                     allow_inconclusive=True)  # fmt: skip
    assert (nothing.verdict, nothing.exit_code) == ("nothing_judged", 1)
    assert nothing.unjudged == ["ok_rate judged nothing (ok_rate: no interval)"]
    small = decide([_v(a, "too_small"), _v(a, "too_small")])
    assert small.verdict == "nothing_judged"
    assert "fewer than 30 samples" in small.unjudged[0]
    assert decide([]).verdict == "nothing_judged"


def test_text_lines_label_each_status_and_never_call_inconclusive_a_pass() -> None:
    """One line per check starting with its status, then the verdict line."""
    a = GateRule(metric="latency_p50_ms", max_increase_pct=5)
    lines = decide([_v(a, "pass", "x"), _v(a, "inconclusive", "y")]).lines()
    assert lines[0].startswith("PASS ")
    assert lines[1].startswith("INCONCLUSIVE y")
    assert lines[-1].startswith("gate: INCONCLUSIVE, 1 of 2 judged checks")
    assert decide([_v(a, "pass")]).lines()[-1] == "gate: passed, all 1 judged checks pass"
    tail = decide([_v(a, "fail"), _v(a, "too_small")]).lines()[-1]
    assert tail == "gate: FAILED, 1 of 1 judged checks failed; 1 not judged (too small or no data)"


def test_the_summary_says_what_settles_an_inconclusive_gate() -> None:
    """Straddling checks are settled by more traces; a cost with no price is not."""
    rule = GateRule(metric="cost_per_success_usd", max_increase_pct=0)

    def check(n_needed: int | None) -> Verdict:
        return Verdict(rule=rule, slice={}, status="inconclusive", value=None, lo=None,
                       hi=None, message="m", n=50, n_needed=n_needed)  # fmt: skip

    assert decide([check(400)]).lines()[-1].endswith("more traces would settle them")
    assert decide([check(None)]).lines()[-1].endswith("each check says what would settle it")
    mixed = decide([check(400), check(None)]).lines()[-1]
    assert mixed.endswith("more traces would settle 1; the others say what would")
