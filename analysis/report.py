"""``shadow report``: one self-contained HTML page to decide whether to ship the candidate.

The page opens with a verdict banner (the gate's pass or fail, with each failed rule's
explanation, when rules are given) and the headline changes of the candidate against the
reference arm (``baseline``, or ``production`` in a live-mirror run) with their 95% intervals,
coloured by direction. Then: latency CDFs per arm and tail-latency changes by slice; TTFT and
TPOT; token use and cost per successful response; divergence per arm and by slice; a timeline
of sends, latency and errors; and the most divergent outputs side by side.

Figures come from :func:`analysis.analyze.analyze`; any key may be missing or None, and a
section without data says so instead of failing. Raw data is bounded whatever the run's size
(see :mod:`analysis.report_figures`), and the examples are the most divergent of at most
:data:`EXAMPLE_POOL` hash-sampled traces, so a report of a million-row run stays a few MB.
plotly.js is inlined once: the page works offline and loads nothing. Every text that comes
from the run (outputs, slice values, run id, gate messages) is HTML-escaped.
"""

from __future__ import annotations

import json
import math
import os
import secrets
from collections.abc import Container, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any, Final

import numpy as np
import plotly.io as pio

from analysis import report_figures as figs
from analysis.analyze import MAX_PAIRS, analyze
from analysis.divergence import Embedder, divergence, kind
from analysis.gate import Verdict, evaluate
from analysis.run import Run
from shadow._version import __version__
from shadow.config import AnalysisConfig, load_config
from shadow.errors import UsageError

__all__ = ["EXAMPLE_POOL", "build_report", "write_report"]

