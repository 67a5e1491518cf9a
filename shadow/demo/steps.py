"""What ``shadow demo`` shows while it runs: one line per step, with its status and elapsed time.

On a terminal each step is a live rich line (a spinner, then ✓ or ✗; a progress bar while
traffic is driven). Elsewhere (a pipe, CI logs) each step prints a line when it starts and one
when it ends, flushed at once, so a reader of the output can follow along.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType

from rich.console import Console, RenderableType
from rich.markup import escape
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TaskID, TextColumn
from rich.spinner import Spinner
from rich.table import Column, Table
from rich.text import Text

__all__ = ["Step", "Steps"]


class _Mark(ProgressColumn):
    """A spinner while the step runs, then its mark (✓ or ✗)."""

    def __init__(self) -> None:
        super().__init__()
        self._spinner = Spinner("dots", style="cyan")

    def render(self, task: Task) -> Text:
        mark = task.fields.get("mark")
        if mark:
            return Text.from_markup(mark)
        rendered = self._spinner.render(task.get_time())
        return rendered if isinstance(rendered, Text) else Text("…")


class _Detail(ProgressColumn):
    """The step's text, after a progress bar for the steps that asked for one."""

    def __init__(self) -> None:
        super().__init__()
        self._bar = BarColumn(bar_width=30)

    def render(self, task: Task) -> RenderableType:
        text = Text.from_markup(task.description)
        if not task.fields.get("bar"):
            return text
        row = Table.grid(padding=(0, 1))
        row.add_row(self._bar.render(task), text)
        return row


class _Elapsed(ProgressColumn):
    """Seconds since the step began, frozen when it ends."""

    def render(self, task: Task) -> Text:
        return Text(f"{task.fields.get('seconds') or task.elapsed or 0.0:5.1f} s", style="dim")


class Step:
    """One step of the demo; ``done``/``fail`` end it, ``update`` changes its text."""

    def __init__(self, steps: Steps, name: str, text: str, total: int | None) -> None:
        self._steps = steps
        self.name = name
        self.text = text
        self.total = total
        self.started = time.monotonic()
        self.seconds: float | None = None
        self._task: TaskID | None = None
        self._printed_quarter = 0
        if steps.progress is not None:
            self._task = steps.progress.add_task(
                escape(text), total=total or 1, name=name, bar=total is not None
            )
        else:
            steps.line(f"  [cyan]…[/] {name}: {escape(text)}")

    @property
    def elapsed(self) -> float:
        """Seconds since the step began (until it ended)."""
        return self.seconds if self.seconds is not None else time.monotonic() - self.started

    def update(self, text: str, completed: int | None = None) -> None:
        """New text, and for a step with a bar its progress."""
        self.text = text
        progress = self._steps.progress
        if progress is not None and self._task is not None:
            progress.update(self._task, description=escape(text), completed=completed)
        elif completed is not None and self.total:
            quarter = completed * 4 // self.total
            if quarter > self._printed_quarter and quarter < 4:
                self._printed_quarter = quarter
                self._steps.line(f"    {self.name}: {escape(text)}")

    def done(self, text: str | None = None) -> None:
        """End the step as a success."""
        self._end("[green]✓[/]", text)

    def fail(self, text: str) -> None:
        """End the step as a failure."""
        self._end("[red]✗[/]", text)

    def _end(self, mark: str, text: str | None) -> None:
        if self.seconds is not None:
            return
        self.seconds = time.monotonic() - self.started
        self._steps.timings[self.name] = round(self.seconds, 2)
        text = self.text if text is None else text
        progress = self._steps.progress
        if progress is not None and self._task is not None:
            progress.update(
                self._task,
                description=escape(text),
                mark=mark,
                seconds=self.seconds,
                completed=self.total or 1,
            )
        else:
            self._steps.line(f"  {mark} {self.name}: {escape(text)} ({self.seconds:.1f} s)")


class Steps:
    """The list of steps on screen; ``with Steps(console) as steps: with steps.step(...)``."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.timings: dict[str, float] = {}
        self.progress: Progress | None = None
        if console.is_terminal:
            self.progress = Progress(
                _Mark(),
                TextColumn("{task.fields[name]}", style="bold", table_column=Column(min_width=9)),
                _Detail(),
                _Elapsed(),
                console=console,
                refresh_per_second=8,
            )

    def __enter__(self) -> Steps:
        if self.progress is not None:
            self.progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

    def line(self, markup: str) -> None:
        """Print a line above the live steps (or in order, off a terminal), flushed."""
        console = self.progress.console if self.progress is not None else self.console
        console.print(markup, highlight=False, soft_wrap=True)
        sys.stdout.flush()

    @contextmanager
    def step(self, name: str, text: str, *, total: int | None = None) -> Iterator[Step]:
        """A step that ends as a failure if the block raises, else as a success."""
        step = Step(self, name, text, total)
        try:
            yield step
        except BaseException as exc:
            step.fail(_reason(exc))
            raise
        step.done()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, KeyboardInterrupt | asyncio.CancelledError):
        return "interrupted"
    return str(exc) or type(exc).__name__
