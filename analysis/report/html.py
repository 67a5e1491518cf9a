"""The HTML pieces of ``shadow report``: cards, tables, the banner, facts and examples.

Each returns HTML text; every text that comes from the run (outputs, slice values, run id, gate
messages) is escaped here.
"""

from __future__ import annotations

import json
import math
from collections.abc import Container, Mapping, Sequence
from datetime import UTC, datetime
from html import escape
from typing import Any, Final

import numpy as np

from analysis.figures import FIGURES
from analysis.report import charts
from analysis.result import DivergenceSample, GroupResult
from analysis.run import Run
from analysis.verdicts import JUDGED, Verdict, decide

__all__ = [
    "MAX_TEXT",
    "Row",
    "banner",
    "examples_section",
    "facts_html",
    "fmt",
    "gate_html",
    "nav",
    "nodata",
    "number",
    "section",
    "slice_table",
    "swatch",
    "table",
]

MAX_TEXT: Final = 4_000
"""Characters of each example output shown; the rest is cut with a note."""
Row = tuple[list[str], str]  # cells (plain text) and a tone: worse, better, same, none, ...


def number(value: Any) -> float | None:
    """A figure as a finite float, or None (no value, NaN, a bool or not a number)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def fmt(value: float | None, unit: str) -> str:
    """A figure for a table cell, by its registry unit (``ms`` and the rest as milliseconds)."""
    if value is None:
        return "–"
    if unit == "usd":
        return f"${value:,.0f}" if abs(value) >= 1_000 else f"${value:.3g}"
    if unit == "rate":
        return f"{value:.2%}"
    if unit == "ratio":
        return f"{value:+.3f}"
    return f"{value:,.0f} ms" if abs(value) >= 100 else f"{value:,.1f} ms"


def nodata(message: str) -> str:
    """What a section shows in place of a chart or table it has no data for."""
    return f'<p class="nodata">{escape(message)}</p>'


def section(anchor: str, title: str, lead: str, body: str) -> str:
    """A card; ``lead`` and ``body`` are HTML, so callers escape what they put in them."""
    return (
        f'<section id="{anchor}"><h2>{escape(title)}</h2><p class="lead">{lead}</p>{body}</section>'
    )


def nav() -> str:
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


def table(header: Sequence[str], rows: Sequence[Row], *, toned: Container[int] = ()) -> str:
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


def swatch(arm: str) -> str:
    colour = charts.ARM_COLOURS.get(arm, "#54a24b")
    return f'<span class="swatch" style="background:{colour}"></span>'


def banner(
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
        outcome = decide(verdicts)
        failed = [v for v in verdicts if v.status == "fail"]
        unsure = [v for v in verdicts if v.status == "inconclusive"]
        judged = sum(v.status in JUDGED for v in verdicts)
        if outcome.verdict == "fail":
            tone, title = "fail", f"Do not ship: {len(failed)} of {judged} gate checks failed"
            items = [v.message for v in failed]
            if unsure:
                detail += f" {len(unsure)} more checks inconclusive."
        elif outcome.verdict == "nothing_judged":
            tone, title = "none", "The gate judged nothing it was asked to: not a pass"
            items = list(outcome.unjudged)
        elif outcome.verdict == "inconclusive":
            tone = "none"
            title = f"Inconclusive: {len(unsure)} of {judged} gate checks cannot tell yet"
            items = [v.message for v in unsure]
            detail += " No check failed; more traces would settle the rest (n_needed)."
        else:
            tone, title = "pass", f"Gate passed: all {judged} judged checks"
        if len(verdicts) > judged:
            detail += f" {len(verdicts) - judged} checks not judged (too few samples or no data)."
    listed = "".join(f"<li>{escape(m)}</li>" for m in items)
    return (
        f'<header class="banner {tone}"><div class="kicker">shadow report · run '
        f"{escape(run_id)}</div><h1>{escape(title)}</h1><p>{escape(detail)}</p>"
        + (f"<ul>{listed}</ul>" if listed else "")
        + "</header>"
    )


def gate_html(verdicts: Sequence[Verdict] | None) -> str:
    if not verdicts:
        return ""
    tone = {"fail": "worse", "pass": "better", "inconclusive": "same"}
    rows = [([v.status.replace("_", " "), v.message], tone.get(v.status, "none")) for v in verdicts]
    return "<h3>Gate checks</h3>" + table(["Status", "Check"], rows, toned=(0,))


def facts_html(
    run: Run, info: Mapping[str, Any], reference: str | None, div_kind: str, by: list[str]
) -> str:
    arms = info["arms"]
    arm_text = " ".join(
        f'<span class="arm">{swatch(arm)}{escape(arm)} {row["n"]:,}</span>'
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


def slice_table(groups: Sequence[GroupResult], by: list[str]) -> str:
    """Every headline figure of every (slice, arm) group, folded away under the latency charts."""
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
    keep = set(charts.top_slices(groups))
    figures = [
        FIGURES[name]
        for name in ("ok_rate", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms",
                     "ttft_p95_ms", "cost_per_success_usd")
    ]  # fmt: skip
    rows: list[Row] = []
    for g in groups:
        label = charts.slice_label(g.slice)
        if label not in keep:
            continue
        found = g.delta.get("latency_p99_ms")
        change, lo, hi = (None, None, None) if found is None else (
            number(found.change), number(found.lo), number(found.hi))  # fmt: skip
        delta = "" if change is None else f"{change:+.1%}"
        if change is not None and lo is not None and hi is not None:
            delta += f" [{lo:+.1%}, {hi:+.1%}]"
        div, excess = number(g.value("divergence_mean")), number(g.value("excess_divergence"))
        rows.append(
            (
                [
                    label,
                    g.arm,
                    f"{number(g.value('n')) or 0:,.0f}",
                    *(_priced(g, f.name, fmt(number(g.value(f.name)), f.unit)) for f in figures),
                    delta,
                    "" if div is None else f"{div:.3f}",
                    "" if excess is None else fmt(excess, "ratio"),
                ],
                "",
            )
        )
    return (
        "<details><summary>Every figure by slice and arm</summary>"
        + table(header, rows)
        + "</details>"
    )


def _priced(group: GroupResult, name: str, shown: str) -> str:
    """``≥ $0.0012*`` when the figure is an incomplete cost (the priced part only)."""
    return f"≥ {shown}*" if shown != "–" and group.incomplete(name) else shown


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


def examples_section(sample: DivergenceSample | None, k: int) -> str:
    """The most divergent pairs of the sample, the reference's and the candidate's side by side."""
    title = "Most divergent examples"
    lead = (
        "Final outputs of the same trace on the reference arm and the candidate, most "
        "divergent first."
    )
    if sample is None or k <= 0:
        missing = "no reference arm to compare with" if sample is None else "none asked for"
        return section("examples", title, lead, nodata(missing))
    traces, scores = sample.scores.get("candidate", ([], np.zeros(0)))
    order = [int(i) for i in np.argsort(-scores, kind="stable") if np.isfinite(scores[i])][:k]
    if not order:
        return section("examples", title, lead, nodata("no trace has outputs on both arms"))
    if sample.total > len(sample.rows):
        lead += f" Among {len(sample.rows):,} of {sample.total:,} traces (a hash sample)."
    reference, cards = sample.reference, []
    for i in order:
        by_arm = sample.rows[traces[i]]
        cards.append(
            f'<article class="example"><header><span class="trace">{escape(traces[i])}</span>'
            f'<span class="slices">{escape(_slices(by_arm[reference]["slices"]))}</span>'
            f'<span class="score">divergence {scores[i]:.3f}</span></header><div class="pair">'
            f"<div><h4>{swatch(reference)}{escape(reference)}</h4>"
            f"{_text(by_arm[reference]['output_text'])}</div>"
            f"<div><h4>{swatch('candidate')}candidate</h4>"
            f"{_text(by_arm['candidate']['output_text'])}</div></div></article>"
        )
    return section("examples", title, lead, "".join(cards))
