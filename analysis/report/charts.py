"""The charts of ``shadow report``: plotly figures from bounded data, one arm colour throughout.

Each builder returns a ``plotly.graph_objects.Figure``, or ``None`` when the run has nothing to
show (the report then says "no data" in its place). Data is bounded whatever the run's size:
distributions are at most about 2,000 order statistics per arm, picked in DuckDB (a window
over the sorted values, not every row), and the timeline is bucketed in SQL, so a report of a
run of millions of rows stays a few MB. Figures from ``analyze`` come as its
:class:`~analysis.result.GroupResult` groups, read by the registry's names; any may be None.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Final

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from analysis.result import GroupResult
from analysis.sql import REQUESTS, Queryable

__all__ = [
    "ARM_COLOURS",
    "MAX_SLICES",
    "arm_order",
    "cdf",
    "cdf_points",
    "cost_by_slice",
    "divergence_by_slice",
    "divergence_histogram",
    "latency_deltas_by_slice",
    "slice_label",
    "timeline",
    "tokens_by_slice",
    "top_slices",
]

ARM_COLOURS: Final = {
    "baseline": "#4c78a8",
    "production": "#4c78a8",
    "candidate": "#f58518",
    "baseline_repeat": "#8e9aaf",
}
"""One colour per arm in every chart (baseline and production are both the reference)."""
_OTHER: Final = "#54a24b"
_EXCESS: Final = "#b22222"
MAX_SLICES: Final = 30
"""Slices shown per chart: the largest ones by attempts."""
_BODY_POINTS: Final = 1_800
_TAIL_POINTS: Final = 200  # extra points above p99, where routing changes show first
_BUCKETS: Final = 120
_NICE_SECONDS: Final = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600)
_AXIS: Final = {"gridcolor": "#e9edf1", "linecolor": "#cbd2d9", "zerolinecolor": "#cbd2d9",
                "automargin": True, "title": {"standoff": 12}}  # fmt: skip
_TEMPLATE: Final = {  # plotly_white's look, without the weight of a full template per chart
    "layout": {"paper_bgcolor": "white", "plot_bgcolor": "white", "xaxis": _AXIS,
               "yaxis": _AXIS, "hovermode": "closest", "hoverlabel": {"align": "left"}}
}  # fmt: skip
_FONT: Final = "system-ui, -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif"


def arm_order(arms: Sequence[str]) -> list[str]:
    """Reference arm first, then candidate, then the baseline's repeat, then anything else."""
    rank = {"baseline": 0, "production": 1, "candidate": 2, "baseline_repeat": 3}
    return sorted(set(arms), key=lambda arm: (rank.get(arm, 9), arm))


def _colour(arm: str) -> str:
    return ARM_COLOURS.get(arm, _OTHER)


def slice_label(values: Mapping[str, Any] | None) -> str:
    """``code`` for one slice key, ``code / tenant-1`` for several, ``all traffic`` for none."""
    if not values:
        return "all traffic"
    return " / ".join(str(v) for v in values.values())


def _style(fig: Any, *, title: str, height: int, **layout: Any) -> Any:
    fig.update_layout(
        title={"text": title, "x": 0, "xanchor": "left", "font": {"size": 15}},
        template=_TEMPLATE,
        font={"family": _FONT, "size": 12, "color": "#1f2933"},
        height=height,
        margin={"l": 60, "r": 20, "t": 56, "b": 48},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.0, "x": 1, "xanchor": "right"},
        hoverlabel={"font": {"family": _FONT}},
        **layout,
    )
    return fig


# --- distributions -------------------------------------------------------------------------


