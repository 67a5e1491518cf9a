"""``shadow demo``: the whole flow on embedded defaults, one command, nothing to start by hand.

Each part is the real command in its own process, on 127.0.0.1 and a free port:

1. ``shadow broker --port 0``: the embedded Kafka-compatible broker;
2. ``shadow mock-llm --profile large`` (the baseline) and ``--profile routed`` (the candidate:
   short, easy prompts to a small model, long or hard ones to the large, the classic cost
   migration);
3. ``shadow capture`` in front of the baseline, teeing to the topic ``shadow.traces``;
4. the packaged window of the Azure LLM code trace through the sidecar with the OpenAI SDK (and
   every fifth request with the Anthropic SDK, to ``/v1/messages``), at the recorded gaps
   divided by ``--speed`` (:mod:`shadow.demo.traffic`);
5. ``shadow replay kafka://.../shadow.traces --repeat-baseline``: baseline, candidate and the
   baseline again (its noise floor), at the captured rate;
6. what ``shadow analyze --by size``, ``shadow gate`` with the demo's rules and ``shadow report
   --by size,format`` give, computed in this process with one embedder
   (:mod:`shadow.demo.analysis`).

The servers are :mod:`shadow.demo.stack`; every child is stopped on every exit path
(:mod:`shadow.demo.processes`), and the first Ctrl-C stops them all and exits 130. A gate
failure is the demo's finding, not its failure: exit 0 when every step ran, 1
(:class:`~shadow.demo.processes.DemoError`) when one could not.
"""

from __future__ import annotations

import asyncio
import json
import math
import shutil
import signal
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from shadow.demo.processes import Children, DemoError, busy_workers, in_thread, together
from shadow.demo.stack import TOPIC, Stack
from shadow.demo.steps import Steps
from shadow.demo.traffic import ANTHROPIC_EVERY, DriveStats, data_file, demo_records, drive
from shadow.errors import UsageError
from shadow.trace.record import TraceRecord

if TYPE_CHECKING:
    from analysis.embedders.base import Embedder

__all__ = ["BY", "DEFAULT_SPEED", "LOAD_TIME_SCALE", "REPORT_BY", "TOPIC", "DemoError",
           "DemoOptions", "busy_workers", "run"]  # fmt: skip

BY = ("size",)
"""The slice the summary, gate and report break results down by: where the routing differs."""

REPORT_BY = ("size", "format")
"""The report also breaks results down by wire format (OpenAI Chat or Anthropic Messages: the
``format`` slice capture adds to every record), to show the mixed-format traffic."""

DEFAULT_SPEED = 2.0
"""Traffic goes out at twice the recorded rate: the 33 s window takes 16 s to drive and 16 s
to replay, and the whole demo takes about a minute on two cores."""

LOAD_TIME_SCALE = 0.25
"""mock-llm's ``--time-scale`` at the recorded rate: the simulated models answer 4x faster than
their nominal speed, so the recorded burst (67 requests/s on one 16-slot large model) loads
them without a queue that takes minutes to drain. By default the demo passes
``LOAD_TIME_SCALE / speed``: at any ``--speed`` the models see the same load, and only the wall
clock is compressed."""

_MARKER = ".shadow-demo"
_OUTPUTS = ("results.duckdb", "results.duckdb.wal", "results.duckdb.dead.jsonl", "report.html",
            "summary.txt", "summary.json", "gate.txt", "replay.json", "timings.json")  # fmt: skip
_REQUEST_TIMEOUT_S = 60.0


@dataclass(frozen=True, kw_only=True)
class _Findings:
    table: Table
    notes: list[str]
    """What ``shadow analyze`` prints under the table (rich markup): unpriced models, spend
    n/a, replay fidelity, alarms."""
    text: str
    """The table as plain text, for consoles that are not terminals (CI logs, pipes)."""
    verdict_lines: list[str]
    passed: bool
    verdict: str
    """The gate's verdict: pass, fail, inconclusive or nothing_judged."""
    report: Path


