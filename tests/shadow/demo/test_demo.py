"""``shadow demo``: the whole flow as one command, its packaged data, and its clean shutdown."""

from __future__ import annotations

import hashlib
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb
import pytest

from shadow.demo.traffic import WINDOW_FIRST_ROW, WINDOW_ROWS, data_file, demo_records
from shadow.trace.azure import COLUMNS, read_azure_csv

DEMO = [sys.executable, "-m", "shadow", "demo"]
ARMS = {"baseline", "candidate", "baseline_repeat"}


def _demo(out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*DEMO, "--out", str(out), *args], capture_output=True, text=True, timeout=200
    )


def _alive(pid: int) -> bool:
    """Whether a process runs (a zombie waiting to be reaped does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def _started(out: Path) -> list[int]:
    """Every pid the demo recorded in DIR/logs/pids.txt."""
    lines = (out / "logs" / "pids.txt").read_text().splitlines()
    return [int(line.split()[0]) for line in lines if line.strip()]


def _mentioning(text: str) -> list[int]:
    """Live processes other than this one whose command line mentions ``text``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline and _alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def _assert_all_stopped(out: Path) -> None:
    pids = _started(out)
    assert len(pids) >= 5  # broker, its Tansu process, baseline, candidate, capture
    assert [pid for pid in pids if _alive(pid)] == []
    assert _mentioning(str(out)) == []


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_demo_runs_the_whole_flow_and_reruns_into_the_same_directory(tmp_path: Path) -> None:
    """Two runs into one directory each exit 0 with results for every request, and a report."""
    out = tmp_path / "demo"
    for embedder in ("auto", "lexical"):
        result = _demo(out, "--requests", "40", "--speed", "4", "--embedder", embedder)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "driving 40 requests" in result.stdout
        assert f"report:  {out / 'report.html'}" in result.stdout
        assert f"results: {out / 'results.duckdb'}" in result.stdout
        # The summary is shadow analyze's table, by size, with all three arms.
        assert re.search(r"run demo-\S+ \(vs baseline\)", result.stdout)
        assert re.search(r"│ short\s+│ candidate\s+│", result.stdout)
        assert "baseline_repeat" in result.stdout
        # Three verdicts: an inconclusive check is never printed as a pass.
        verdict = r"^gate: (passed|FAILED|INCONCLUSIVE|NOTHING JUDGED), "
        assert re.search(verdict, result.stdout, re.MULTILINE)
        checks = (out / "gate.txt").read_text().splitlines()[:-1]
        assert checks
        assert all(re.match(r"(PASS|FAIL|INCONCLUSIVE|TOO_SMALL|NO_DATA) ", c) for c in checks)

        with duckdb.connect(str(out / "results.duckdb"), read_only=True) as con:
            runs = con.execute("select count(*) from runs").fetchone()
            per_trace = con.execute(
                "select trace_id, list(distinct arm) from results group by trace_id"
            ).fetchall()
            per_arm = dict(con.execute("select arm, count(*) from results group by arm").fetchall())
            candidate = "select distinct model from results where arm = 'candidate'"
            models = {model for (model,) in con.execute(candidate).fetchall()}
        assert runs == (1,)  # the rerun replaced the first run's results
        assert len(per_trace) == 40
        assert all(set(arms) == ARMS for _, arms in per_trace)
        assert per_arm == dict.fromkeys(ARMS, 40)
        assert models == {"shadow-small", "shadow-large"}  # the candidate routed both ways

        report = (out / "report.html").read_text()
        assert len(report) > 20_000
        assert "<html" in report.lower()
        printed = {line.rstrip() for line in result.stdout.splitlines()}
        summary = (out / "summary.txt").read_text().splitlines()
        assert {line.rstrip() for line in summary} <= printed
        # The notes shadow analyze prints under its table come with it, as plain text.
        assert any(line.startswith("replay fidelity (40 traces)") for line in summary)
        for name in ("broker", "baseline", "candidate", "capture", "replay"):
            assert (out / "logs" / f"{name}.log").read_text().startswith("$ shadow ")
        _assert_all_stopped(out)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_ctrl_c_while_driving_traffic_stops_every_child_and_exits_130(tmp_path: Path) -> None:
    """The first Ctrl-C stops every process the demo started and exits 130."""
    out = tmp_path / "demo"
    lines: queue.Queue[str] = queue.Queue()
    seen: list[str] = []
    with subprocess.Popen(
        [*DEMO, "--out", str(out), "--requests", "300", "--embedder", "lexical"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as proc:
        assert proc.stdout is not None
        stdout = proc.stdout

        def read_lines() -> None:
            for line in stdout:
                lines.put(line)

        reader = threading.Thread(target=read_lines, daemon=True)
        reader.start()
        deadline = time.monotonic() + 60
        try:
            while not any("driving 300 requests" in line for line in seen):
                assert proc.poll() is None, "".join(seen)
                seen.append(lines.get(timeout=max(0.1, deadline - time.monotonic())))
            proc.send_signal(signal.SIGINT)
            code = proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        reader.join(10)
    seen += list(lines.queue)
    output = "".join(seen)
    assert code == 130, output
    assert "interrupted" in output
    _assert_all_stopped(out)


def test_demo_refuses_a_directory_it_did_not_write(tmp_path: Path) -> None:
    """--out pointing at someone else's files is refused (exit 2) and nothing is removed."""
    (tmp_path / "logs").mkdir()
    (tmp_path / "results.duckdb").write_text("not ours")
    result = _demo(tmp_path)
    assert result.returncode == 2
    assert "was not written by shadow demo" in result.stderr
    assert (tmp_path / "results.duckdb").read_text() == "not ours"


def test_packaged_window_is_the_documented_cut() -> None:
    """The shipped CSV window parses, is in time order, and matches ATTRIBUTION.md."""
    with data_file("ATTRIBUTION.md") as path:
        attribution = path.read_text()
    with data_file("azure_code_2023_window.csv") as path:
        raw = path.read_bytes()
        rows = read_azure_csv(path)
        records = demo_records(path, seed=0)
    assert raw.decode().splitlines()[0] == ",".join(COLUMNS)
    assert len(rows) == WINDOW_ROWS
    assert f"**{WINDOW_ROWS} rows**" in attribution
    last_row = WINDOW_FIRST_ROW + WINDOW_ROWS - 1
    assert f"rows {WINDOW_FIRST_ROW} to {last_row} of the source" in attribution
    stamps = [row.captured_at for row in rows]
    assert stamps == sorted(stamps)
    first, last = raw.decode().splitlines()[1].split(",")[0], raw.decode().splitlines()[-1]
    assert f"`{first}`" in attribution
    assert f"`{last.split(',')[0]}`" in attribution
    assert hashlib.sha256(raw).hexdigest() in attribution
    assert "CC BY 4.0" in attribution
    assert "Splitwise" in attribution
    # Rows keep their numbers in the source file, so trace ids name the source rows.
    assert records[0].trace_id.endswith(f"-{WINDOW_FIRST_ROW:06d}")
    assert records[-1].trace_id.endswith(f"-{last_row:06d}")
    sizes = {record.slices["size"] for record in records}
    assert sizes == {"short", "medium", "long"}