def cdf_points(run: Queryable, expr: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per arm, (values, cumulative fractions) of ``expr`` at about 2,000 order statistics.

    The ranks are evenly spaced, plus a denser set above p99; the smallest and largest value
    are always included. ``expr`` is SQL over the requests view (:data:`analysis.sql.REQUESTS`:
    ``latency_ms``, ``ttft_ms``, ``tpot_ms`` of successful requests), so the CDFs show the
    per-request figures the headline reports.
    """
    frame = run.sql(
        f"WITH v AS (SELECT arm, {expr} AS x FROM {REQUESTS} WHERE ({expr}) IS NOT NULL),"
        " r AS (SELECT arm, x, row_number() OVER (PARTITION BY arm ORDER BY x) AS k,"
        " count(*) OVER (PARTITION BY arm) AS n FROM v)"
        " SELECT arm, x, CAST(k AS DOUBLE) / n AS p FROM r"
        f" WHERE (k - 1) % greatest(1, n // {_BODY_POINTS}) = 0 OR k = n"
        f" OR (k > 0.99 * n AND (k - 1) % greatest(1, n // {_TAIL_POINTS * 100}) = 0)"
        " ORDER BY arm, k"
    )
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for arm in arm_order(frame["arm"].unique().to_list()) if frame.height else []:
        part = frame.filter(frame["arm"] == arm)
        out[arm] = (part["x"].cast(float).to_numpy(), part["p"].cast(float).to_numpy())
    return out


def cdf(points: Mapping[str, tuple[np.ndarray, np.ndarray]], *, title: str, unit: str) -> Any:
    """An empirical CDF per arm on a log x axis, with p50/p95/p99 guide lines."""
    if not points:
        return None
    fig = go.Figure()
    for arm, (x, p) in points.items():
        fig.add_trace(
            go.Scatter(
                x=x,
                y=p,
                name=arm,
                mode="lines",
                line={"color": _colour(arm), "width": 2},
                hovertemplate=f"{arm}<br>%{{x:,.1f}} {unit}<br>%{{y:.2%}} at or below"
                "<extra></extra>",
            )
        )
    # Guide lines labelled inside the plot, on the left, where a CDF's top is empty.
    for q, where in ((0.5, "top left"), (0.95, "bottom left"), (0.99, "top left")):
        fig.add_hline(
            y=q,
            line={"color": "#9aa5b1", "width": 1, "dash": "dot"},
            annotation_text=f"p{round(q * 100)}",
            annotation_position=where,
            annotation_font={"size": 10, "color": "#616e7c"},
        )
    positive = all(x.size and np.all(x > 0) for x, _ in points.values())
    xaxis: dict[str, Any] = {"title": unit}
    if positive:
        low = min(float(x.min()) for x, _ in points.values())
        high = max(float(x.max()) for x, _ in points.values())
        ticks = _log_ticks(low, high)
        xaxis = {
            "title": f"{unit} (log scale)",
            "type": "log",
            "tickvals": ticks,
            "ticktext": [f"{v:,g}" for v in ticks],
        }
    return _style(
        fig,
        title=title,
        height=340,
        xaxis=xaxis,
        yaxis={"title": "fraction of attempts", "tickformat": ".0%", "range": [0, 1.02]},
    )


def _log_ticks(low: float, high: float) -> list[float]:
    """1-2-5 ticks over [low, high] (powers of ten only when that makes too many)."""
    decades = range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1)
    for steps in ((1, 2, 5), (1,)):
        ticks = [
            m * 10.0**e for e in decades for m in steps if low / 1.5 <= m * 10.0**e <= high * 1.5
        ]
        if len(ticks) <= 12:
            break
    return [float(f"{t:.6g}") for t in ticks]


# --- by slice ------------------------------------------------------------------------------


def top_slices(groups: Sequence[GroupResult]) -> list[str]:
    """Labels of the largest slices (attempts over every arm), at most :data:`MAX_SLICES`."""
    sizes: dict[str, int] = {}
    for g in groups:
        label = slice_label(g.slice)
        sizes[label] = sizes.get(label, 0) + int(g.value("n") or 0)
    return sorted(sizes, key=lambda s: (-sizes[s], s))[:MAX_SLICES]


def _by_arm(groups: Sequence[GroupResult]) -> dict[str, dict[str, GroupResult]]:
    out: dict[str, dict[str, GroupResult]] = {}
    for g in groups:
        out.setdefault(g.arm, {})[slice_label(g.slice)] = g
    return {arm: out[arm] for arm in arm_order(list(out))}


def _value(group: GroupResult | None, figure: str) -> float:
    """A group's figure as a float; no group or no value is NaN (a gap in plotly)."""
    return math.nan if group is None else _num(group.value(figure))


def _delta(group: GroupResult | None, figure: str) -> tuple[float, float, float]:
    """(change, lo, hi) of a group's relative change of ``figure``; NaN where there is none."""
    found = None if group is None else group.delta.get(figure)
    if found is None:
        return math.nan, math.nan, math.nan
    return _num(found.change), _num(found.lo), _num(found.hi)


def _num(value: Any) -> float:
    """A figure as a float; None (no value) becomes NaN, which plotly leaves as a gap."""
    return (
        float(value) if isinstance(value, int | float) and not isinstance(value, bool) else math.nan
    )


def latency_deltas_by_slice(groups: Sequence[GroupResult], reference: str | None) -> Any:
    """Relative change of latency p95 and p99 against the reference arm, per slice and arm,
    with the 95% interval of analyze's ``delta`` objects as error bars."""
    slices = top_slices(groups)
    arms = {arm: by for arm, by in _by_arm(groups).items() if arm != reference}
    figures = ("latency_p95_ms", "latency_p99_ms")
    reference_by_slice = _by_arm(groups).get(reference or "", {})
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.08)
    shown = False
    for col, figure in enumerate(figures, start=1):
        for arm, by in arms.items():
            change, up, down, hover = [], [], [], []
            for label in slices:
                g = by.get(label)
                c, lo, hi = _delta(g, figure)
                change.append(c * 100)
                up.append(max(hi - c, 0.0) * 100 if math.isfinite(hi) else math.nan)
                down.append(max(c - lo, 0.0) * 100 if math.isfinite(lo) else math.nan)
                base = _value(reference_by_slice.get(label), figure)
                hover.append(
                    f"{base:,.0f} → {_value(g, figure):,.0f} ms<br>"
                    f"95% CI {lo * 100:+.1f}% … {hi * 100:+.1f}%"
                )
            shown = shown or any(math.isfinite(c) for c in change)
            fig.add_trace(
                go.Bar(
                    x=slices,
                    y=change,
                    name=arm,
                    marker_color=_colour(arm),
                    legendgroup=arm,
                    showlegend=col == 1,
                    customdata=hover,
                    error_y={
                        "type": "data",
                        "symmetric": False,
                        "array": up,
                        "arrayminus": down,
                        "color": "#323f4b",
                        "thickness": 1.2,
                    },
                    hovertemplate=f"{arm} · %{{x}}<br>%{{y:+.1f}}%<br>%{{customdata}}"
                    "<extra></extra>",
                ),
                row=1,
                col=col,
            )
    if not shown:
        return None
    fig.update_yaxes(
        title_text="change vs " + (reference or "baseline"),
        ticksuffix="%",
        zeroline=True,
        zerolinecolor="#52606d",
        zerolinewidth=1.5,
    )
    for col, name in ((1, "latency p95"), (2, "latency p99")):
        fig.update_xaxes(title_text=name, row=1, col=col)
    return _style(
        fig,
        title="Tail latency change by slice (whiskers: 95% interval)",
        height=380,
        barmode="group",
    )