EXAMPLE_POOL: Final = 5_000
"""Traces (hash-sampled) whose outputs the divergence histogram and the examples compare; with
an embedder, :data:`analysis.analyze.MAX_PAIRS`, since every text must be embedded."""
MAX_TEXT: Final = 4_000
"""Characters of each example output shown; the rest is cut with a note."""
_CONFIG: Final = {
    "displaylogo": False,
    "responsive": True,
    "modeBarButtonsToRemove": ["select2d", "lasso2d"],
}
_RELATIVE: Final = (  # (label, analyze figure, unit); lower is better for each
    ("Latency p50", "latency_p50_ms", "ms"),
    ("Latency p95", "latency_p95_ms", "ms"),
    ("Latency p99", "latency_p99_ms", "ms"),
    ("TTFT p95", "ttft_p95_ms", "ms"),
    ("Cost per success", "cost_per_success_usd", "usd"),
)
_READING: Final = {
    "worse": "worse beyond noise",
    "better": "better beyond noise",
    "same": "no clear change",
}
_LEADS: Final = {  # the line under each section's title (HTML)
    "summary": "The whole run, every slice together. A change is coloured only when its whole "
    "95% interval lies on one side of zero (red: worse, green: better, grey: within noise).",
    "latency": "From the scheduled send to the last byte, errors and timeouts included (open "
    "loop). Whiskers: 95% interval of the change against {ref}.",
    "ttft": "TTFT: scheduled send to the first content chunk (streamed runs only). "
    "TPOT: (latency − TTFT) / (completion tokens − 1).",
    "cost": "Mean tokens per attempt. Cost per successful response = cost of every attempt / "
    "successful attempts.",
    "divergence": "How far each arm's final output is from {ref}'s, per trace ({kind}; JSON "
    "outputs structurally); 0 = same, 1 = unrelated. Excess = the candidate's mean minus the "
    "baseline_repeat's: what the baseline's own nondeterminism does not explain.",
    "timeline": "Sends per second by actual send time; latency and errors by scheduled send time.",
}
Row = tuple[list[str], str]  # cells (plain text) and a tone: worse, better, same, none, ...


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
        raise UsageError(f"--out {path} is a directory; give a file name such as report.html")
    if not path.parent.is_dir():
        raise UsageError(f"--out {path}: the folder {path.parent} does not exist; create it first")
    page = build_report(run, by=by, rules=rules, embedder=embedder, top_k=top_k, settings=settings)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with tmp.open("x", encoding="utf-8") as f:  # mode from the umask, as for any new file
            f.write(page)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
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
    overall = analyze(run, (), embedder=embedder, settings=settings)
    sliced = analyze(run, by, embedder=embedder, settings=settings) if by else overall
    reports = {(): overall, tuple(by): sliced}
    verdicts = (
        evaluate(run, gate_rules, embedder=embedder, settings=settings, reports=reports)
        if gate_rules
        else None
    )
    reference = (
        overall.get("baseline_arm") if isinstance(overall.get("baseline_arm"), str) else None
    )
    ref_name = reference or "the reference arm"
    groups = [g for g in overall.get("groups") or [] if isinstance(g, Mapping)]
    slice_groups = [g for g in sliced.get("groups") or [] if isinstance(g, Mapping)]
    div_kind = str(overall.get("divergence_kind") or kind(embedder))
    info = _facts(run)
    base, cand = _group(groups, reference), _group(groups, "candidate")
    headline = _headline(base, cand) if reference != "candidate" else []
    charts = _Charts()
    sample = _sample(run, reference, embedder)

    if headline:
        header = ["Figure", reference or "reference", "candidate", "Change", "95% interval"]
        summary = _table([*header, "Reading"], headline, toned=range(3, 6))
    else:
        summary = _nodata(
            "No candidate and reference arm pair in this run: nothing to compare. "
            "The charts below show each arm on its own."
        )
    summary += _facts_html(run, info, reference, div_kind, list(by)) + _gate_html(verdicts)
    cdf = figs.cdf
    latency = charts.add(
        cdf(figs.cdf_points(run, "latency_ms"), title="Latency CDF per arm", unit="ms"),
        "no latencies: nothing was sent",
    ) + charts.add(
        figs.latency_deltas_by_slice(slice_groups, reference),
        "no change to show: needs a reference arm and another arm with latencies",
    )
    ttft = charts.add(
        cdf(figs.cdf_points(run, "ttft_ms"), title="TTFT CDF per arm", unit="ms"),
        "no TTFT: the run was not streamed",
    ) + charts.add(
        cdf(figs.cdf_points(run, figs.TPOT_SQL), title="TPOT CDF per arm", unit="ms per token"),
        "no TPOT: needs TTFT and completion tokens",
    )
    cost = charts.add(figs.tokens_by_slice(slice_groups), "no token counts") + charts.add(
        figs.cost_by_slice(slice_groups), "no cost per success: no costs or no successes"
    )
    spread = charts.add(
        figs.divergence_histogram(
            {arm: values for arm, (_, values) in sample.scores.items()} if sample else {},
            kind=div_kind,
        ),
        "no divergence: no arm has outputs to compare with the reference",
    ) + charts.add(figs.divergence_by_slice(slice_groups, reference), "no divergence by slice")
    timeline = charts.add(figs.timeline(run, info["first"], info["last"]), "no attempts")
    ref = escape(ref_name)
    body = [
        _banner(verdicts, headline, run_id=run.run_id, reference=ref_name),
        "<main>",
        _nav(),
        _section("summary", f"Candidate vs {ref_name}", _LEADS["summary"], summary),
        _section("latency", "Latency", _LEADS["latency"].format(ref=ref),
                 latency + _slice_table(slice_groups, list(by))),
        _section("ttft", "Time to first token and per output token", _LEADS["ttft"],
                 f'<div class="grid2">{ttft}</div>'),
        _section("cost", "Tokens and cost", _LEADS["cost"], cost),
        _section("divergence", "Output divergence",
                 _LEADS["divergence"].format(ref=ref, kind=escape(div_kind)), spread),
        _section("timeline", "Timeline", _LEADS["timeline"], timeline),
        _examples_section(sample, top_k),
        f"<footer>shadow {escape(__version__)} · generated {datetime.now(UTC):%Y-%m-%d %H:%M} "
        "UTC · metric definitions: DESIGN.md, “Metric definitions”</footer>",
        "</main>",
    ]  # fmt: skip
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>shadow report · {escape(run.run_id)}</title><style>{_CSS}</style></head>\n"
        f'<body data-charts="{charts.count}">' + "\n".join(body) + "</body></html>\n"
    )


