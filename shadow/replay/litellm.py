"""LiteLLM's ``model_prices_and_context_window.json`` as shadow's per-million token prices.

Read per model: ``input_cost_per_token``, ``output_cost_per_token``,
``cache_read_input_token_cost`` (cached input), ``cache_creation_input_token_cost`` (cache
writes), and every tier ``input_cost_per_token_above_<N>[k]_tokens`` with its
``output_cost_per_token_above_…``, ``cache_read_input_token_cost_above_…`` and
``cache_creation_input_token_cost_above_…`` (a :class:`~shadow.config.PriceTier` above N
prompt tokens). Service-tier variants (``…_priority``, ``…_flex``), per-character, per-image
and per-second prices are not read. Entries without per-token prices (image, audio and rerank
models, the ``sample_spec`` template) are skipped; an embedding model without an output price
gets 0.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

from shadow.config import ModelPrice, PriceTier
from shadow.errors import UsageError

__all__ = ["parse_litellm"]

_PER_MILLION = Decimal(1_000_000)
_TIER_KEY = re.compile(r"input_cost_per_token_above_(\d+)(k?)_tokens")
_BASE_KEYS: Mapping[str, str] = {
    "input": "input_cost_per_token",
    "output": "output_cost_per_token",
    "cached_input": "cache_read_input_token_cost",
    "cache_write_input": "cache_creation_input_token_cost",
}


def parse_litellm(text: str, path: Path) -> dict[str, ModelPrice]:
    """The priced models of a LiteLLM price file's text; problems name ``path``."""
    try:
        # Decimals, so that 2.5e-06 per token is 2.5 per million, not 2.4999999999999996.
        data: Any = json.loads(text, parse_float=Decimal)
    except json.JSONDecodeError as exc:
        raise UsageError(f"pricing file {path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise UsageError(f"pricing file {path}: expected a JSON object of models")
    prices: dict[str, ModelPrice] = {}
    for model, spec in data.items():
        if model == "sample_spec" or not isinstance(spec, dict):
            continue
        values = _prices(model, spec, _BASE_KEYS, path)
        if "output" not in values and spec.get("mode") == "embedding":
            values["output"] = 0.0
        if "input" not in values or "output" not in values:
            continue
        prices[model] = ModelPrice(**values, tiers=_tiers(model, spec, path))
    return prices


def _tiers(model: str, spec: Mapping[str, Any], path: Path) -> tuple[PriceTier, ...]:
    tiers = []
    for key in spec:
        match = _TIER_KEY.fullmatch(key)
        if match is None or spec[key] is None:
            continue
        above = int(match.group(1)) * (1000 if match.group(2) else 1)
        suffix = f"_above_{match.group(1)}{match.group(2)}_tokens"
        keys = {name: litellm + suffix for name, litellm in _BASE_KEYS.items()}
        tiers.append(PriceTier(above_tokens=above, **_prices(model, spec, keys, path)))
    return tuple(tiers)


def _prices(
    model: str, spec: Mapping[str, Any], keys: Mapping[str, str], path: Path
) -> dict[str, float]:
    """Per-million prices of the ``keys`` (shadow name → LiteLLM key) that ``spec`` has."""
    return {
        name: _per_million(f"{model}.{key}", spec[key], path)
        for name, key in keys.items()
        if spec.get(key) is not None
    }


def _per_million(key: str, per_token: object, path: Path) -> float:
    """A per-token price as USD per million tokens, computed in decimal as the file writes it."""
    if isinstance(per_token, bool) or not isinstance(per_token, int | float | Decimal):
        raise UsageError(f"pricing file {path}: {key} has value {per_token!r}; it must be a number")
    number = float(per_token)
    if not (math.isfinite(number) and number >= 0):
        raise UsageError(
            f"pricing file {path}: {key} has value {per_token}; a price must be a number >= 0"
        )
    return float(Decimal(str(per_token)) * _PER_MILLION)