def tokens_by_slice(groups: Sequence[GroupResult]) -> Any:
    """Mean prompt and completion tokens per attempt, per slice and arm."""
    slices = top_slices(groups)
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.08)
    for col, name in ((1, "prompt tokens per attempt"), (2, "completion tokens per attempt")):
        fig.update_xaxes(title_text=name, row=1, col=col)
    shown = False
    for col, figure in enumerate(("prompt_tokens", "completion_tokens"), start=1):
        for arm, by in _by_arm(groups).items():
            means = []
            for label in slices:
                g = by.get(label)
                means.append(_value(g, figure) / n if (n := _value(g, "n")) > 0 else math.nan)
            shown = shown or any(math.isfinite(m) and m > 0 for m in means)
            fig.add_trace(
                go.Bar(
                    x=slices,
                    y=means,
                    name=arm,
                    marker_color=_colour(arm),
                    legendgroup=arm,
                    showlegend=col == 1,
                    hovertemplate=f"{arm} · %{{x}}<br>%{{y:,.1f}} tokens<extra></extra>",
                ),
                row=1,
                col=col,
            )
    if not shown:
        return None
    return _style(fig, title="Token use by slice", height=360, barmode="group")


def cost_by_slice(groups: Sequence[GroupResult]) -> Any:
    """Cost per successful response (all attempts' cost / successes), per slice and arm. A bar
    whose group had unpriced attempts is hatched and labelled ``≥``: it is the priced part only
    (its hover names the unpriced models), never shown as if complete."""
    slices = top_slices(groups)
    fig = go.Figure()
    shown = incomplete_shown = False
    for arm, by in _by_arm(groups).items():
        values, hover, patterns, labels = [], [], [], []
        for label in slices:
            g = by.get(label)
            values.append(_value(g, "cost_per_success_usd"))
            c, lo, hi = _delta(g, "cost_per_success_usd")
            text = (
                f"{c * 100:+.1f}% [{lo * 100:+.1f}%, {hi * 100:+.1f}%]"
                if math.isfinite(c)
                else "reference"
            )
            reason = g.incomplete("cost_per_success_usd") if g is not None else None
            if reason is not None and math.isfinite(values[-1]):
                incomplete_shown = True
                text += f"<br>{reason}: the priced part only"
            hover.append(text)
            patterns.append("/" if reason is not None else "")
            labels.append("≥" if reason is not None else "")
        shown = shown or any(math.isfinite(v) for v in values)
        fig.add_trace(
            go.Bar(
                x=slices,
                y=values,
                name=arm,
                marker={"color": _colour(arm), "pattern": {"shape": patterns}},
                text=labels,
                textposition="outside",
                customdata=hover,
                hovertemplate=f"{arm} · %{{x}}<br>$%{{y:.6f}} per success<br>"
                "%{customdata}<extra></extra>",
            )
        )
    if not shown:
        return None
    title = "Cost per successful response by slice"
    if incomplete_shown:
        title += (
            "<br><sup>hatched ≥: cost incomplete (unpriced attempts), the priced part only</sup>"
        )
    return _style(
        fig,
        title=title,
        height=360,
        barmode="group",
        yaxis={"title": "USD per success", "tickprefix": "$"},
    )


