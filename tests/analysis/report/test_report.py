"""`shadow report` on generated runs: one self-contained page with every section, escaped
example texts, the edge cases (mirror, one arm, no TTFT, no slices, no successes, no rows),
one-line errors, and a real headless Chromium that renders every chart without an error."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as ws_connect

from analysis.report.charts import cdf_points
from analysis.run import open_run
from shadow.results.rows import ResultRow
from shadow.results.store import ResultsStore

XSS = "<script>alert(1)</script>"
WORDS = (
    "the model answer returns a list of items for your request with short notes and a summary"
    " of each step plus code examples tests and links"
).split()


def write_run(
    path: Path,
    *,
    n: int = 600,
    arms: Sequence[str] = ("baseline", "candidate", "baseline_repeat"),
    run_id: str = "r1",
    streaming: bool = True,
    slices: bool = True,
    ok_rate: float = 0.95,
    seed: int = 7,
) -> Path:
    """A run of ``n`` traces on ``arms``: the candidate is cheaper and 10% faster, except on the
    ``code`` intent where it is 60% slower; its outputs differ from the baseline's in a few
    words (a repeat of the baseline in fewer), and trace ``t5``'s candidate output is markup."""
    rng = np.random.default_rng(seed)
    intents = ("chat", "code", "summarize")
    scheduled = 1_700_000_000.0 + np.cumsum(rng.exponential(0.05, n))
    rows = []
    for i in range(n):
        intent = intents[i % 3]
        base_latency = float(rng.lognormal(6.0, 0.5))
        prompt, completion = int(rng.integers(50, 800)), int(rng.integers(5, 300))
        words = [str(w) for w in rng.choice(WORDS, 30)]
        for arm in arms:
            factor = 1.0
            text_words = list(words)
            if arm == "candidate":
                factor = 1.6 if intent == "code" else 0.9
                for j in rng.choice(30, 8, replace=False):
                    text_words[j] = str(rng.choice(WORDS))
            elif arm == "baseline_repeat":
                for j in rng.choice(30, 2, replace=False):
                    text_words[j] = str(rng.choice(WORDS))
            latency = base_latency * factor * float(rng.lognormal(0.0, 0.1))
            ok = bool(rng.random() < ok_rate)
            text = " ".join(text_words)
            if arm == "candidate" and i == 5:
                text = f"{XSS} a completely different reply"
            sent = float(scheduled[i] + rng.exponential(0.002))
            price = 0.5 if arm == "candidate" else 1.0
            rows.append(
                ResultRow(
                    run_id=run_id,
                    trace_id=f"t{i}",
                    arm=arm,
                    slices={"intent": intent, "tenant": f"tenant-{i % 4}"} if slices else {},
                    scheduled_at=float(scheduled[i]),
                    sent_at=sent,
                    ttft_ms=latency * float(rng.uniform(0.1, 0.3)) if streaming else None,
                    latency_ms=latency,
                    service_ms=latency - (sent - float(scheduled[i])) * 1000,
                    status=200 if ok else 500,
                    ok=ok,
                    error=None if ok else "HTTP 500 from upstream",
                    model="small" if arm == "candidate" else "large",
                    prompt_tokens=prompt,
                    completion_tokens=completion if ok else None,
                    cost_usd=(prompt * 1.0 + (completion if ok else 0) * 4.0) / 1e6 * price,
                    output_text=text if ok else None,
                )
            )
    with ResultsStore.open(path) as store:
        store.start_run(run_id, source="test", config={}, arms=list(arms))
        for start in range(0, len(rows), 50_000):
            store.write(rows[start : start + 50_000])
        store.finish_run(run_id, status="done", counts={})
    return path


# --- the report through the CLI ------------------------------------------------------------

SECTIONS = ("summary", "latency", "ttft", "cost", "divergence", "timeline", "examples")
FAILING_RULES = """
[[gate]]
metric = "latency_p50_ms"
max_increase_pct = 10
by = ["intent"]
min_samples = 20

[[gate]]
metric = "cost_per_success_usd"
max_increase_pct = 5
"""
_SCRIPT = re.compile(r"(<script\b[^>]*>).*?(</script>)", re.S | re.I)


def shadow(*args: str) -> subprocess.CompletedProcess[str]:
    """``shadow report ARGS``, lexical unless the test names an embedder (semantic divergence
    has its own tests; here it would only add model loading to every call)."""
    extra = () if "--embedder" in args else ("--embedder", "lexical")
    return subprocess.run(
        [sys.executable, "-m", "shadow", "report", *args, *extra],
        capture_output=True,
        text=True,
        timeout=300,
    )


