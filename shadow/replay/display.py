"""What an operator sees during and after a replay: a live line, then a summary table."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Mapping

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from shadow.replay.stats import ReplayStats

__all__ = ["live_progress", "read_lines", "summary_table"]


def _status_line(stats: ReplayStats, rate: float) -> Text:
    lag = stats.lag_percentile(99, last=2000)
    parts = [
        f"sent {rate:,.0f}/s",
        f"in flight {stats.in_flight:,}",
        f"lag p99 {lag:.1f} ms" if lag is not None else "lag p99 -",
        f"late {stats.late:,}",
    ]
    for name, arm in sorted(stats.arms.items()):
        errors = sum(arm.errors.values())
        parts.append(f"{name} err {errors:,}")
    parts.append(f"cost ${stats.cost_usd:,.4f}")
    return Text("  ".join(parts), style="dim")


@contextlib.asynccontextmanager
async def live_progress(stats: ReplayStats, console: Console) -> AsyncIterator[None]:
    """Show a progress bar and a live status line while the block runs."""
    progress = Progress(
        TextColumn("[bold]replay[/] {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )
    task = progress.add_task(stats.run_id, total=stats.total)
    line = Text("")
    stop = asyncio.Event()

    async def refresh(live: Live) -> None:
        last_sent, last_at = 0, time.monotonic()
        rate = 0.0
        while not stop.is_set():
            now = time.monotonic()
            sent = sum(a.sent for a in stats.arms.values())
            if now - last_at >= 1.0:
                rate = (sent - last_sent) / (now - last_at)
                last_sent, last_at = sent, now
            progress.update(task, completed=stats.scheduled + stats.skipped_done)
            live.update(Group(progress, _status_line(stats, rate)))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.25)

    with Live(
        Group(progress, line), console=console, refresh_per_second=8, transient=False
    ) as live:
        updater = asyncio.create_task(refresh(live))
        try:
            yield
        finally:
            stop.set()
            await updater
            progress.update(task, completed=stats.scheduled + stats.skipped_done)


def summary_table(stats: ReplayStats) -> Table:
    """The final per-arm summary as a rich table."""
    data = stats.as_dict()
    table = Table(title=f"replay {stats.run_id}", title_justify="left")
    for column in ("arm", "sent", "ok rate", "errors", "p50 ms", "p99 ms", "cost USD"):
        table.add_column(column, justify="left" if column in ("arm", "errors") else "right")
    arms = data["arms"]
    assert isinstance(arms, dict)
    for name, arm in arms.items():
        errors = ", ".join(f"{k} {v}" for k, v in arm["errors"].items()) or "-"
        ok_rate = arm["ok_rate"]
        table.add_row(
            name,
            f"{arm['sent']:,}",
            f"{ok_rate:.1%}" if ok_rate is not None else "-",
            errors,
            _ms(arm["latency_p50_ms"]),
            _ms(arm["latency_p99_ms"]),
            f"{arm['cost_usd']:.4f}",
        )
    lag = (
        f"schedule lag p50 {_ms(data['lag_p50_ms'])} ms, p99 {_ms(data['lag_p99_ms'])} ms, "
        f"max {_ms(data['lag_max_ms'])} ms; late sends {data['late']}"
    )
    table.caption = lag
    return table


def _ms(value: object) -> str:
    return f"{value:,.1f}" if isinstance(value, int | float) else "-"


def read_lines(reads: Mapping[str, object]) -> list[str]:
    """What a bounded Kafka read read (``summary["reads"]``), one line per partition."""
    parts = reads.get("partitions")
    assert isinstance(parts, list)
    lines = [f"read {reads['source']}: {reads['records']:,} records, {reads['status']}"]
    for part in parts:
        read = (
            "nothing"
            if part["first_offset"] is None
            else f"offsets {part['first_offset']}..{part['last_offset']}"
        )
        lines.append(
            f"  partition {part['partition']}: {read}, {part['records']:,} records "
            f"(reported end {part['reported_end']}, ended: {part['ended'] or '-'})"
        )
    return lines