def divergence_histogram(values: Mapping[str, np.ndarray], *, kind: str) -> Any:
    """Share of traces per divergence bin (0 = same output, 1 = unrelated), per arm."""
    edges = np.linspace(0.0, 1.0, 41)
    fig = go.Figure()
    for arm in arm_order(list(values)):
        data = values[arm][np.isfinite(values[arm])]
        if data.size == 0:
            continue
        counts, _ = np.histogram(np.clip(data, 0.0, 1.0), bins=edges)
        fig.add_trace(
            go.Bar(
                x=(edges[:-1] + edges[1:]) / 2,
                y=counts / data.size,
                width=0.025,
                name=arm,
                marker_color=_colour(arm),
                opacity=0.75,
                hovertemplate=f"{arm}<br>divergence %{{x:.3f}}<br>%{{y:.1%}} of "
                f"{data.size:,} traces<extra></extra>",
            )
        )
    if not fig.data:
        return None
    return _style(
        fig,
        title=f"Output divergence from the reference arm ({kind})",
        height=340,
        barmode="overlay",
        bargap=0,
        xaxis={"title": "divergence (0 = same, 1 = unrelated)", "range": [0, 1]},
        yaxis={"title": "share of traces", "tickformat": ".0%"},
    )


def divergence_by_slice(groups: Sequence[GroupResult], reference: str | None) -> Any:
    """Mean divergence per slice and arm (bars) and the candidate's excess over the noise
    floor of the baseline's repeat (diamonds)."""
    slices = top_slices(groups)
    fig = go.Figure()
    shown = False
    for arm, by in _by_arm(groups).items():
        if arm == reference:
            continue
        means = [_value(by.get(s), "divergence_mean") for s in slices]
        shown = shown or any(math.isfinite(m) for m in means)
        fig.add_trace(
            go.Bar(
                x=slices,
                y=means,
                name=f"{arm}: mean",
                marker_color=_colour(arm),
                hovertemplate=f"{arm} · %{{x}}<br>mean %{{y:.3f}}<extra></extra>",
            )
        )
    candidate = _by_arm(groups).get("candidate", {})
    excess = [_value(candidate.get(s), "excess_divergence") for s in slices]
    bounds = [
        (math.nan, math.nan) if s not in candidate else candidate[s].interval("excess_divergence")
        for s in slices
    ]
    lows = [_num(lo) for lo, _ in bounds]
    highs = [_num(hi) for _, hi in bounds]
    if any(math.isfinite(e) for e in excess):
        shown = True
        fig.add_trace(
            go.Scatter(
                x=slices,
                y=excess,
                name="candidate: excess over repeat (95% interval)",
                mode="markers",
                marker={"symbol": "diamond", "size": 12, "color": _EXCESS},
                error_y={
                    "type": "data",
                    "symmetric": False,
                    "array": [
                        h - e if math.isfinite(h) else math.nan
                        for h, e in zip(highs, excess, strict=True)
                    ],
                    "arrayminus": [
                        e - lo if math.isfinite(lo) else math.nan
                        for lo, e in zip(lows, excess, strict=True)
                    ],
                    "color": _EXCESS,
                    "thickness": 1.2,
                },
                hovertemplate="excess · %{x}<br>%{y:+.3f}<extra></extra>",
            )
        )
    if not shown:
        return None
    return _style(
        fig,
        title="Divergence by slice",
        height=360,
        barmode="group",
        yaxis={"title": "divergence", "zeroline": True},
    )


