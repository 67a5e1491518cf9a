"""``shadow report``: one self-contained HTML page to decide whether to ship the candidate.

The page opens with a verdict banner (the gate's pass or fail, with each failed rule's
explanation, when rules are given) and the headline changes of the candidate against the
reference arm (``baseline``, or ``production`` in a live-mirror run) with their 95% intervals,
coloured by direction. Then: latency CDFs per arm and tail-latency changes by slice; TTFT and
TPOT; token use and cost per successful response; divergence per arm and by slice; a timeline
of sends, latency and errors; and the most divergent outputs side by side.

The page renders what :func:`analysis.analyze.analyze` computed (its typed result, the ok
rate's change and the divergence sample included; figure names, units and directions from
:data:`analysis.figures.FIGURES`); a section without data says so instead of failing. Raw data
is bounded whatever the run's size (see :mod:`analysis.report.charts`), and the examples are
the most divergent of at most :data:`analysis.pairs.EXAMPLE_POOL` hash-sampled traces, so a
report of a million-row run stays a few MB. plotly.js is inlined once: the page works offline
and loads nothing. Every text that comes from the run is HTML-escaped (:mod:`.html`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any, Final

import plotly.io as pio

from analysis.analyze import analyze
from analysis.embedders.base import Embedder
from analysis.figures import FIGURES
from analysis.gate import check_rules, evaluate
from analysis.report import charts
from analysis.report.html import (
    Row,
    banner,
    examples_section,
    facts_html,
    fmt,
    gate_html,
    nav,
    nodata,
    number,
    section,
    slice_table,
    table,
)
from analysis.report.style import CSS, PLOTLY_CONFIG
from analysis.result import GroupResult
from analysis.run import Run
from shadow._version import __version__
from shadow.config import AnalysisConfig, load_config
from shadow.errors import UsageError
from shadow.files import atomic_write

__all__ = ["build_report", "write_report"]

_HEADLINE: Final = ("latency_p50_ms", "latency_p95_ms", "latency_p99_ms", "latency_ratio",
                    "ttft_p95_ms", "cost_per_success_usd", "monthly_spend_usd")  # fmt: skip
"""The figures the summary table leads with, before/after (registry names, per-request figures
with paired intervals; the spend projection has none), then the ok rate."""
_READING: Final = {
    "worse": "worse beyond noise",
    "better": "better beyond noise",
    "same": "no clear change",
}
_LEADS: Final = {  # the line under each section's title (HTML)
    "summary": "The whole run, every slice together, per request (a trace on an arm with all its "
    "attempts). A change is coloured only when its whole 95% interval, paired by trace, lies on "
    "one side of zero (red: worse, green: better, grey: within noise). Latency ratio: the "
    "geometric mean over traces of candidate / baseline latency. Monthly spend: each arm's cost "
    "at the recorded traffic rate, over 30 days. A cost marked ≥ …* is incomplete: some "
    "attempts had no price, so it is the priced part only; the Reading names the unpriced "
    "models.",
    "latency": "Per successful request, from the trace's scheduled send to the last byte of the "
    "successful attempt, earlier attempts included (open loop). Whiskers: 95% interval of the "
    "change against {ref}.",
    "ttft": "TTFT: scheduled send to the first content chunk (streamed runs only). "
    "TPOT: (latency − TTFT) / (completion tokens − 1).",
    "cost": "Mean tokens per attempt. Cost per successful response = cost of every attempt / "
    "requests that succeeded.",
    "divergence": "How far each arm's final output is from {ref}'s, per trace ({kind}; JSON "
    "outputs structurally); 0 = same, 1 = unrelated. Excess = the candidate's mean minus the "
    "baseline_repeat's: what the baseline's own nondeterminism does not explain.",
    "timeline": "Sends per second by actual send time; latency and errors by scheduled send time.",
}


def write_report(
    run: Run,
    out: str | os.PathLike[str],
    *,
    by: Sequence[str] = (),
    rules: str | os.PathLike[str] | None = None,
    embedder: Embedder | None = None,
    top_k: int = 8,
    settings: AnalysisConfig | None = None,
) -> Path:
    """Write the report of ``run`` to ``out`` (replaced atomically) and return its path.

    Args:
        by: slice names for the by-slice charts (the headline is always the whole run).
        rules: a gates file (``[[gate]]`` rules); its verdict heads the page.
        embedder: semantic divergence; None measures it lexically.
        top_k: how many of the most divergent examples to show.
        settings: SLOs, pins and thresholds (default: the rules file's [analysis] section).
    """
    path = Path(out)
    if path.is_dir():
        raise UsageError(f"report path {path} is a directory; give a file name such as report.html")
    if not path.parent.is_dir():
        raise UsageError(
            f"report path {path}: the folder {path.parent} does not exist; create it first"
        )
    page = build_report(run, by=by, rules=rules, embedder=embedder, top_k=top_k, settings=settings)
    with atomic_write(path) as f:
        f.write(page.encode("utf-8"))
    return path


def build_report(
    run: Run,
    *,
    by: Sequence[str] = (),
    rules: str | os.PathLike[str] | None = None,
    embedder: Embedder | None = None,
    top_k: int = 8,
    settings: AnalysisConfig | None = None,
) -> str:
    """The report of ``run`` as one HTML document (arguments as :func:`write_report`)."""
    gate_rules = None
    if rules is not None:  # read the rules first: a bad file fails before any work
        config = load_config(Path(rules))
        gate_rules = config.gate
        settings = settings or config.analysis
        if not gate_rules:
            raise UsageError(f"{rules} has no [[gate]] rules; see examples/gates.toml")
        check_rules(gate_rules)
    overall = analyze(run, (), embedder=embedder, settings=settings, sample=True)
    sliced = analyze(run, by, embedder=embedder, settings=settings) if by else overall
    reports = {(): overall, tuple(by): sliced}
    verdicts = (
        evaluate(run, gate_rules, embedder=embedder, settings=settings, reports=reports)
        if gate_rules
        else None
    )
    reference = overall.baseline_arm
    ref_name = reference or "the reference arm"
    slice_groups = sliced.groups
    div_kind = overall.divergence_kind
    info = _facts(run)
    base = overall.group(reference) if reference is not None else None
    cand = overall.group("candidate")
    headline = _headline(base, cand) if reference != "candidate" else []
    charts_html = _Charts()
    add = charts_html.add
    sample = overall.sample

    if headline:
        header = ["Figure", reference or "reference", "candidate", "Change", "95% interval"]
        summary = table([*header, "Reading"], headline, toned=range(3, 6))
    else:
        summary = nodata(
            "No candidate and reference arm pair in this run: nothing to compare. "
            "The charts below show each arm on its own."
        )
    summary += facts_html(run, info, reference, div_kind, list(by)) + gate_html(verdicts)
    cdf = charts.cdf
    latency = add(
        cdf(charts.cdf_points(run, "latency_ms"), title="Latency CDF per arm", unit="ms"),
        "no latencies: nothing was sent",
    ) + add(
        charts.latency_deltas_by_slice(slice_groups, reference),
        "no change to show: needs a reference arm and another arm with latencies",
    )
    ttft = add(
        cdf(charts.cdf_points(run, "ttft_ms"), title="TTFT CDF per arm", unit="ms"),
        "no TTFT: the run was not streamed",
    ) + add(
        cdf(charts.cdf_points(run, "tpot_ms"), title="TPOT CDF per arm", unit="ms per token"),
        "no TPOT: needs TTFT and completion tokens",
    )
    cost = add(charts.tokens_by_slice(slice_groups), "no token counts") + add(
        charts.cost_by_slice(slice_groups), "no cost per success: no costs or no successes"
    )
    spread = add(
        charts.divergence_histogram(
            {arm: values for arm, (_, values) in sample.scores.items()} if sample else {},
            kind=div_kind,
        ),
        "no divergence: no arm has outputs to compare with the reference",
    ) + add(charts.divergence_by_slice(slice_groups, reference), "no divergence by slice")
    timeline = add(charts.timeline(run, info["first"], info["last"]), "no attempts")
    ref = escape(ref_name)
    body = [
        banner(verdicts, headline, run_id=run.run_id, reference=ref_name),
        "<main>",
        nav(),
        section("summary", f"Candidate vs {ref_name}", _LEADS["summary"], summary),
        section("latency", "Latency", _LEADS["latency"].format(ref=ref),
                latency + slice_table(slice_groups, list(by))),
        section("ttft", "Time to first token and per output token", _LEADS["ttft"],
                f'<div class="grid2">{ttft}</div>'),
        section("cost", "Tokens and cost", _LEADS["cost"], cost),
        section("divergence", "Output divergence",
                _LEADS["divergence"].format(ref=ref, kind=escape(div_kind)), spread),
        section("timeline", "Timeline", _LEADS["timeline"], timeline),
        examples_section(sample, top_k),
        f"<footer>shadow {escape(__version__)} · generated {datetime.now(UTC):%Y-%m-%d %H:%M} "
        "UTC · metric definitions: docs/architecture.md, “Metric definitions”</footer>",
        "</main>",
    ]  # fmt: skip
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>shadow report · {escape(run.run_id)}</title><style>{CSS}</style></head>\n"
        f'<body data-charts="{charts_html.count}">' + "\n".join(body) + "</body></html>\n"
    )


class _Charts:
    """Turns figures into HTML, inlining plotly.js with the first one only."""

    def __init__(self) -> None:
        self.count = 0

    def add(self, fig: Any, missing: str) -> str:
        if fig is None:
            return nodata(missing)
        self.count += 1
        div: str = pio.to_html(
            fig,
            include_plotlyjs=self.count == 1,
            full_html=False,
            config=PLOTLY_CONFIG,
            div_id=f"chart-{self.count}",
        )
        return f'<div class="chart">{div}</div>'


def _tone(lo: float, hi: float, better: str | None) -> str:
    """``worse``/``better`` when the whole interval lies on one side of zero, else ``same``."""
    if lo > 0:
        return "better" if better == "higher" else "worse"
    if hi < 0:
        return "worse" if better == "higher" else "better"
    return "same"


def _headline(base: GroupResult | None, cand: GroupResult | None) -> list[Row]:
    """The headline table: each figure of the candidate against the reference arm."""
    if base is None or cand is None:
        return []
    rows: list[Row] = []
    for figure in (FIGURES[name] for name in _HEADLINE):
        found = cand.delta.get(figure.name)
        change, lo, hi = (None, None, None) if found is None else (
            number(found.change), number(found.lo), number(found.hi))  # fmt: skip
        cells = [figure.label, _cell(base, figure.name, reference=True), _cell(cand, figure.name)]
        if figure.name == "monthly_spend_usd":
            rows.append(_spend_row(cells, base, cand))
        elif found is not None and found.incomplete:
            rows.append(([*cells, "–", "–", found.incomplete], "none"))
        elif change is None:
            rows.append(([*cells, "–", "–", "no data"], "none"))
        elif lo is None or hi is None:
            rows.append(([*cells, f"{change:+.1%}", "–", "no interval (too few values)"], "none"))
        else:
            tone = _tone(lo, hi, figure.better)
            rows.append(
                ([*cells, f"{change:+.1%}", f"{lo:+.1%} … {hi:+.1%}", _READING[tone]], tone)
            )
    rows.append(_ok_rate_row(base, cand))
    rows.append(_excess_row(cand))
    return rows


def _cell(group: GroupResult, name: str, *, reference: bool = False) -> str:
    """A headline cell; a ``factor`` (candidate / reference) reads 1.000× on the reference, an
    incomplete cost ``≥ $0.0012*`` (the priced part), a projection that cannot be made n/a."""
    value, unit = number(group.value(name)), FIGURES[name].unit
    if value is None and group.incomplete(name):
        return "n/a*"
    if name == "monthly_spend_usd" and value is None:
        return "n/a"
    if unit != "factor":
        shown = fmt(value, unit)
        return f"≥ {shown}*" if value is not None and group.incomplete(name) else shown
    if reference:
        return "1.000×"
    return "–" if value is None else f"{value:.3f}×"


def _spend_row(cells: list[str], base: GroupResult, cand: GroupResult) -> Row:
    """Monthly spend before/after: the projections' ratio (no interval), or why it is n/a."""
    b, c = number(base.value("monthly_spend_usd")), number(cand.value("monthly_spend_usd"))
    if b is None or c is None:
        reasons = [f"{g.arm}: {g.spend_reason}" for g in (base, cand) if g.spend_reason]
        return [*cells, "–", "–", "n/a: " + "; ".join(reasons or ["no projection"])], "none"
    change = f"{c / b - 1:+.1%}" if b else "–"
    return [*cells, change, "–", "projected at the recorded traffic rate (no interval)"], "none"


def _excess_row(cand: GroupResult) -> Row:
    """The candidate's excess divergence over the baseline's repeat, with its interval."""
    excess = number(cand.value("excess_divergence"))
    if excess is None:
        return ["Excess divergence", "–", "–", "–", "–", "no baseline_repeat arm"], "none"
    lo, hi = (number(v) for v in cand.interval("excess_divergence"))
    floor = number(cand.value("noise_floor"))
    if lo is None or hi is None:
        where = "above" if excess > 0 else "at or below"
        interval, reading, tone = (
            "–",
            f"{where} the repeat's noise (no interval)",
            ("soft-worse" if excess > 0 else "soft-better"),
        )
    else:
        interval = f"{lo:+.3f} … {hi:+.3f}"
        tone = "worse" if lo > 0 else "same"
        reading = (
            "flagged: beyond noise and thresholds"
            if cand.divergence_flagged
            else _READING["worse"]
            if lo > 0
            else "within the repeat's noise"
        )
    cells = [
        "Excess divergence",
        "–" if floor is None else f"{floor:.3f} (noise)",
        fmt(number(cand.value("divergence_mean")), "ratio"),
        f"{excess:+.3f}",
        interval,
        reading,
    ]
    return cells, tone


def _ok_rate_row(base: GroupResult, cand: GroupResult) -> Row:
    """The ok rate's change in percentage points, as analyze computed it with its interval."""
    figure = FIGURES["ok_rate"]
    p1, p2 = number(base.value(figure.name)), number(cand.value(figure.name))
    cells = [figure.label, fmt(p1, figure.unit), fmt(p2, figure.unit)]
    found = cand.ok_rate_change
    if found is None or found.change is None or found.lo is None or found.hi is None:
        return [*cells, "–", "–", "no data"], "none"
    diff, lo, hi = found.change, found.lo, found.hi
    tone = _tone(lo, hi, figure.better)
    return [*cells, f"{diff:+.2f} pts", f"{lo:+.2f} … {hi:+.2f} pts", _READING[tone]], tone


def _facts(run: Run) -> dict[str, Any]:
    frame = run.sql(
        "SELECT arm, count(*) AS n, count(DISTINCT trace_id) AS traces,"
        " min(scheduled_at) AS first,"
        " max(scheduled_at + coalesce(latency_ms, 0) / 1000) AS last FROM run_results"
        " GROUP BY arm"
    )
    rows = {r["arm"]: r for r in frame.iter_rows(named=True)}
    firsts = [r["first"] for r in rows.values() if r["first"] is not None]
    lasts = [r["last"] for r in rows.values() if r["last"] is not None]
    return {
        "arms": {arm: rows[arm] for arm in charts.arm_order(list(rows))},
        "first": min(firsts) if firsts else None,
        "last": max(lasts) if lasts else None,
    }