@dataclass(frozen=True, kw_only=True)
class DemoOptions:
    """What ``shadow demo`` runs; see ``shadow demo --help``."""

    out: Path = Path("shadow-demo")
    requests: int | None = None
    seconds: float | None = None
    speed: float = DEFAULT_SPEED
    time_scale: float | None = None
    seed: int = 0
    embedder: str = "auto"
    keep_running: bool = False

    def __post_init__(self) -> None:
        if not (math.isfinite(self.speed) and self.speed > 0):
            raise UsageError(f"--speed has value {self.speed}; it must be > 0")
        if self.time_scale is not None and not self.time_scale >= 0:
            raise UsageError(f"--time-scale has value {self.time_scale}; it must be >= 0")
        if self.requests is not None and self.requests < 1:
            raise UsageError(f"--requests has value {self.requests}; it must be >= 1")
        if self.seconds is not None and not self.seconds > 0:
            raise UsageError(f"--seconds has value {self.seconds}; it must be > 0")


def run(options: DemoOptions, console: Console | None = None) -> int:
    """Run the demo: 0 when it ran (whatever the gate said), 128 + signal when interrupted.

    Raises:
        UsageError: a bad option or output directory (exit 2).
        DemoError: a step failed; the message names the log to read (exit 1).
    """
    return asyncio.run(_main(options, console or Console(highlight=False)))


async def _main(options: DemoOptions, console: Console) -> int:
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    demo = _Demo(options, console)
    received: list[int] = []

    def on_signal(signum: int) -> None:
        received.append(signum)
        if len(received) == 1:
            task.cancel()
        else:
            demo.children.kill_all()  # a second Ctrl-C: no more waiting

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        return await demo.run()
    except asyncio.CancelledError:
        if not received:
            raise
        task.uncancel()
        if demo.finished:  # --keep-running ends with Ctrl-C
            return 0
        console.print(
            f"shadow demo: interrupted; every process it started is stopped (logs: {demo.logs})",
            style="yellow",
            soft_wrap=True,
        )
        return 128 + received[0]
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