# --- timeline ------------------------------------------------------------------------------


def _bucket_seconds(span: float) -> int:
    for seconds in _NICE_SECONDS:
        if span / seconds <= _BUCKETS:
            return seconds
    return int(math.ceil(span / _BUCKETS / 3600) * 3600)


def timeline(run: Queryable, start: float | None, end: float | None) -> Any:
    """Send rate, latency p50/p95 and errors per time bucket and arm, over the run."""
    if start is None or end is None:
        return None
    width = _bucket_seconds(max(end - start, 0.0))
    scale, unit = (60.0, "min") if end - start > 600 else (1.0, "s")
    sent = run.sql(
        "SELECT arm, floor((sent_at - $1) / $2) AS b, count(*) AS sends FROM run_results"
        " WHERE sent_at IS NOT NULL GROUP BY ALL ORDER BY arm, b",
        [start, width],
    )
    perf = run.sql(
        "SELECT arm, floor((scheduled_at - $1) / $2) AS b,"
        " quantile_cont(latency_ms, 0.5) AS p50, quantile_cont(latency_ms, 0.95) AS p95,"
        " count_if(NOT coalesce(ok, false)) AS errors FROM run_results"
        " WHERE scheduled_at IS NOT NULL GROUP BY ALL ORDER BY arm, b",
        [start, width],
    )
    if sent.height == 0 and perf.height == 0:
        return None
    last_send = float(
        run.sql("SELECT max(sent_at) - $1 AS t FROM run_results", [start])["t"][0] or 0.0
    )
    fig = make_subplots(
        rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.06, row_heights=[0.3, 0.4, 0.3]
    )
    arms = arm_order([*sent["arm"].to_list(), *perf["arm"].to_list()])
    for arm in arms:
        colour = _colour(arm)
        s = sent.filter(sent["arm"] == arm)
        starts = s["b"].cast(float).to_numpy() * width
        # The last bucket may be cut short by the end of the run: divide by the time it
        # covers, and leave it out when that is under half a bucket (a spurious dip or spike).
        covered = np.clip(last_send - starts, 0.0, width) if s.height else starts
        keep = covered >= width / 2
        fig.add_trace(
            go.Scatter(
                x=starts[keep] / scale,
                y=s["sends"].to_numpy()[keep] / covered[keep],
                name=arm,
                legendgroup=arm,
                mode="lines",
                line={"color": colour},
                hovertemplate=f"{arm}<br>%{{y:,.2f}} req/s<extra></extra>",
            ),
            row=1,
            col=1,
        )
        p = perf.filter(perf["arm"] == arm)
        x = p["b"].to_numpy() * width / scale
        for stat, dash in (("p50", "solid"), ("p95", "dot")):
            fig.add_trace(
                go.Scatter(
                    x=x,
                    y=p[stat].cast(float).to_numpy(),
                    name=f"{arm} {stat}",
                    legendgroup=arm,
                    showlegend=False,
                    mode="lines",
                    line={"color": colour, "dash": dash},
                    hovertemplate=f"{arm} {stat}<br>%{{y:,.0f}} ms<extra></extra>",
                ),
                row=2,
                col=1,
            )
        fig.add_trace(
            go.Bar(
                x=x,
                y=p["errors"].to_numpy(),
                name=f"{arm} errors",
                legendgroup=arm,
                showlegend=False,
                marker_color=colour,
                hovertemplate=f"{arm}<br>%{{y:,}} errors<extra></extra>",
            ),
            row=3,
            col=1,
        )
    fig.update_yaxes(title_text="sends / s", row=1, col=1)
    fig.update_yaxes(title_text="latency ms (solid p50, dotted p95)", type="log", row=2, col=1)
    fig.update_yaxes(title_text="errors", row=3, col=1)
    fig.update_xaxes(
        title_text=f"{unit} since the first scheduled send (buckets of {width} s)", row=3, col=1
    )
    return _style(fig, title="Timeline", height=560, barmode="group")