def markup(page: str) -> str:
    """The page without the contents of its inline scripts (plotly.js and the figures)."""
    return _SCRIPT.sub(r"\1\2", page)


@pytest.fixture(scope="module")
def rich(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A report of a three-arm, sliced, streamed run, gated with a rule that fails on 'code'."""
    folder = tmp_path_factory.mktemp("report")
    run = write_run(folder / "run.duckdb")
    rules = folder / "gates.toml"
    rules.write_text(FAILING_RULES)
    out = folder / "report.html"
    result = shadow(str(run), "--out", str(out), "--by", "intent", "--rules", str(rules))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == str(out)
    return out, out.read_text(encoding="utf-8")


def test_the_page_is_one_self_contained_file(rich: tuple[Path, str]) -> None:
    """plotly.js is inlined once and nothing is loaded from anywhere: no src, link or URL."""
    _, page = rich
    outside = markup(page)
    assert page.count("plotly.js v") >= 1
    assert not re.search(r"<script\b[^>]*\bsrc\s*=", outside, re.I)
    assert not re.search(r"<(link|img|iframe|object|embed)\b", outside, re.I)
    assert not re.search(r"https?://|@import|url\(", outside, re.I)


def test_every_section_is_there_with_its_charts(rich: tuple[Path, str]) -> None:
    """Each section renders; the sliced three-arm run fills all nine charts."""
    _, page = rich
    for anchor in SECTIONS:
        assert f'<section id="{anchor}">' in page
    assert 'data-charts="9"' in page
    assert page.count('class="plotly-graph-div"') == 9
    assert "no data" not in markup(page)
    for heading in (
        "Latency CDF per arm",
        "Tail latency change by slice",
        "TTFT CDF per arm",
        "TPOT CDF per arm",
        "Token use by slice",
        "Cost per successful response",
        "Output divergence from the reference arm",
        "Divergence by slice",
        "Timeline",
    ):
        assert heading in page


def test_the_banner_gives_the_gate_verdict_and_the_failed_rule(rich: tuple[Path, str]) -> None:
    """The failing rule turns the banner red and is explained in one line; the headline
    colours the p50 slowdown... of the whole run by its interval."""
    _, page = rich
    banner = re.search(r'<header class="banner (\w+)">(.*?)</header>', page, re.S)
    assert banner is not None
    assert banner[1] == "fail"
    assert "Do not ship: 1 of 4 gate checks failed" in banner[2]
    assert "latency_p50_ms (intent=code): +" in banner[2]
    assert "Cost per success" in page
    cost_row = re.search(r"<td[^>]*>Cost per success</td>(.*?)</tr>", page, re.S)
    assert cost_row is not None
    assert 'class="better"' in cost_row[1]  # half the price


def test_example_texts_are_escaped(rich: tuple[Path, str]) -> None:
    """An output holding markup is shown as text, never as markup."""
    _, page = rich
    assert XSS not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; a completely different reply" in page
    assert '<span class="trace">t5</span>' in page


def test_a_passing_gate_turns_the_banner_green(tmp_path: Path, rich: tuple[Path, str]) -> None:
    """Rules that all hold give a green banner."""
    run = rich[0].parent / "run.duckdb"
    rules = tmp_path / "gates.toml"
    rules.write_text('[[gate]]\nmetric = "cost_per_success_usd"\nmax_increase_pct = 5\n')
    out = tmp_path / "r.html"
    result = shadow(str(run), "--out", str(out), "--rules", str(rules))
    assert result.returncode == 0, result.stderr
    assert '<header class="banner pass">' in out.read_text(encoding="utf-8")


EDGE_CASES: dict[str, tuple[dict[str, Any], list[str]]] = {
    "mirror, not streamed, no slices": (
        {"arms": ("production", "candidate"), "streaming": False, "slices": False},
        ["no TTFT: the run was not streamed", "Candidate vs production", "no baseline_repeat"],
    ),
    "baseline only": ({"arms": ("baseline",)}, ["nothing to compare", "no trace has outputs"]),
    "candidate only": ({"arms": ("candidate",)}, ["nothing to compare", "no reference arm"]),
    "no successful response": (
        {"ok_rate": 0.0},
        ["no cost per success", "no trace has outputs on both arms", "no divergence"],
    ),
    "no rows": ({"n": 0}, ["no latencies", "no attempts", "no token counts"]),
}


@pytest.mark.parametrize("case", sorted(EDGE_CASES))
def test_edge_cases_give_a_valid_page_that_says_no_data(tmp_path: Path, case: str) -> None:
    """Runs without a candidate, TTFT, slices, successes or rows still give a whole page."""
    options, expected = EDGE_CASES[case]
    run = write_run(tmp_path / "run.duckdb", **{"n": 90, **options})
    out = tmp_path / "report.html"
    # --by a slice the run lacks is exit 2 (test_slices.py): a run without slices gets no --by.
    by = () if options.get("slices") is False else ("--by", "intent")
    result = shadow(str(run), "--out", str(out), *by)
    assert result.returncode == 0, result.stderr
    page = out.read_text(encoding="utf-8")
    assert page.rstrip().endswith("</html>")
    for anchor in SECTIONS:
        assert f'<section id="{anchor}">' in page
    for text in expected:
        assert text in page, text
    charts = int(re.search(r'data-charts="(\d+)"', page)[1])  # type: ignore[index]
    assert page.count('class="plotly-graph-div"') == charts


def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, rich: tuple[Path, str]) -> None:
    """A missing store, a missing folder, bad rules, a bad slice name or embedder: exit 2."""
    run = str(rich[0].parent / "run.duckdb")
    out = str(tmp_path / "r.html")
    bad_metric = tmp_path / "bad.toml"
    bad_metric.write_text('[[gate]]\nmetric = "latency_p42_ms"\nmax_increase_pct = 5\n')
    cases = [
        (str(tmp_path / "missing.duckdb"), "--out", out),
        (run, "--out", str(tmp_path / "no" / "such" / "r.html")),
        (run, "--out", out, "--rules", str(tmp_path / "missing.toml")),
        (run, "--out", out, "--rules", str(bad_metric)),
        (run, "--out", out, "--by", "arm"),
        (run, "--out", out, "--embedder", "no-such-model"),
    ]
    for args in cases:
        result = shadow(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1, (args, result.stderr)
    assert not Path(out).exists()
    missing_out = shadow(run)
    assert missing_out.returncode == 2
    assert "Missing option '--out'" in missing_out.stderr


def test_help_teaches_with_examples() -> None:
    """--help shows what the page holds and how to call it."""
    result = shadow("--help")
    assert result.returncode == 0
    assert "shadow report run.duckdb --out report.html --by intent --rules gates.toml" in (
        result.stdout
    )


def test_distributions_are_bounded_order_statistics(tmp_path: Path) -> None:
    """A CDF holds about 2,000 points per arm, whatever the rows, from min to max exactly (over
    the successful requests the headline's percentiles count)."""
    run_path = write_run(tmp_path / "run.duckdb", n=6_000, arms=("baseline", "candidate"))
    run = open_run(run_path)
    try:
        points = cdf_points(run, "latency_ms")
        exact = run.sql(
            "SELECT arm, min(latency_ms) AS lo, max(latency_ms) AS hi, count(latency_ms) AS n"
            " FROM requests GROUP BY arm"
        )
    finally:
        run.close()
    assert set(points) == {"baseline", "candidate"}
    for row in exact.iter_rows(named=True):
        x, p = points[row["arm"]]
        assert 1_500 <= x.size <= 2_300 < row["n"]
        assert (x[0], x[-1], p[-1]) == (row["lo"], row["hi"], 1.0)
        assert np.all(np.diff(x) >= 0)
        assert np.all(np.diff(p) > 0)


# --- a real browser ------------------------------------------------------------------------

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
_LOCAL = ("file:", "data:", "blob:", "about:")


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's chromium, installed with apt when missing (a failed install fails the test)."""
    found = shutil.which("chromium")
    if found is None:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for command in (
            ["apt-get", "update"],
            ["apt-get", "install", "-y", "--no-install-recommends", "chromium"],
        ):
            done = subprocess.run(command, capture_output=True, text=True, timeout=900, env=env)
            if done.returncode != 0:
                pytest.fail(
                    f"{' '.join(command)} failed ({done.returncode}): {done.stderr[-2000:]}"
                )
        found = shutil.which("chromium")
        if found is None:
            pytest.fail("apt-get installed chromium but it is not on PATH")
    return found


class DevTools:
    """A minimal Chrome DevTools Protocol client: one websocket, flat sessions, every wait
    bounded by a deadline."""

    def __init__(self, websocket: ClientConnection) -> None:
        self._ws = websocket
        self._id = 0
        self.events: list[dict[str, Any]] = []

    def _receive(self, deadline: float) -> dict[str, Any]:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no answer from chromium before the deadline")
        message: dict[str, Any] = json.loads(self._ws.recv(timeout=remaining))
        if "method" in message:
            self.events.append(message)
        return message

    def send(
        self, method: str, session: str | None = None, timeout: float = 30, **params: Any
    ) -> dict[str, Any]:
        self._id += 1
        request: dict[str, Any] = {"id": self._id, "method": method, "params": params}
        if session is not None:
            request["sessionId"] = session
        self._ws.send(json.dumps(request))
        deadline = time.monotonic() + timeout
        while True:
            message = self._receive(deadline)
            if message.get("id") == self._id:
                assert "error" not in message, f"{method}: {message['error']}"
                result: dict[str, Any] = message.get("result", {})
                return result

    def wait_for(self, method: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            for event in self.events[seen:]:
                if event["method"] == method:
                    return event
            seen = len(self.events)
            self._receive(deadline)


@contextmanager
def browser(binary: str, profile: Path) -> Iterator[DevTools]:
    """A headless chromium on a free port, with a DevTools client attached to it."""
    log = (profile.parent / "chromium.log").open("w")
    process = subprocess.Popen(
        [
            binary,
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-background-networking",
            "--remote-debugging-port=0",
            f"--user-data-dir={profile}",
            "--window-size=1400,1000",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    try:
        active = profile / "DevToolsActivePort"  # chromium writes port and path once listening
        deadline = time.monotonic() + 60
        while not (active.exists() and len(active.read_text().splitlines()) == 2):
            assert process.poll() is None, f"chromium exited: {log.name}"
            assert time.monotonic() < deadline, f"chromium did not listen within 60 s: {log.name}"
            time.sleep(0.05)  # polling a file for a condition, bounded by the deadline
        port, path = active.read_text().splitlines()
        with ws_connect(f"ws://127.0.0.1:{port}{path}", max_size=None, open_timeout=15) as ws:
            yield DevTools(ws)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)
        log.close()


@pytest.mark.timeout(1200)  # the first run may install chromium
def test_headless_chromium_renders_every_chart_without_errors(
    chromium: str, rich: tuple[Path, str], tmp_path: Path
) -> None:
    """The page loads from file:// in a real Chromium, requests nothing off the machine,
    logs no error, throws nothing, opens no dialog, and every chart draws its SVG."""
    out, page = rich
    expected = int(re.search(r'data-charts="(\d+)"', page)[1])  # type: ignore[index]
    with browser(chromium, tmp_path / "profile") as cdp:
        target = cdp.send("Target.createTarget", url="about:blank")["targetId"]
        session = cdp.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Network", "Log"):
            cdp.send(f"{domain}.enable", session)
        cdp.send(
            "Emulation.setDeviceMetricsOverride",
            session,
            width=1400,
            height=1000,
            deviceScaleFactor=1,
            mobile=False,
        )
        cdp.send("Page.navigate", session, url=out.as_uri())
        cdp.wait_for("Page.loadEventFired", timeout=60)
        # Plotly draws asynchronously: the page polls its own DOM until every chart has its
        # SVG or 60 s have passed, and the promise resolves with what it found.
        probe = (
            "new Promise(resolve => { const start = performance.now(); (function check() {"
            " const d = [...document.querySelectorAll('.plotly-graph-div')];"
            " const drawn = d.filter(e => e.querySelector('svg.main-svg')).length;"
            f" if (drawn >= {expected} || performance.now() - start > 60000)"
            " resolve([d.length, drawn]); else setTimeout(check, 50); })(); })"
        )
        found = cdp.send(
            "Runtime.evaluate",
            session,
            timeout=90,
            expression=probe,
            awaitPromise=True,
            returnByValue=True,
        )
        divs, drawn = found["result"]["value"]
        assert (divs, drawn) == (expected, expected)
        metrics = cdp.send("Page.getLayoutMetrics", session)["cssContentSize"]
        shot = cdp.send(
            "Page.captureScreenshot",
            session,
            timeout=60,
            format="png",
            captureBeyondViewport=True,
            clip={
                "x": 0,
                "y": 0,
                "width": metrics["width"],
                "height": metrics["height"],
                "scale": 1,
            },
        )
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "report.png").write_bytes(base64.b64decode(shot["data"]))
    mine = [e for e in cdp.events if e.get("sessionId") == session]
    errors = [e["params"] for e in mine if e["method"] == "Runtime.exceptionThrown"]
    errors += [
        e["params"]
        for e in mine
        if e["method"] == "Runtime.consoleAPICalled" and e["params"]["type"] in ("error", "assert")
    ]
    errors += [
        e["params"]
        for e in mine
        if e["method"] == "Log.entryAdded" and e["params"]["entry"]["level"] == "error"
    ]
    assert errors == []
    assert not [e for e in mine if e["method"] == "Page.javascriptDialogOpening"]
    urls = [
        e["params"]["request"]["url"] for e in mine if e["method"] == "Network.requestWillBeSent"
    ]
    assert urls, "the page load was not seen"
    assert [url for url in urls if not url.startswith(_LOCAL)] == []
