"""The servers of ``shadow demo``: broker, baseline, candidate and the capture sidecar.

Each is the real command in its own process, on 127.0.0.1 and a free port (``--port 0``); its
address is read from the line it prints when it listens, and it counts as up once its health
endpoint answers (the broker prints its line only after answering a Kafka request).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import httpx

from shadow.demo.processes import Child, Children, DemoError, together
from shadow.demo.steps import Steps

__all__ = ["SERVERS", "TOPIC", "Stack"]

T = TypeVar("T")

TOPIC = "shadow.traces"
SERVERS = ("broker", "baseline", "candidate", "capture")

_BROKER_READY = re.compile(r"bootstrap servers: (?P<address>\S+)")
_LISTENING = re.compile(r"listening on (?P<address>https?://\S+)")
_START_TIMEOUT_S = 60.0
_TEE_TIMEOUT_S = 30.0


class Stack:
    """The demo's running servers, as children of ``children``; ``urls`` once started."""

    def __init__(self, children: Children, *, spool: Path, seed: int, time_scale: float) -> None:
        self.children = children
        self.spool = spool
        self.seed = seed
        self.time_scale = time_scale
        self.urls: dict[str, str] = {}

    @property
    def source(self) -> str:
        """The captured traffic, as ``shadow replay`` reads it: ``kafka://BOOTSTRAP/TOPIC``."""
        return f"kafka://{self.urls['broker']}/{TOPIC}"

    async def start(self, steps: Steps, config: Path) -> None:
        """Start the broker and both pipelines at once, then the sidecar in front of the
        baseline (teeing to the broker), each as a step on screen."""
        from shadow.sim.profiles import LARGE

        scale = ["--seed", str(self.seed), "--time-scale", f"{self.time_scale:g}"]
        broker = self.children.add("broker", ["broker", "--port", "0"], title="broker")
        # The baseline serves two arms at once in the replay (baseline and baseline_repeat):
        # twice the slots keep the load per arm what the candidate's large model sees, so a
        # latency difference is the routing's, not the double load's.
        slots = ["--slots", str(2 * LARGE.slots)]
        baseline = self.children.add(
            "baseline",
            ["mock-llm", "--port", "0", "--profile", "large", *slots, *scale],
            title="baseline pipeline (mock-llm)",
        )
        candidate = self.children.add(
            "candidate",
            ["mock-llm", "--port", "0", "--profile", "routed", *scale],
            title="candidate pipeline (mock-llm)",
        )

        async def start_broker() -> None:
            with steps.step("broker", "starting the Kafka-compatible broker") as step:
                match = await broker.start(_BROKER_READY, within_s=_START_TIMEOUT_S)
                broker.note_descendants()
                self.urls["broker"] = match["address"]
                step.done(f"in memory, on {match['address']}")

        async def start_mock(child: Child, what: str) -> None:
            with steps.step(child.name, f"starting mock-llm ({what})") as step:
                url = (await child.start(_LISTENING, within_s=_START_TIMEOUT_S))["address"]
                await child.wait_healthy(url + "/health", within_s=_START_TIMEOUT_S)
                self.urls[child.name] = url
                step.done(f"{url}  {what}")

        await together(
            start_broker(),
            start_mock(baseline, "--profile large: every prompt to shadow-large"),
            start_mock(candidate, "--profile routed: short, easy prompts to shadow-small"),
        )
        with steps.step("capture", "starting the capture sidecar") as step:
            sidecar = self.children.add("capture", [
                "capture", "--upstream", self.urls["baseline"], "--listen", "127.0.0.1:0",
                "--kafka", self.urls["broker"], "--topic", TOPIC, "--config", str(config),
                "--spool-dir", str(self.spool),
            ], title="capture sidecar")  # fmt: skip
            url = (await sidecar.start(_LISTENING, within_s=_START_TIMEOUT_S))["address"]
            await sidecar.wait_healthy(url + "/shadow/health", within_s=_START_TIMEOUT_S)
            self.urls["capture"] = url
            step.done(f"{url} → baseline, teeing to {self.source}")

    async def wait_for_tee(self, steps: Steps, expected: int) -> None:
        """Wait until the sidecar reports ``expected`` records delivered to Kafka (or dropped)."""
        log = self.children.logs / "capture.log"
        text = f"waiting for the sidecar to deliver {expected} records to Kafka"
        with steps.step("tee", text) as step:
            deadline = time.monotonic() + _TEE_TIMEOUT_S
            url = self.urls["capture"] + "/shadow/metrics"
            async with httpx.AsyncClient(timeout=5.0, trust_env=False) as client:
                while True:
                    try:
                        counts = _metrics((await client.get(url)).text)
                    except httpx.HTTPError as exc:
                        raise DemoError(
                            f"the sidecar stopped answering ({exc}): see {log}"
                        ) from None
                    sent = int(counts.get("shadow_capture_records_sent_total", 0))
                    dropped = int(sum(v for k, v in counts.items() if "dropped" in k))
                    if sent + dropped >= expected:
                        break
                    if time.monotonic() > deadline:
                        raise DemoError(
                            f"the sidecar delivered {sent} of {expected} records to Kafka in "
                            f"{_TEE_TIMEOUT_S:.0f} s: see {log}"
                        )
                    await asyncio.sleep(0.1)  # polling an observable count, bounded above
            lost = f", {dropped} dropped (see {log})" if dropped else ""
            step.done(f"{sent} TraceRecords on {self.source}{lost}")

    async def while_running(self, work: Coroutine[Any, Any, T]) -> T:
        """Await ``work``; fail at once, naming its log, if a server exits meanwhile."""
        task = asyncio.ensure_future(work)
        watch = asyncio.ensure_future(self.children.watch(*SERVERS))
        try:
            await asyncio.wait({task, watch}, return_when=asyncio.FIRST_COMPLETED)
            if watch.done():
                watch.result()  # raises: a server exited
            return task.result()
        finally:
            for future in (task, watch):
                future.cancel()
            await asyncio.gather(task, watch, return_exceptions=True)


def _metrics(text: str) -> dict[str, float]:
    """Prometheus text → {name{labels}: value} (enough for the sidecar's counters)."""
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            with contextlib.suppress(ValueError):
                values[name] = float(value)
    return values