class _Charts:
    """Turns figures into HTML, inlining plotly.js with the first one only."""

    def __init__(self) -> None:
        self.count = 0

    def add(self, fig: Any, missing: str) -> str:
        if fig is None:
            return _nodata(missing)
        self.count += 1
        div: str = pio.to_html(
            fig,
            include_plotlyjs=self.count == 1,
            full_html=False,
            config=_CONFIG,
            div_id=f"chart-{self.count}",
        )
        return f'<div class="chart">{div}</div>'


# --- figures of the whole run --------------------------------------------------------------


def _group(groups: Sequence[Mapping[str, Any]], arm: str | None) -> Mapping[str, Any] | None:
    return next((g for g in groups if arm is not None and g.get("arm") == arm), None)


def _float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "–"
    if unit == "usd":
        return f"${value:.3g}"
    if unit == "rate":
        return f"{value:.2%}"
    if unit == "ratio":
        return f"{value:+.3f}"
    return f"{value:,.0f} ms" if abs(value) >= 100 else f"{value:,.1f} ms"


def _headline(base: Mapping[str, Any] | None, cand: Mapping[str, Any] | None) -> list[Row]:
    """The headline table: each figure of the candidate against the reference arm."""
    if base is None or cand is None:
        return []
    rows: list[Row] = []
    for label, figure, unit in _RELATIVE:
        delta = (cand.get("delta") or {}).get(figure) or {}
        change, lo, hi = (_float(delta.get(k)) for k in ("change", "lo", "hi"))
        cells = [label, _fmt(_float(base.get(figure)), unit), _fmt(_float(cand.get(figure)), unit)]
        if change is None:
            rows.append(([*cells, "–", "–", "no data"], "none"))
        elif lo is None or hi is None:
            rows.append(([*cells, f"{change:+.1%}", "–", "no interval (too few values)"], "none"))
        else:
            tone = "worse" if lo > 0 else "better" if hi < 0 else "same"
            rows.append(
                ([*cells, f"{change:+.1%}", f"{lo:+.1%} … {hi:+.1%}", _READING[tone]], tone)
            )
    rows.append(_ok_rate_row(base, cand))
    excess = _float(cand.get("excess_divergence"))
    if excess is None:
        rows.append((["Excess divergence", "–", "–", "–", "–", "no baseline_repeat arm"], "none"))
    else:
        lo, hi = _float(cand.get("excess_divergence_lo")), _float(cand.get("excess_divergence_hi"))
        floor = _float(cand.get("noise_floor"))
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
                if cand.get("divergence_flagged")
                else _READING["worse"]
                if lo > 0
                else "within the repeat's noise"
            )
        rows.append(
            (
                [
                    "Excess divergence",
                    "–" if floor is None else f"{floor:.3f} (noise)",
                    _fmt(_float(cand.get("divergence_mean")), "ratio"),
                    f"{excess:+.3f}",
                    interval,
                    reading,
                ],
                tone,
            )
        )
    return rows


def _ok_rate_row(base: Mapping[str, Any], cand: Mapping[str, Any]) -> Row:
    """The ok rate's change in percentage points, with a normal-approximation 95% interval."""
    p1, p2 = _float(base.get("ok_rate")), _float(cand.get("ok_rate"))
    n1, n2 = _float(base.get("n")) or 0.0, _float(cand.get("n")) or 0.0
    cells = ["OK rate", _fmt(p1, "rate"), _fmt(p2, "rate")]
    if p1 is None or p2 is None or not n1 or not n2:
        return [*cells, "–", "–", "no data"], "none"
    diff = (p2 - p1) * 100
    se = math.sqrt(p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2) * 100
    lo, hi = diff - 1.96 * se, diff + 1.96 * se
    tone = "better" if lo > 0 else "worse" if hi < 0 else "same"
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
        "arms": {arm: rows[arm] for arm in figs.arm_order(list(rows))},
        "first": min(firsts) if firsts else None,
        "last": max(lasts) if lasts else None,
    }


