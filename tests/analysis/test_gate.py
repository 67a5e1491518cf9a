"""`shadow gate`: true positives, true negatives, small slices, bad rules, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from shadow.results.rows import ResultRow
from shadow.results.store import ResultsStore


@pytest.fixture(scope="module")
def run_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run whose candidate is 30% slower on 'hard', the same on 'easy', with a tiny 'rare'."""
    path = tmp_path_factory.mktemp("gate") / "run.duckdb"
    rng = np.random.default_rng(11)
    rows = []
    for intent, slowdown, n in (("easy", 1.0, 300), ("hard", 1.3, 300), ("rare", 3.0, 5)):
        for arm, factor in (("baseline", 1.0), ("candidate", slowdown)):
            for i, latency in enumerate(rng.lognormal(6.0, 0.3, size=n) * factor):
                rows.append(
                    ResultRow(
                        run_id="r",
                        trace_id=f"{intent}-{i}",
                        arm=arm,
                        scheduled_at=0.0,
                        sent_at=0.0,
                        latency_ms=float(latency),
                        status=200,
                        ok=True,
                        model="m",
                        prompt_tokens=10,
                        completion_tokens=5,
                        cost_usd=0.001,
                        slices={"intent": intent},
                        output_text="same answer",
                    )
                )
    with ResultsStore.open(path) as store:
        store.start_run("r", source="t", config={}, arms=["baseline", "candidate"])
        store.write(rows)
    return path


