"""The traffic of ``shadow demo``: a window of the public Azure trace, sent with the OpenAI SDK
and, for every fifth request (:data:`ANTHROPIC_EVERY`), the Anthropic SDK.

The window ships in the package (``shadow/demo/data/azure_code_2023_window.csv``, rows 1967 to
2541 of the Azure LLM code trace; see ``ATTRIBUTION.md`` there), so the demo needs nothing
beside the install. Rows keep their numbers in the source file, so the records are the ones
``shadow import azure azure_llm_code_2023.csv`` builds for those rows with the same seed.

Mixed formats: every fifth record is sent to ``/v1/messages`` with ``anthropic.AsyncAnthropic``,
its chat request translated (system prompt apart, the turns, ``max_tokens``, ``metadata``,
streamed), so the capture, the replay and the report see two wire formats, as a team moving
traffic between providers does. The simulated models answer both alike.

Requests go out open loop at the recorded gaps divided by ``speed``: request *i* is due at
``start + (t_i - t_0) / speed`` whatever happened to earlier ones, as the replayer does.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shadow.trace.azure import iter_records, read_azure_csv, select_rows
from shadow.trace.record import TraceRecord

if TYPE_CHECKING:
    import anthropic
    import openai

__all__ = [
    "ANTHROPIC_EVERY",
    "SIZE_HEADER",
    "WINDOW_FIRST_ROW",
    "WINDOW_ROWS",
    "DriveStats",
    "data_file",
    "demo_records",
    "drive",
]

WINDOW_FIRST_ROW = 1967
"""Number of the window's first data row in the source CSV (the header is not a row)."""

WINDOW_ROWS = 575
"""Data rows in the packaged window."""

SIZE_HEADER = "x-prompt-size"
"""Header carrying the record's ``size`` slice, which the demo's sidecar config turns into a
slice label (the application tags its traffic; the request body stays the imported one)."""

ANTHROPIC_EVERY = 5
"""Every fifth record (the 5th, 10th, ...) is sent with the Anthropic SDK to ``/v1/messages``."""

_SERVICE = "azure-llm-code-2023"  # as `shadow import azure` names the source file's records
_API_KEY = "sk-demo-never-leaves-the-sidecar"  # redacted by the sidecar, ignored by mock-llm
_START_DELAY_S = 0.2


@contextmanager
def data_file(name: str) -> Iterator[Path]:
    """A file of ``shadow/demo/data`` as a real path, while the block runs."""
    with resources.as_file(resources.files("shadow.demo") / "data" / name) as path:
        yield path


def demo_records(
    csv_path: Path, *, requests: int | None = None, seconds: float | None = None, seed: int = 0
) -> list[TraceRecord]:
    """The first ``seconds`` (at most ``requests`` records) of the window, as TraceRecords."""
    rows = [
        dataclasses.replace(row, row=row.row + WINDOW_FIRST_ROW - 1)
        for row in read_azure_csv(csv_path)
    ]
    rows = select_rows(rows, window_seconds=seconds, limit=requests)
    return list(iter_records(rows, service=_SERVICE, seed=seed))


