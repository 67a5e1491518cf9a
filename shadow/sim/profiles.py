"""Simulated models and the profiles that serve them.

A *model* has a latency model and a text behaviour; a *profile* is what one ``shadow mock-llm``
process serves: one model (``large``, ``small``) or a routing rule over two (``routed``).

Latency model of one request, before ``--time-scale``:

- wait for a free slot (``slots`` concurrent requests per model; the rest queue, FIFO);
- TTFT = ``ttft_base_ms`` + ``prefill_ms_per_token`` × prompt tokens;
- each further output token takes ``decode_ms_per_token`` × (1 + ``batch_slowdown`` × busy
  slots / slots), so time per output token grows with load as in a batching server.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "HARD_INTENTS",
    "LARGE",
    "MODELS",
    "PROFILES",
    "ROUTED_CONTEXT_THRESHOLD",
    "SMALL",
    "ModelSpec",
    "choose_model",
]

HARD_INTENTS = frozenset({"refactor", "debug"})
"""Intents the ``routed`` profile sends to the large model whatever the prompt length."""

ROUTED_CONTEXT_THRESHOLD = 1024
"""Prompts with more tokens than this go to the large model under the ``routed`` profile."""


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """One simulated model: its id, latency model and how its answers relate to the reference."""

    model_id: str
    ttft_base_ms: float
    prefill_ms_per_token: float
    decode_ms_per_token: float
    slots: int
    batch_slowdown: float
    drift_easy: float
    """Probability that a sentence differs from the reference answer on short, easy prompts."""
    drift_hard: float
    """The same on hard intents or long prompts: where a smaller model drifts."""
    length_factor_hard: float
    """Answer length relative to the reference on hard or long prompts."""
    tool_call_rate: float = 0.5
    """Probability of calling a tool when the request defines tools and lets the model choose
    (:mod:`shadow.sim.tools`)."""


LARGE = ModelSpec(
    model_id="shadow-large",
    ttft_base_ms=180.0,
    prefill_ms_per_token=0.12,
    decode_ms_per_token=22.0,
    slots=16,
    batch_slowdown=0.5,
    drift_easy=0.0,
    drift_hard=0.0,
    length_factor_hard=1.0,
    tool_call_rate=0.6,
)

SMALL = ModelSpec(
    model_id="shadow-small",
    ttft_base_ms=60.0,
    prefill_ms_per_token=0.03,
    decode_ms_per_token=7.0,
    slots=32,
    batch_slowdown=0.3,
    drift_easy=0.08,
    drift_hard=0.6,
    length_factor_hard=0.7,
    tool_call_rate=0.4,
)

MODELS: Mapping[str, ModelSpec] = {spec.model_id: spec for spec in (LARGE, SMALL)}

PROFILES: Mapping[str, tuple[ModelSpec, ...]] = {
    "large": (LARGE,),
    "small": (SMALL,),
    "routed": (SMALL, LARGE),
}
"""The models each profile serves (``GET /v1/models`` lists them)."""


def is_hard(prompt_tokens: int, intent: str | None) -> bool:
    """Whether a request is hard or long: where a small model drifts and routing picks large."""
    return prompt_tokens > ROUTED_CONTEXT_THRESHOLD or (intent or "") in HARD_INTENTS


def choose_model(profile: str, prompt_tokens: int, intent: str | None) -> ModelSpec:
    """The model that serves a request under ``profile``.

    ``routed`` is the classic cost migration: prompts over 1,024 tokens or with a hard intent
    (refactor, debug) go to the large model, everything else to the small one.
    """
    if profile == "routed":
        return LARGE if is_hard(prompt_tokens, intent) else SMALL
    return PROFILES[profile][0]