class _Demo:
    """One run of the demo: its directory, its children and what each step found."""

    def __init__(self, options: DemoOptions, console: Console) -> None:
        self.options = options
        self.console = console
        self.out = options.out.absolute()
        self.logs = self.out / "logs"
        self.results = self.out / "results.duckdb"
        self.children = Children(self.logs)
        time_scale = options.time_scale
        if time_scale is None:
            time_scale = LOAD_TIME_SCALE / options.speed
        self.run_id = "demo-" + time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        self.stack = Stack(
            self.children, spool=self.out / "spool", seed=options.seed, time_scale=time_scale
        )
        self.embedder: Embedder | None = None
        self.finished = False

    async def run(self) -> int:
        _prepare(self.out)
        started = time.monotonic()
        with (
            data_file("azure_code_2023_window.csv") as csv_path,
            data_file("shadow.toml") as config,
            data_file("gates.toml") as rules,
        ):
            records = demo_records(
                csv_path,
                requests=self.options.requests,
                seconds=self.options.seconds,
                seed=self.options.seed,
            )
            self.console.print(
                _headline(records, self.options.speed, self.out), highlight=False, soft_wrap=True
            )
            steps = Steps(self.console)
            try:
                with steps:
                    await together(self._load_embedder(), self.stack.start(steps, config))
                    traffic = await self._traffic(steps, records)
                    await self.stack.wait_for_tee(steps, _teed(traffic))
                    await self._replay(steps, _teed(traffic))
                    stop = [] if self.options.keep_running else [self._stop_servers(steps)]
                    findings, *_ = await together(self._findings(steps, rules), *stop)
            except BaseException:
                await self.children.stop_all(grace_s=5.0)
                raise
            timings = {**steps.timings, "total": round(time.monotonic() - started, 2)}
            (self.out / "timings.json").write_text(json.dumps(timings, indent=2) + "\n")
            self._print_results(findings, timings["total"])
        if self.options.keep_running:
            await self._keep_running()
        return 0

    async def _load_embedder(self) -> None:
        from shadow.demo.analysis import load_embedder

        self.embedder = await in_thread(lambda: load_embedder(self.options.embedder))

    async def _traffic(self, steps: Steps, records: list[TraceRecord]) -> DriveStats:
        total = len(records)
        text = (
            f"driving {total} requests through the sidecar with the OpenAI SDK, every "
            f"{ANTHROPIC_EVERY}th with the Anthropic SDK (recorded gaps / {self.options.speed:g})"
        )
        with steps.step("traffic", text, total=total) as step:

            def progress(stats: DriveStats) -> None:
                errors = sum(stats.errors.values())
                step.update(
                    f"{stats.done}/{total} answered"
                    + (f", {errors} errors" if errors else "")
                    + f"  (in flight {stats.sent - stats.done})",
                    completed=stats.done,
                )

            stats = await self.stack.while_running(
                drive(
                    records,
                    self.stack.urls["capture"],
                    speed=self.options.speed,
                    timeout_s=_REQUEST_TIMEOUT_S,
                    on_progress=progress,
                )
            )
            if not stats.ok:
                raise DemoError(
                    f"no request got through the sidecar ({_counts(stats.errors)}): "
                    f"see {self.logs / 'capture.log'} and {self.logs / 'baseline.log'}"
                )
            p50, p99 = stats.latency_ms(0.5), stats.latency_ms(0.99)
            errors = f", errors: {_counts(stats.errors)}" if stats.errors else ""
            formats = ", ".join(f"{n} {wire}" for wire, n in sorted(stats.formats.items()))
            step.done(
                f"{stats.ok}/{total} ok ({formats}) in {stats.span_s:.1f} s, latency through the "
                f"sidecar p50 {p50:,.0f} ms, p99 {p99:,.0f} ms{errors}"
            )
        return stats

    async def _replay(self, steps: Steps, captured: int) -> None:
        source = self.stack.source
        text = "replaying from Kafka to baseline, candidate and baseline_repeat"
        with steps.step("replay", text) as step:
            code, stdout = await self.stack.while_running(
                self.children.run_to_end("replay", [
                    "replay", source, "--baseline", self.stack.urls["baseline"],
                    "--candidate", self.stack.urls["candidate"], "--repeat-baseline",
                    "--speed", "1", "--out", str(self.results), "--run-id", self.run_id,
                    "--timeout", f"{_REQUEST_TIMEOUT_S:g}", "--grace", "5", "--json",
                ])
            )  # fmt: skip
            if code != 0:
                raise DemoError(
                    f"the replay exited with code {code}: see {self.logs / 'replay.log'}"
                )
            try:
                summary = json.loads(stdout.strip().splitlines()[-1])
            except (ValueError, IndexError):
                raise DemoError(
                    f"the replay printed no summary: see {self.logs / 'replay.log'}"
                ) from None
            (self.out / "replay.json").write_text(json.dumps(summary, indent=2) + "\n")
            lag = summary.get("lag_p99_ms")
            records = summary.get("records")
            read = f"{records} records" if records == captured else f"{records} of {captured}"
            step.done(
                f"{read} × 3 arms at the captured rate → {self.results.name}"
                + (f", schedule lag p99 {lag:.1f} ms" if isinstance(lag, float) else "")
            )

    async def _stop_servers(self, steps: Steps) -> None:
        with steps.step("stop", "stopping the broker, sidecar and pipelines") as step:
            await self.children.stop_all()
            step.done("broker, sidecar and pipelines stopped")

    async def _findings(self, steps: Steps, rules: Path) -> _Findings:
        """analyze, gate and report, in this process with one embedder (shadow.demo.analysis)."""
        from shadow.demo import analysis

        embedder = self.embedder
        measure = "lexical" if embedder is None else f"semantic, {embedder.name}"
        by = ",".join(BY)
        # A worker thread still busy when Ctrl-C cancels a step keeps the run; closing it
        # under that thread's feet could crash, so the run is closed on success only.
        run = await in_thread(lambda: analysis.open_results(self.results))
        with steps.step("analyze", f"shadow analyze results.duckdb --by {by}") as step:
            result = await in_thread(lambda: analysis.summarise(run, BY, rules, embedder))
            table = analysis.summary_table(result)
            notes = analysis.summary_notes(result)
            plain = "".join(Text.from_markup(line).plain + "\n" for line in notes)
            text = analysis.table_text(table) + plain
            (self.out / "summary.txt").write_text(text)
            (self.out / "summary.json").write_text(analysis.summary_json(result))
            step.done(f"by {by}, {measure} divergence → summary.txt, summary.json")
        with steps.step("gate", "shadow gate results.duckdb --rules <demo gates.toml>") as step:
            verdict = await in_thread(lambda: analysis.judge(run, rules, embedder))
            (self.out / "gate.txt").write_text("\n".join(verdict.lines) + "\n")
            step.done(verdict.summary.removeprefix("gate: "))
        target = self.out / "report.html"
        with steps.step(
            "report", "shadow report results.duckdb --by size,format --out report.html"
        ) as step:
            path = await in_thread(
                lambda: analysis.write_html(
                    run, target, by=REPORT_BY, rules=rules, embedder=embedder
                )
            )
            step.done(f"{path.name}, {path.stat().st_size / 1e6:.1f} MB")
        run.close()
        return _Findings(table=table, notes=notes, text=text, verdict_lines=verdict.lines,
                         passed=verdict.passed, verdict=verdict.verdict,
                         report=path)  # fmt: skip

    def _print_results(self, findings: _Findings, total_s: float) -> None:
        def say(text: str | Text | Table = "", style: str | None = None) -> None:
            self.console.print(text, style=style, highlight=False, soft_wrap=True)

        say()
        if self.console.is_terminal:
            say(findings.table)
            for line in findings.notes:  # rich markup, as shadow analyze prints them
                say(Text.from_markup(line))
        else:  # the text already holds the notes
            say(Text(findings.text.rstrip("\n")))
        say()
        say(Text("\n".join(findings.verdict_lines)))
        say(
            "[green]the candidate passes the demo's gate[/]"
            if findings.passed
            else f"[yellow]the demo's gate says {findings.verdict.replace('_', ' ')}[/] (shadow"
            " gate would exit 1 on this run; the demo itself ran fine, so it exits 0)"
        )
        say()
        say(f"report:  {escape(str(findings.report))}")
        say(f"results: {escape(str(self.results))} (run {self.run_id})")
        say(f"logs:    {escape(str(self.logs))}")
        say(f"demo ran in {total_s:.1f} s")
        say(f"next:    shadow analyze {escape(str(self.results))} --by intent")

    async def _keep_running(self) -> None:
        self.finished = True
        urls = self.stack.urls
        self.console.print(
            "\nstill running, until Ctrl-C:\n"
            f"  broker     {self.stack.source}\n"
            f"  baseline   {urls['baseline']}  (mock-llm --profile large)\n"
            f"  candidate  {urls['candidate']}  (mock-llm --profile routed)\n"
            f"  capture    {urls['capture']}/v1  (point OPENAI_BASE_URL here: it tees to Kafka)\n"
            "try:\n"
            f"  shadow replay {self.stack.source} --baseline {urls['baseline']} "
            f"--candidate {urls['candidate']} --repeat-baseline --out again.duckdb",
            highlight=False,
            soft_wrap=True,
        )
        try:
            await asyncio.Event().wait()
        finally:
            await self.children.stop_all()


