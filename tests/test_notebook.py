"""notebooks/divergence.ipynb runs top to bottom on a generated run and shows what it promises."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shadow.results.rows import ResultRow
from shadow.results.store import ResultsStore

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "divergence.ipynb"
INTENTS = ("complete", "refactor")
TENANTS = ("acme", "globex")
N_TRACES = 60
PLOTLY_MIME = "application/vnd.plotly.v1+json"


def _rows() -> list[ResultRow]:
    """Three arms over two intents and two tenants; the candidate rewrites refactor answers."""
    rng = np.random.default_rng(3)
    rows: list[ResultRow] = []
    for i in range(N_TRACES):
        intent, tenant = INTENTS[i % 2], TENANTS[(i // 2) % 2]
        answer = f"def parse_line_{i}(text): return text.split() for line {i}"
        outputs = {
            "baseline": answer,
            "baseline_repeat": answer.replace("return", "yield") if i % 5 == 0 else answer,
            "candidate": (
                f"class Rewriter{i}: completely different refactoring plan number {i}"
                if intent == "refactor"
                else answer
            ),
        }
        for arm, scale in (("baseline", 1.0), ("baseline_repeat", 1.0), ("candidate", 0.7)):
            latency = float(rng.lognormal(6.0, 0.3)) * scale
            rows.append(
                ResultRow(
                    run_id="nb-run",
                    trace_id=f"trace-{i:03d}",
                    arm=arm,
                    slices={"intent": intent, "tenant": tenant},
                    scheduled_at=1_700_000_000.0 + i,
                    sent_at=1_700_000_000.0 + i,
                    ttft_ms=latency * 0.2,
                    latency_ms=latency,
                    service_ms=latency,
                    status=200,
                    ok=True,
                    model="shadow-small" if arm == "candidate" else "shadow-large",
                    prompt_tokens=200,
                    completion_tokens=40,
                    cost_usd=0.002 * scale,
                    output_text=outputs[arm],
                )
            )
    return rows


@pytest.fixture(scope="module")
def run_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("notebook") / "run.duckdb"
    with ResultsStore.open(path) as store:
        store.start_run(
            "nb-run", source="test", config={}, arms=["baseline", "candidate", "baseline_repeat"]
        )
        store.write(_rows())
        store.finish_run("nb-run", status="done", counts={})
    return path


def _text(output: dict[str, Any]) -> str:
    """Everything an output shows as text: stream text, plain and HTML representations."""
    if output["output_type"] == "stream":
        return str(output["text"])
    data = output.get("data", {})
    return "".join(str(data.get(kind, "")) for kind in ("text/plain", "text/html"))


@pytest.mark.slow
def test_notebook_runs_on_a_generated_run(run_path: Path, tmp_path: Path) -> None:
    """Run with SHADOW_RUN set, every cell succeeds; tables, divergent pairs and a plot show."""
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    assert all(
        not cell.get("outputs") and cell.get("execution_count") is None
        for cell in notebook.cells
        if cell.cell_type == "code"
    ), "commit the notebook with outputs stripped"
    client = NotebookClient(
        notebook,
        kernel_name="python3",
        timeout=90,
        startup_timeout=60,
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute(env={**os.environ, "SHADOW_RUN": str(run_path)})

    cells = {cell.id: cell for cell in notebook.cells if cell.cell_type == "code"}
    errors = [
        (cell_id, output)
        for cell_id, cell in cells.items()
        for output in cell.outputs
        if output["output_type"] == "error"
    ]
    assert not errors, errors

    def shown(cell_id: str) -> str:
        return "".join(_text(output) for output in cells[cell_id].outputs)

    assert "nb-run" in shown("open-run")
    summary = shown("summary")
    for value in (*INTENTS, "baseline", "candidate", "baseline_repeat"):
        assert value in summary
    deltas = shown("deltas")
    assert "refactor" in deltas
    assert "latency_p95_ms change" in deltas
    divergent = shown("divergent")
    refactor_ids = [f"trace-{i:03d}" for i in range(N_TRACES) if INTENTS[i % 2] == "refactor"]
    assert sum(trace_id in divergent for trace_id in refactor_ids) >= 5
    assert "Rewriter" in divergent  # the candidate's text is shown beside the baseline's
    for tenant in TENANTS:
        assert tenant in shown("sql")
        assert tenant in shown("polars")
    assert "candidate_p95_change" in shown("polars")
    plots = [output for output in cells["plot"].outputs if PLOTLY_MIME in output.get("data", {})]
    assert len(plots) == 1
    figure = plots[0]["data"][PLOTLY_MIME]
    if isinstance(figure, str):
        figure = json.loads(figure)
    assert sorted(trace["name"] for trace in figure["data"]) == [
        "baseline",
        "baseline_repeat",
        "candidate",
    ]