@dataclass
class DriveStats:
    """What the client saw while driving the window through the sidecar."""

    total: int
    sent: int = 0
    done: int = 0
    ok: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    models: Counter[str] = field(default_factory=Counter)
    formats: Counter[str] = field(default_factory=Counter)
    """Requests answered, by the SDK's wire format (``openai``, ``anthropic``)."""
    first_sent: float | None = None
    last_sent: float | None = None

    @property
    def span_s(self) -> float:
        """Seconds from the first send to the last."""
        if self.first_sent is None or self.last_sent is None:
            return 0.0
        return self.last_sent - self.first_sent

    def latency_ms(self, q: float) -> float | None:
        """The ``q`` quantile (0-1) of the latencies seen through the sidecar."""
        if not self.latencies_ms:
            return None
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _request(record: TraceRecord) -> dict[str, Any]:
    """Keyword arguments of ``chat.completions.create`` for an imported record."""
    body = json.loads(record.request.body_bytes())
    headers = {"x-tenant": record.request.headers.get("x-tenant", "")}
    headers[SIZE_HEADER] = record.slices.get("size", "")
    return {
        "model": body["model"],
        "messages": body["messages"],
        "max_tokens": body["max_tokens"],
        "metadata": body.get("metadata"),
        "extra_headers": {k: v for k, v in headers.items() if v},
        # Streamed, as chat and code-completion UIs ask: TTFT, TPOT and inter-token gaps are
        # then measured on every arm, and the replay re-sends the captured (streaming) body.
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def _anthropic_request(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The chat request ``kwargs`` as keyword arguments of ``messages.stream``."""
    system = [m["content"] for m in kwargs["messages"] if m["role"] == "system"]
    turns = [
        {"role": m["role"], "content": m["content"]}
        for m in kwargs["messages"]
        if m["role"] in ("user", "assistant")
    ]
    request: dict[str, Any] = {
        "model": kwargs["model"],
        "messages": turns,
        "max_tokens": kwargs["max_tokens"],
        "extra_headers": kwargs["extra_headers"],
    }
    if system:
        request["system"] = "\n".join(system)
    if kwargs.get("metadata"):  # the demo's intent slice reads $.metadata.intent
        request["extra_body"] = {"metadata": kwargs["metadata"]}
    return request


async def drive(
    records: list[TraceRecord],
    base_url: str,
    *,
    speed: float = 1.0,
    timeout_s: float = 60.0,
    on_progress: Callable[[DriveStats], None] | None = None,
) -> DriveStats:
    """Send every record through ``base_url`` (the sidecar) with ``openai.AsyncOpenAI``, and
    every :data:`ANTHROPIC_EVERY`-th with ``anthropic.AsyncAnthropic`` to ``/v1/messages``.

    Open loop: a slow answer never delays a later send. Failed calls are counted by kind
    (``http_429``, ``timeout``, ``connect`` ...), not retried and not raised.
    """
    import anthropic
    import openai

    stats = DriveStats(total=len(records))
    if not records:
        return stats
    requests = [_request(record) for record in records]
    loop = asyncio.get_running_loop()
    start = loop.time() + _START_DELAY_S
    t0 = records[0].captured_at

    async def ask_openai(client: openai.AsyncOpenAI, kwargs: dict[str, Any]) -> str:
        model = ""
        async with await client.chat.completions.create(**kwargs) as stream:
            async for chunk in stream:
                model = chunk.model or model
        return model

    async def ask_anthropic(client: anthropic.AsyncAnthropic, kwargs: dict[str, Any]) -> str:
        async with client.messages.stream(**kwargs) as stream:
            async for _ in stream:
                pass
            return (await stream.get_final_message()).model

    async def one(index: int, record: TraceRecord, kwargs: dict[str, Any]) -> None:
        due = start + (record.captured_at - t0) / 1e9 / speed
        await asyncio.sleep(max(0.0, due - loop.time()))
        began = time.perf_counter()
        stats.first_sent = stats.first_sent or began
        stats.last_sent = began
        stats.sent += 1
        wire = "anthropic" if index % ANTHROPIC_EVERY == ANTHROPIC_EVERY - 1 else "openai"
        try:
            if wire == "anthropic":
                model = await ask_anthropic(claude, _anthropic_request(kwargs))
            else:
                model = await ask_openai(client, kwargs)
        except (openai.APIStatusError, anthropic.APIStatusError) as exc:
            stats.errors[f"http_{exc.status_code}"] += 1
        except (openai.APITimeoutError, anthropic.APITimeoutError):
            stats.errors["timeout"] += 1
        except (openai.APIConnectionError, anthropic.APIConnectionError):
            stats.errors["connect"] += 1
        else:
            stats.ok += 1
            stats.models[model] += 1
            stats.formats[wire] += 1
            stats.latencies_ms.append((time.perf_counter() - began) * 1000)
        finally:
            stats.done += 1
            if on_progress is not None:
                on_progress(stats)

    async with (
        openai.AsyncOpenAI(
            base_url=base_url + "/v1", api_key=_API_KEY, max_retries=0, timeout=timeout_s
        ) as client,
        anthropic.AsyncAnthropic(
            base_url=base_url, api_key=_API_KEY, max_retries=0, timeout=timeout_s
        ) as claude,
        asyncio.TaskGroup() as group,
    ):
        for index, (record, kwargs) in enumerate(zip(records, requests, strict=True)):
            group.create_task(one(index, record, kwargs))
    return stats