def _prepare(out: Path) -> None:
    """Make ``out`` ready for a run: create it, or clear the files of the previous run."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; give a directory")
    if out.is_dir() and any(out.iterdir()) and not (out / _MARKER).exists():
        raise UsageError(
            f"--out {out} is not empty and was not written by shadow demo; give a new or "
            "empty directory"
        )
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / _MARKER).write_text("written by shadow demo; a rerun replaces its files\n")
        for name in _OUTPUTS:
            (out / name).unlink(missing_ok=True)
        for name in ("logs", "spool"):  # the spool of an interrupted run must not replay
            shutil.rmtree(out / name, ignore_errors=True)
        (out / "logs").mkdir()
    except OSError as exc:
        raise UsageError(f"cannot write to --out {out}: {exc.strerror or exc}") from None


def _headline(records: list[TraceRecord], speed: float, out: Path) -> str:
    if not records:
        raise UsageError("the window holds no requests; raise --requests or --seconds")
    per_second = Counter(r.captured_at // 1_000_000_000 for r in records)  # calendar seconds
    span = (records[-1].captured_at - records[0].captured_at) / 1e9
    sizes = Counter(r.slices.get("size", "") for r in records)
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(records[0].captured_at // 10**9))
    mix = ", ".join(f"{n} {size}" for size, n in sorted(sizes.items()))
    return (
        f"[bold]shadow demo[/]: {len(records)} requests of the Azure LLM code trace "
        f"({when} UTC, {span:.1f} s, peak {max(per_second.values())}/s; {mix}) "
        f"at {speed:g}x the recorded rate → {escape(str(out))}"
    )


def _teed(traffic: DriveStats) -> int:
    """Exchanges the sidecar saw an answer for: each becomes a TraceRecord."""
    return traffic.ok + sum(n for kind, n in traffic.errors.items() if kind.startswith("http_"))


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{kind} {n}" for kind, n in counter.most_common())