@dataclass(frozen=True, kw_only=True)
class _Sample:
    """Final outputs of hash-sampled traces that reached the reference arm, and each other
    arm's divergence from it: the histogram and the examples come from one sample."""

    reference: str
    total: int  # traces with an attempt on the reference arm, sampled or not
    rows: dict[str, dict[str, dict[str, Any]]]  # trace -> arm -> output_text, slices
    scores: dict[str, tuple[list[str], np.ndarray]]  # arm -> (traces, divergence of each)


def _sample(run: Run, reference: str | None, embedder: Embedder | None) -> _Sample | None:
    if reference is None:
        return None
    pool = MAX_PAIRS if embedder is not None else EXAMPLE_POOL
    frame = run.sql(
        "WITH finals AS (SELECT trace_id, arm, output_text,"
        " CAST(to_json(slices) AS VARCHAR) AS slices FROM run_results"
        " QUALIFY row_number() OVER (PARTITION BY trace_id, arm ORDER BY attempt DESC) = 1),"
        " picked AS (SELECT trace_id, count(*) OVER () AS total FROM finals WHERE arm = $1"
        f" QUALIFY row_number() OVER (ORDER BY hash(trace_id), trace_id) <= {pool})"
        " SELECT finals.*, total FROM finals JOIN picked USING (trace_id)",
        [reference],
    )
    rows: dict[str, dict[str, dict[str, Any]]] = {}
    for row in frame.iter_rows(named=True):
        rows.setdefault(row["trace_id"], {})[row["arm"]] = row
    scores = {}
    for arm in figs.arm_order(frame["arm"].unique().to_list()) if frame.height else []:
        if arm == reference:
            continue
        traces = sorted(t for t, by_arm in rows.items() if arm in by_arm)
        outputs = [rows[t][arm]["output_text"] for t in traces]
        values = divergence(outputs, [rows[t][reference]["output_text"] for t in traces], embedder)
        scores[arm] = (traces, values)
    total = int(frame["total"][0]) if frame.height else 0
    return _Sample(reference=reference, total=total, rows=rows, scores=scores)


# --- HTML ----------------------------------------------------------------------------------


def _nodata(message: str) -> str:
    return f'<p class="nodata">{escape(message)}</p>'


def _section(anchor: str, title: str, lead: str, body: str) -> str:
    """A card; ``lead`` and ``body`` are HTML, so callers escape what they put in them."""
    return (
        f'<section id="{anchor}"><h2>{escape(title)}</h2><p class="lead">{lead}</p>{body}</section>'
    )


def _nav() -> str:
    items = [
        ("summary", "Summary"),
        ("latency", "Latency"),
        ("ttft", "TTFT & TPOT"),
        ("cost", "Tokens & cost"),
        ("divergence", "Divergence"),
        ("timeline", "Timeline"),
        ("examples", "Examples"),
    ]
    return "<nav>" + "".join(f'<a href="#{a}">{escape(t)}</a>' for a, t in items) + "</nav>"


def _table(header: Sequence[str], rows: Sequence[Row], *, toned: Container[int] = ()) -> str:
    """A table of plain-text cells; the cells of the ``toned`` columns carry the row's tone."""
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="{tone if i in toned else ""}">{escape(cell)}</td>'
            for i, cell in enumerate(cells)
        )
        + "</tr>"
        for cells, tone in rows
    )
    table = f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    return f'<div class="scroll">{table}</div>'


def _swatch(arm: str) -> str:
    return f'<span class="swatch" style="background:{figs.ARM_COLOURS.get(arm, "#54a24b")}"></span>'