def gate(run: Path, rules: str, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    file = tmp_path / "gates.toml"
    file.write_text(rules)
    return subprocess.run(
        [sys.executable, "-m", "shadow", "gate", str(run), "--rules", str(file), *extra,
         *(() if "--embedder" in extra or "embedder" in rules else ("--embedder", "lexical"))],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


P50_RULE = '[[gate]]\nmetric = "latency_p50_ms"\nmax_increase_pct = {bound}\nby = ["intent"]\n'


def test_a_real_regression_fails_with_exit_1_and_one_line_per_failure(
    run_file: Path, tmp_path: Path
) -> None:
    """'hard' is 30% slower: a 10% bound fails there, passes 'easy', and skips tiny 'rare'."""
    result = gate(run_file, P50_RULE.format(bound=10), tmp_path, "--format", "json")
    assert result.returncode == 1, result.stderr
    verdicts = {v["slice"]["intent"]: v for v in json.loads(result.stdout)["verdicts"]}
    assert verdicts["hard"]["status"] == "fail"
    assert verdicts["hard"]["lo"] > 0.1
    assert verdicts["easy"]["status"] == "pass"
    assert verdicts["rare"]["status"] == "too_small"
    text = gate(run_file, P50_RULE.format(bound=10), tmp_path)
    failures = [line for line in text.stdout.splitlines() if line.startswith("FAIL")]
    assert len(failures) == 1
    assert "intent=hard" in failures[0]


def test_a_generous_bound_passes_with_exit_0(run_file: Path, tmp_path: Path) -> None:
    """With a 60% bound nothing fails: the gate exits 0."""
    result = gate(run_file, P50_RULE.format(bound=60), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "gate: passed" in result.stdout


def test_absolute_rules_compare_the_candidates_value(run_file: Path, tmp_path: Path) -> None:
    """max/min rules judge the figure itself: identical outputs have zero divergence."""
    rules = '[[gate]]\nmetric = "divergence_mean"\nmax = 0.01\n'
    rules += '[[gate]]\nmetric = "ok_rate"\nmax_decrease_pct = 1\n'
    result = gate(run_file, rules, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_rule_that_cannot_apply_is_bad_input(run_file: Path, tmp_path: Path) -> None:
    """An unknown metric, or a file without rules, is one line and exit 2."""
    bad = gate(run_file, '[[gate]]\nmetric = "vibes"\nmax_increase_pct = 5\n', tmp_path)
    assert bad.returncode == 2
    assert len(bad.stderr.strip().splitlines()) == 1
    assert "vibes" in bad.stderr
    empty = gate(run_file, "# nothing\n", tmp_path)
    assert empty.returncode == 2


def test_excess_divergence_and_goodput_rules_use_the_run_and_the_rules_files_slos(
    tmp_path: Path,
) -> None:
    """Excess divergence fails by its interval only where answers really changed; the rules
    file's [analysis] SLO sets goodput, which a min rule then judges."""
    path = tmp_path / "div.duckdb"
    rows = []
    for intent in ("easy", "hard"):
        for i in range(120):
            base = f"answer {i} about the parser and its tokens"
            for arm, text, latency in (
                ("baseline", base, 100.0),
                ("baseline_repeat", base, 100.0),
                ("candidate", "unrelated reply" if intent == "hard" else base, 300.0),
            ):
                rows.append(
                    ResultRow(
                        run_id="r",
                        trace_id=f"{intent}-{i}",
                        arm=arm,
                        scheduled_at=0.0,
                        sent_at=0.0,
                        latency_ms=latency,
                        status=200,
                        ok=True,
                        model="m",
                        slices={"intent": intent},
                        output_text=text,
                    )
                )
    with ResultsStore.open(path) as store:
        store.start_run("r", source="t", config={}, arms=["baseline", "candidate"])
        store.write(rows)
    rules = (
        '[analysis]\nslo_latency_ms = 200\nembedder = "lexical"\n'
        '[[gate]]\nmetric = "excess_divergence"\nmax = 0.05\nby = ["intent"]\n'
        '[[gate]]\nmetric = "goodput"\nmin = 0.9\n'
    )
    result = gate(path, rules, tmp_path, "--format", "json")
    assert result.returncode == 1, result.stderr
    verdicts = json.loads(result.stdout)["verdicts"]
    by_slice = {v["slice"].get("intent"): v for v in verdicts if v["metric"] == "excess_divergence"}
    assert by_slice["hard"]["status"] == "fail"
    assert by_slice["hard"]["lo"] > 0.05
    assert by_slice["easy"]["status"] == "pass"
    goodput = next(v for v in verdicts if v["metric"] == "goodput")
    assert goodput["status"] == "fail"
    assert goodput["value"] == 0.0


def test_a_straddling_interval_is_inconclusive_and_exits_1_unless_allowed(
    run_file: Path, tmp_path: Path
) -> None:
    """'hard' is ~30% slower: against a 30% bound its interval straddles, so the check is
    INCONCLUSIVE (never PASS) with the detectable change and the traces that would settle it;
    --allow-inconclusive exits 0 and says so."""
    result = gate(run_file, P50_RULE.format(bound=30), tmp_path, "--format", "json")
    assert result.returncode == 1, result.stderr
    out = json.loads(result.stdout)
    assert out["verdict"] == "inconclusive"
    assert out["passed"] is False
    verdicts = {v["slice"]["intent"]: v for v in out["verdicts"]}
    hard = verdicts["hard"]
    assert hard["status"] == "inconclusive"
    assert hard["lo"] < 0.3 < hard["hi"]
    assert hard["mde"] == pytest.approx(1.4287 * (hard["hi"] - hard["lo"]) / 2, rel=1e-3)
    assert hard["n_needed"] > 300
    assert verdicts["easy"]["status"] == "pass"
    assert verdicts["easy"]["n_needed"] is None
    text = gate(run_file, P50_RULE.format(bound=30), tmp_path)
    assert text.returncode == 1
    hard_line = next(line for line in text.stdout.splitlines() if "intent=hard" in line)
    assert hard_line.startswith("INCONCLUSIVE")
    assert "traces in this slice" in hard_line
    assert "gate: INCONCLUSIVE" in text.stdout
    allowed = gate(run_file, P50_RULE.format(bound=30), tmp_path, "--allow-inconclusive")
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    assert "--allow-inconclusive" in allowed.stdout
    as_json = gate(
        run_file, P50_RULE.format(bound=30), tmp_path, "--allow-inconclusive", "--format", "json"
    )
    assert json.loads(as_json.stdout)["passed"] is True
    assert json.loads(as_json.stdout)["verdict"] == "inconclusive"


def test_judging_nothing_is_never_a_pass(run_file: Path, tmp_path: Path) -> None:
    """Every slice too small, or a divergence rule without a baseline_repeat arm: exit 1 with
    the reason, even when another rule passes."""
    small = P50_RULE.format(bound=60) + "min_samples = 1000\n"
    result = gate(run_file, small, tmp_path, "--format", "json")
    assert result.returncode == 1, result.stderr
    out = json.loads(result.stdout)
    assert out["verdict"] == "nothing_judged"
    assert {v["status"] for v in out["verdicts"]} == {"too_small"}
    assert "fewer than 1000" in out["unjudged"][0]
    rules = P50_RULE.format(bound=60) + '[[gate]]\nmetric = "excess_divergence"\nmax = 0.05\n'
    text = gate(run_file, rules, tmp_path)
    assert text.returncode == 1
    last = text.stdout.strip().splitlines()[-1]
    assert last.startswith("gate: NOTHING JUDGED")
    assert "baseline_repeat" in last
    assert not any(line.startswith("PASS") and "excess" in line for line in text.stdout.split("\n"))


def test_a_rule_by_an_unknown_slice_is_bad_input(run_file: Path, tmp_path: Path) -> None:
    """A misspelled slice never judges the whole run: one line naming it and the run's slices."""
    bad = gate(run_file, '[[gate]]\nmetric = "latency_p50_ms"\nmax_increase_pct = 5\n'
               'by = ["intnt"]\n', tmp_path)  # fmt: skip
    assert bad.returncode == 2, bad.stdout
    assert len(bad.stderr.strip().splitlines()) == 1
    assert "'intnt'" in bad.stderr
    assert "intent" in bad.stderr.replace("'intnt'", "")
