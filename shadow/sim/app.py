"""The simulated model server, as a plain ASGI application: one generator, every wire format.

Routes (:data:`ROUTES`): OpenAI ``POST /v1/chat/completions``, ``/v1/completions`` (and their
Azure OpenAI ``/openai/deployments/{d}/...`` forms), ``/v1/responses`` and ``/v1/embeddings``;
Anthropic ``POST /v1/messages``; Gemini ``POST /v1beta/models/{model}:generateContent`` and
``:streamGenerateContent`` (also under ``/v1/models/``); ``GET /v1/models``, ``GET /health``.
Each format parses its request into what it asks and encodes the one reply
(:mod:`shadow.sim.exchange`); models, latency, queueing, faults and answers are the server's,
the same in every format. Embeddings are instant (:mod:`shadow.sim.embeddings`).

Usage rule: ``prompt_tokens`` (``input_tokens``, ``promptTokenCount``) counts the prompt text
under :mod:`shadow.wire.tokens` (whitespace-separated runs over the system prompt and every
turn's text), output tokens the words of the answer (or the runs of a tool call's JSON
arguments), each being one token; streaming sends one token per event. Cache reads and writes
follow :mod:`shadow.sim.cache` (OpenAI formats report ``cached_tokens`` 0).

Randomness is reproducible: answer text depends on (prompt, ``--seed``, model); everything drawn
per call (temperature variation, injected faults) comes from a generator seeded by
(``--seed``, the call's arrival number), or by the request's own ``seed`` when it sends one.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import re
import time
from dataclasses import dataclass
from typing import Final

import msgspec

from shadow.sim.anthropic import AnthropicFormat
from shadow.sim.cache import PromptCache
from shadow.sim.chat import ChatFormat
from shadow.sim.embeddings import embeddings_body
from shadow.sim.exchange import BadRequest, ErrorKind, Exchange, Format, Reply
from shadow.sim.gemini import GeminiFormat
from shadow.sim.generate import answer, prompt_digest
from shadow.sim.http import (
    JSON,
    Receive,
    Scope,
    Send,
    hang,
    lifespan,
    read_body,
    respond,
    send_body,
)
from shadow.sim.profiles import PROFILES, ModelSpec, choose_model, is_hard
from shadow.sim.responses import ResponsesFormat
from shadow.sim.tools import call_tool
from shadow.wire.tokens import count_tokens

__all__ = ["ROUTES", "FaultConfig", "MockLLM"]

ROUTES: Final = (
    "POST /v1/chat/completions",
    "POST /v1/completions",
    "POST /v1/embeddings",
    "POST /v1/responses",
    "POST /v1/messages",
    "POST /openai/deployments/{deployment}/chat/completions",
    "POST /openai/deployments/{deployment}/completions",
    "POST /openai/deployments/{deployment}/embeddings",
    "POST /v1beta/models/{model}:generateContent",
    "POST /v1beta/models/{model}:streamGenerateContent",
    "GET /v1/models",
    "GET /health",
)
"""What ``shadow mock-llm`` serves (Gemini's routes also under ``/v1/models/``)."""

_AZURE = re.compile(r"/openai/deployments/[^/]+(/chat/completions|/completions|/embeddings)")
_GEMINI = re.compile(r"/v1(?:beta)?/models/[^/:]+:(generateContent|streamGenerateContent)")
_ERRORS: tuple[tuple[ErrorKind, str, float], ...] = (
    # (kind, message, share of injected errors)
    ("rate_limit", "Rate limit reached (injected by shadow mock-llm).", 0.4),
    ("server", "The server had an error (injected by shadow mock-llm).", 0.3),
    ("overloaded", "The engine is overloaded (injected by shadow mock-llm).", 0.3),
)


@dataclass(frozen=True, kw_only=True)
class FaultConfig:
    """Injected faults, each a per-call probability drawn in arrival order."""

    error_rate: float = 0.0
    slow_rate: float = 0.0
    slow_factor: float = 10.0
    hang_rate: float = 0.0

    def __post_init__(self) -> None:
        for name in ("error_rate", "slow_rate", "hang_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} is {value}; it must be between 0 and 1")
        if self.error_rate + self.slow_rate + self.hang_rate > 1.0:
            raise ValueError("error_rate + slow_rate + hang_rate must not exceed 1")
        if self.slow_factor < 1:
            raise ValueError(f"slow_factor is {self.slow_factor}; it must be >= 1")


class _Slots:
    """A model's concurrent slots: a FIFO queue in front of ``n`` workers."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.busy = 0
        self._sem = asyncio.Semaphore(n)

    async def __aenter__(self) -> _Slots:
        await self._sem.acquire()
        self.busy += 1
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.busy -= 1
        self._sem.release()


class MockLLM:
    """ASGI app simulating one ``shadow mock-llm`` profile (see the module docstring)."""

    def __init__(
        self,
        profile: str = "large",
        *,
        seed: int = 0,
        time_scale: float = 1.0,
        faults: FaultConfig | None = None,
        slots: int | None = None,
    ) -> None:
        if profile not in PROFILES:
            raise ValueError(f"profile {profile!r} is unknown; choose one of {', '.join(PROFILES)}")
        if time_scale < 0:
            raise ValueError(f"time_scale is {time_scale}; it must be >= 0")
        self.profile = profile
        self.seed = seed
        self.time_scale = time_scale
        self.faults = faults or FaultConfig()
        self.calls = 0
        self.slots_override = slots
        self.cache = PromptCache()
        self._slots: dict[str, _Slots] = {}
        fingerprint = (
            "fp_" + hashlib.blake2b(f"{profile}:{seed}".encode(), digest_size=5).hexdigest()
        )
        self._fingerprint = fingerprint
        self._chat = ChatFormat(chat=True, fingerprint=fingerprint)
        self._completions = ChatFormat(chat=False, fingerprint=fingerprint)
        self._models_body = msgspec.json.encode(
            {
                "object": "list",
                "data": [
                    {"id": m.model_id, "object": "model", "created": 0, "owned_by": "shadow"}
                    for m in PROFILES[profile]
                ],
            }
        )

    # -- ASGI ---------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        if scope["type"] != "http":  # pragma: no cover - websockets are not served
            return
        method, path = scope["method"], scope["path"]
        if path == "/v1/models" and method == "GET":
            await respond(send, 200, self._models_body)
            return
        if path == "/health" and method in ("GET", "HEAD"):
            await respond(send, 200, b'{"status":"ok"}')
            return
        fmt = self._format(path)
        if fmt is None:
            await _error(send, self._chat, "not_found", f"no route {method} {path}")
        elif method != "POST":
            errors = self._chat if isinstance(fmt, str) else fmt
            await _error(send, errors, "method", f"{method} not allowed on {path}")
        elif isinstance(fmt, str):  # embeddings
            try:
                body = embeddings_body(await read_body(receive))
            except BadRequest as exc:
                await _error(send, self._chat, exc.kind, str(exc), exc.param)
                return
            await respond(send, 200, body)
        else:
            await self._generate(scope, receive, send, fmt)

    def _format(self, path: str) -> Format | str | None:
        """The format serving ``path``; ``"embeddings"`` for embeddings; None: no route."""
        azure = _AZURE.fullmatch(path)
        tail = azure.group(1) if azure else path.removeprefix("/v1")
        if tail == "/chat/completions":
            return self._chat
        if tail == "/completions":
            return self._completions
        if tail == "/embeddings":
            return "embeddings"
        if path == "/v1/responses":
            return ResponsesFormat()
        if path == "/v1/messages":
            return AnthropicFormat()
        gemini = _GEMINI.fullmatch(path)
        if gemini:
            return GeminiFormat(stream=gemini.group(1) == "streamGenerateContent")
        return None

    # -- generation ---------------------------------------------------------------------------

    async def _generate(self, scope: Scope, receive: Receive, send: Send, fmt: Format) -> None:
        self.calls += 1
        call_index = self.calls
        raw = await read_body(receive)
        try:
            exchange = fmt.parse(raw, scope)
        except BadRequest as exc:
            await _error(send, fmt, exc.kind, str(exc), exc.param)
            return
        ask = exchange.ask
        call_rng = random.Random(
            ask.seed if ask.seed is not None else self.seed * 1_000_003 + call_index
        )
        prompt_tokens = count_tokens(ask.prompt)
        model = choose_model(self.profile, prompt_tokens, ask.intent)
        hard = is_hard(prompt_tokens, ask.intent)
        digest = prompt_digest(ask.prompt)
        result = answer(
            digest,
            seed=self.seed,
            model_id=model.model_id,
            drift=model.drift_hard if hard else model.drift_easy,
            length_factor=model.length_factor_hard if hard else 1.0,
            max_tokens=ask.max_tokens,
            temperature=1.0 if ask.temperature is None else ask.temperature,
            call_rng=call_rng,
        )
        fault = call_rng.random()
        f = self.faults
        slow = 1.0
        if fault < f.error_rate:
            await self._injected_error(send, fmt, model, call_rng)
            return
        if fault < f.error_rate + f.hang_rate:
            await hang(receive)
            return
        if fault < f.error_rate + f.hang_rate + f.slow_rate:
            slow = f.slow_factor
        tool = None
        if not ask.after_tool_result or ask.tool_choice.startswith("tool:"):
            tool = call_tool(
                ask.tools,
                ask.tool_choice,
                digest=digest,
                seed=self.seed,
                model_id=model.model_id,
                rate=model.tool_call_rate,
                words=result.words,
            )
        cache_read, cache_write = self.cache.use(ask.cache_prefix)
        slots = self._slots.get(model.model_id)
        if slots is None:
            slots = self._slots[model.model_id] = _Slots(self.slots_override or model.slots)
        async with slots:
            reply = Reply(
                number=call_index,
                created=int(time.time()),
                model=model.model_id,
                fingerprint=self._fingerprint,
                prompt_tokens=prompt_tokens,
                cache_read=cache_read,
                cache_write=cache_write,
                answer=result,
                tool=tool,
            )
            if ask.stream:
                head = exchange.head(reply)
                if head:  # the stream opens before the prefill (Anthropic, Responses)
                    await send({"type": "http.response.start", "status": 200,
                                "headers": exchange.stream_headers})  # fmt: skip
                    await send_body(send, head)
            prefill_ms = model.prefill_ms_per_token * (prompt_tokens - cache_read)
            await self._sleep(model.ttft_base_ms + prefill_ms, slow)
            if ask.stream:
                await self._stream(send, exchange, reply, model, slots, slow, opened=bool(head))
            else:
                decode_ms = self._decode_ms(model, slots) * max(0, reply.output_tokens - 1)
                await self._sleep(decode_ms, slow)
                await respond(send, 200, exchange.body(reply))

    async def _stream(
        self,
        send: Send,
        exchange: Exchange,
        reply: Reply,
        model: ModelSpec,
        slots: _Slots,
        slow: float,
        *,
        opened: bool,
    ) -> None:
        if not opened:
            await send({"type": "http.response.start", "status": 200,
                        "headers": exchange.stream_headers})  # fmt: skip
        for i, piece in enumerate(reply.pieces):
            if i:
                await self._sleep(self._decode_ms(model, slots), slow)
            await send_body(send, exchange.piece(reply, i, piece))
        await send_body(send, exchange.tail(reply), more=False)

    def _decode_ms(self, model: ModelSpec, slots: _Slots) -> float:
        return model.decode_ms_per_token * (1.0 + model.batch_slowdown * slots.busy / slots.n)

    async def _sleep(self, ms: float, slow: float) -> None:
        if self.time_scale > 0 and ms > 0:
            await asyncio.sleep(ms * slow * self.time_scale / 1000.0)

    async def _injected_error(
        self, send: Send, fmt: Format, model: ModelSpec, rng: random.Random
    ) -> None:
        pick = rng.random()
        for kind, message, share in _ERRORS:  # noqa: B007 (used after the loop)
            if pick < share or kind == _ERRORS[-1][0]:
                break
            pick -= share
        await self._sleep(model.ttft_base_ms, 1.0)
        await _error(send, fmt, kind, message, retry=kind == "rate_limit")


async def _error(
    send: Send,
    fmt: Format,
    kind: ErrorKind,
    message: str,
    param: str | None = None,
    *,
    retry: bool = False,
) -> None:
    status, body = fmt.error(kind, message, param)
    headers = [*JSON, (b"retry-after", b"1")] if retry else JSON
    await respond(send, status, body, headers)