def _banner(
    verdicts: Sequence[Verdict] | None, headline: Sequence[Row], *, run_id: str, reference: str
) -> str:
    tones = [tone for _, tone in headline]
    detail = (
        f"Candidate vs {reference}: {tones.count('worse')} headline figures worse, "
        f"{tones.count('better')} better, {tones.count('same')} within noise (95% intervals)."
        if headline
        else "This run has no candidate and reference arm pair to compare."
    )
    items: list[str] = []
    if verdicts is None:
        tone, title = "none", "No gate verdict"
        detail += " Give --rules gates.toml for a pass/fail verdict."
    else:
        failed = [v for v in verdicts if v.status == "fail"]
        judged = sum(v.status in ("pass", "fail") for v in verdicts)
        if failed:
            tone, title = "fail", f"Do not ship: {len(failed)} of {judged} gate checks failed"
            items = [v.message for v in failed]
        elif judged:
            tone, title = "pass", f"Gate passed: all {judged} judged checks"
        else:
            tone, title = "none", "The gate could not judge this run"
            items = [v.message for v in verdicts]
        if len(verdicts) > judged:
            detail += f" {len(verdicts) - judged} checks not judged (too few samples or no data)."
    listed = "".join(f"<li>{escape(m)}</li>" for m in items)
    return (
        f'<header class="banner {tone}"><div class="kicker">shadow report · run '
        f"{escape(run_id)}</div><h1>{escape(title)}</h1><p>{escape(detail)}</p>"
        + (f"<ul>{listed}</ul>" if listed else "")
        + "</header>"
    )


def _gate_html(verdicts: Sequence[Verdict] | None) -> str:
    if not verdicts:
        return ""
    tone = {"fail": "worse", "pass": "better"}
    rows = [([v.status.replace("_", " "), v.message], tone.get(v.status, "none")) for v in verdicts]
    return "<h3>Gate checks</h3>" + _table(["Status", "Check"], rows, toned=(0,))


def _facts_html(
    run: Run, info: Mapping[str, Any], reference: str | None, div_kind: str, by: list[str]
) -> str:
    arms = info["arms"]
    arm_text = " ".join(
        f'<span class="arm">{_swatch(arm)}{escape(arm)} {row["n"]:,}</span>'
        for arm, row in arms.items()
    )
    first, last = info["first"], info["last"]
    span = "–"
    if first is not None and last is not None:
        seconds = last - first
        length = f"{seconds / 60:,.1f} min" if seconds >= 60 else f"{seconds:,.1f} s"
        span = f"{datetime.fromtimestamp(first, UTC):%Y-%m-%d %H:%M:%S} UTC, {length}"
    traces = max((row["traces"] for row in arms.values()), default=0)
    items = [
        ("Run", escape(run.run_id)),
        ("Reference arm", escape(reference or "none")),
        ("Attempts per arm", arm_text or "none"),
        ("Traces", f"{traces:,}"),
        ("Time span", escape(span)),
        ("Divergence", escape(div_kind)),
        ("Sliced by", escape(", ".join(by)) if by else "–"),
        ("Results", escape(run.path)),
    ]
    return (
        '<dl class="facts">'
        + "".join(f"<div><dt>{k}</dt><dd>{v}</dd></div>" for k, v in items)
        + "</dl>"
    )


