"""``shadow mock-llm``: a simulated model server speaking OpenAI, Anthropic and Gemini.

The realistic stand-in for a model pipeline in tests, demos and benchmarks: deterministic
answers, a latency model with queueing, streaming, and injected faults. See
:mod:`shadow.sim.app` for the API surface and usage rule, :mod:`shadow.sim.profiles`
for the latency model and routing rule, :mod:`shadow.sim.generate` for the text.
"""

from __future__ import annotations

from shadow.sim.app import FaultConfig, MockLLM
from shadow.sim.profiles import HARD_INTENTS, PROFILES, ModelSpec, choose_model
from shadow.sim.server import MockLLMServer

__all__ = [
    "HARD_INTENTS",
    "PROFILES",
    "FaultConfig",
    "MockLLM",
    "MockLLMServer",
    "ModelSpec",
    "choose_model",
]