def _slice_table(groups: Sequence[Mapping[str, Any]], by: list[str]) -> str:
    if not groups:
        return ""
    header = [
        " / ".join(by) or "slice",
        "arm",
        "n",
        "ok",
        "p50",
        "p95",
        "p99",
        "TTFT p95",
        "$ / success",
        "Δ p99 (95% CI)",
        "divergence",
        "excess",
    ]
    keep = set(figs.top_slices(groups))
    rows: list[Row] = []
    for g in groups:
        label = figs.slice_label(g.get("slice"))
        if label not in keep:
            continue
        d = (g.get("delta") or {}).get("latency_p99_ms") or {}
        change, lo, hi = (_float(d.get(k)) for k in ("change", "lo", "hi"))
        delta = "" if change is None else f"{change:+.1%}"
        if change is not None and lo is not None and hi is not None:
            delta += f" [{lo:+.1%}, {hi:+.1%}]"
        div, excess = _float(g.get("divergence_mean")), _float(g.get("excess_divergence"))
        latencies = ("latency_p50_ms", "latency_p95_ms", "latency_p99_ms", "ttft_p95_ms")
        rows.append(
            (
                [
                    label,
                    str(g.get("arm")),
                    f"{_float(g.get('n')) or 0:,.0f}",
                    _fmt(_float(g.get("ok_rate")), "rate"),
                    *(_fmt(_float(g.get(f)), "ms") for f in latencies),
                    _fmt(_float(g.get("cost_per_success_usd")), "usd"),
                    delta,
                    "" if div is None else f"{div:.3f}",
                    "" if excess is None else _fmt(excess, "ratio"),
                ],
                "",
            )
        )
    return (
        "<details><summary>Every figure by slice and arm</summary>"
        + _table(header, rows)
        + "</details>"
    )


def _slices(text: str | None) -> str:
    """``intent=code · tenant=acme`` from the JSON of a slices map."""
    try:
        values = json.loads(text or "{}")
    except ValueError:
        return text or ""
    return " · ".join(f"{k}={v}" for k, v in values.items()) if isinstance(values, dict) else ""


def _text(text: str | None) -> str:
    if text is None:
        return '<pre class="missing">(no output)</pre>'
    cut = len(text) - MAX_TEXT
    note = f'<div class="cut">… {cut:,} more characters</div>' if cut > 0 else ""
    return f"<pre>{escape(text[:MAX_TEXT])}</pre>{note}"


def _examples_section(sample: _Sample | None, k: int) -> str:
    title = "Most divergent examples"
    lead = (
        "Final outputs of the same trace on the reference arm and the candidate, most "
        "divergent first."
    )
    if sample is None or k <= 0:
        missing = "no reference arm to compare with" if sample is None else "none asked for"
        return _section("examples", title, lead, _nodata(missing))
    traces, scores = sample.scores.get("candidate", ([], np.zeros(0)))
    order = [int(i) for i in np.argsort(-scores, kind="stable") if np.isfinite(scores[i])][:k]
    if not order:
        return _section("examples", title, lead, _nodata("no trace has outputs on both arms"))
    if sample.total > len(sample.rows):
        lead += f" Among {len(sample.rows):,} of {sample.total:,} traces (a hash sample)."
    reference, cards = sample.reference, []
    for i in order:
        by_arm = sample.rows[traces[i]]
        cards.append(
            f'<article class="example"><header><span class="trace">{escape(traces[i])}</span>'
            f'<span class="slices">{escape(_slices(by_arm[reference]["slices"]))}</span>'
            f'<span class="score">divergence {scores[i]:.3f}</span></header><div class="pair">'
            f"<div><h4>{_swatch(reference)}{escape(reference)}</h4>"
            f"{_text(by_arm[reference]['output_text'])}</div>"
            f"<div><h4>{_swatch('candidate')}candidate</h4>"
            f"{_text(by_arm['candidate']['output_text'])}</div></div></article>"
        )
    return _section("examples", title, lead, "".join(cards))


_CSS: Final = """
:root{--fg:#1f2933;--muted:#616e7c;--line:#e4e7eb;--bg:#f4f6f8;--card:#fff;
--bad:#b42318;--bad-bg:#fdecea;--good:#1e7b34;--good-bg:#e6f4ea;--grey:#52606d;--grey-bg:#eef1f4}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);
font:14px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
.banner{padding:28px max(32px,calc((100% - 1240px)/2));color:#fff}
.banner.pass{background:#1e7b34}.banner.fail{background:#b42318}.banner.none{background:#52606d}
.banner h1{margin:4px 0 6px;font-size:28px;line-height:1.2}
.banner p{margin:0;opacity:.95}.banner ul{margin:10px 0 0;padding-left:20px}
.banner li{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:13px}
.kicker{text-transform:uppercase;letter-spacing:.08em;font-size:12px;opacity:.85}
main{max-width:1304px;margin:0 auto;padding:8px 32px 40px}
nav{display:flex;flex-wrap:wrap;gap:4px;margin:16px 0 4px}
nav a{color:var(--grey);text-decoration:none;padding:4px 10px;border-radius:999px;
background:var(--card);border:1px solid var(--line);font-size:13px}
nav a:hover{color:var(--fg);border-color:#9aa5b1}
section{background:var(--card);border:1px solid var(--line);border-radius:10px;
padding:20px 24px;margin:16px 0}
h2{font-size:19px;margin:0 0 2px}h3{font-size:15px;margin:20px 0 6px}
.lead{color:var(--muted);margin:0 0 14px;max-width:900px}
.scroll{overflow-x:auto}
table{border-collapse:collapse;width:100%;font-variant-numeric:tabular-nums}
th{font-size:12px;text-transform:uppercase;letter-spacing:.04em;color:var(--muted);
font-weight:600;border-bottom:2px solid var(--line)}
th,td{padding:7px 12px;text-align:right;white-space:nowrap}
td{border-bottom:1px solid var(--line)}
th:first-child,td:first-child,th:last-child{text-align:left}
td:first-child{font-weight:600}
td.worse{background:var(--bad-bg);color:var(--bad);font-weight:600}
td.better{background:var(--good-bg);color:var(--good);font-weight:600}
td.same{color:var(--grey)}td.none{color:var(--muted)}
td.soft-worse{color:var(--bad)}td.soft-better{color:var(--good)}
td:last-child{text-align:left;white-space:normal}
.facts{display:grid;grid-template-columns:repeat(auto-fill,minmax(230px,1fr));gap:10px 24px;
margin:18px 0 0;padding:14px 16px;background:var(--grey-bg);border-radius:8px}
.facts dt{color:var(--muted);font-size:11px;text-transform:uppercase;letter-spacing:.05em}
.facts dd{margin:0;font-weight:600;overflow-wrap:anywhere}
.arm{white-space:nowrap;margin-right:10px}
.swatch{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:5px}
.grid2{display:grid;grid-template-columns:1fr 1fr;gap:16px}
@media (max-width:960px){.grid2{grid-template-columns:1fr}}
.chart{margin:6px 0 14px}
.nodata{color:var(--muted);background:var(--grey-bg);border-radius:8px;padding:26px;
text-align:center;margin:6px 0 14px}
details{margin-top:8px}summary{cursor:pointer;color:var(--grey);font-weight:600}
.example{border:1px solid var(--line);border-radius:8px;margin:12px 0;overflow:hidden}
.example header{display:flex;gap:16px;align-items:baseline;padding:8px 12px;
background:var(--grey-bg);font-size:13px}
.example .trace{font-weight:700;font-family:ui-monospace,SFMono-Regular,Menlo,monospace}
.example .slices{color:var(--muted);flex:1}.example .score{font-weight:700;color:var(--bad)}
.pair{display:grid;grid-template-columns:1fr 1fr}.pair>div{min-width:0}
.pair>div+div{border-left:1px solid var(--line)}
.pair h4{margin:0;padding:8px 12px 0;font-size:12px;color:var(--muted);text-transform:uppercase}
.pair pre{margin:0;padding:8px 12px 12px;white-space:pre-wrap;overflow-wrap:anywhere;
max-height:320px;overflow:auto;font:12.5px/1.5 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
.pair pre.missing{color:var(--muted)}.cut{padding:0 12px 8px;color:var(--muted);font-size:12px}
footer{color:var(--muted);font-size:12px;text-align:center;margin-top:24px}
"""
