"""What an attempt cost: per-million token prices by model, from shadow.toml or a price file.

``cost = (uncached prompt × input + cached × cached_input + completion × output) / 1e6`` USD,
where the cached tokens are the part of the prompt tokens the provider served from its prompt
cache (billed at ``cached_input`` when the model has one, else at ``input``). As
docs/architecture.md, "Metric definitions" says, failed and retried attempts keep their cost.

A response's model name is matched to a price in this order, the first hit winning:

1. exactly (``gpt-4o-2024-08-06``);
2. ignoring case (``GPT-4o-2024-08-06``);
3. without a provider prefix, everything up to the last ``/`` (``openai/gpt-4o-2024-08-06``),
   exactly, then ignoring case;
4. without a date suffix, ``-YYYY-MM-DD`` or ``-YYYYMMDD`` (``gpt-4o-2024-08-06`` → ``gpt-4o``,
   ``claude-3-5-sonnet-20241022`` → ``claude-3-5-sonnet``), with and without the prefix,
   exactly, then ignoring case.

A model with no price costs ``None`` (unknown, not free) and is remembered in
:attr:`PricingTable.unknown_models` so the report can say which models were not priced.

Price files (``shadow analyze --pricing FILE``) are either TOML shaped like shadow.toml's
``[pricing.MODEL]`` tables (a whole shadow.toml works: only its ``[pricing]`` is read) or
top-level ``["MODEL"]`` tables, or LiteLLM's ``model_prices_and_context_window.json``.
"""

from __future__ import annotations

import json
import math
import re
import tomllib
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType
from typing import Any

from shadow.config import Config, ModelPrice
from shadow.errors import UsageError

__all__ = ["DEFAULT_PRICES", "PricingTable", "load_pricing", "pricing_for"]

DEFAULT_PRICES: Mapping[str, ModelPrice] = MappingProxyType(
    {
        "shadow-large": ModelPrice(input=2.50, output=10.00, cached_input=1.25),
        "shadow-small": ModelPrice(input=0.15, output=0.60, cached_input=0.075),
    }
)
"""USD per million tokens for the models of ``shadow mock-llm`` (as in examples/shadow.toml)."""

_DATE_SUFFIX = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|\d{8})$")
_PER_MILLION = Decimal(1_000_000)
_TOML_KEYS = frozenset({"input", "output", "cached_input"})


class PricingTable:
    """Per-million token prices by model name, and the cost of an attempt."""

    __slots__ = ("_exact", "_folded", "_resolved", "_unknown")

    def __init__(self, prices: Mapping[str, ModelPrice]) -> None:
        self._exact: dict[str, ModelPrice] = dict(prices)
        self._folded: dict[str, ModelPrice] = {}
        for name, price in self._exact.items():
            self._folded.setdefault(name.casefold(), price)
        self._resolved: dict[str, ModelPrice | None] = {}
        self._unknown: set[str] = set()

    @classmethod
    def from_config(cls, config: Config) -> PricingTable:
        """The ``[pricing.MODEL]`` tables of a loaded shadow.toml (no defaults added)."""
        return cls(config.pricing)

    @property
    def prices(self) -> Mapping[str, ModelPrice]:
        """The table as given, by model name."""
        return MappingProxyType(self._exact)

    @property
    def unknown_models(self) -> frozenset[str]:
        """Models that :meth:`cost` or :meth:`price` were asked about and found no price for."""
        return frozenset(self._unknown)

    def price(self, model: str) -> ModelPrice | None:
        """The price of ``model`` by the lookup order in the module docstring, or None."""
        try:
            found = self._resolved[model]
        except KeyError:
            found = self._resolved[model] = self._lookup(model)
        if found is None:
            self._unknown.add(model)
        return found

    def cost(
        self,
        model: str | None,
        prompt_tokens: int | None,
        completion_tokens: int | None,
        cached_tokens: int | None = 0,
    ) -> float | None:
        """USD for one attempt, or None when the model is not given or has no price.

        A count that is None (not reported) counts as 0. Cached tokens are part of the prompt
        tokens; more cached than prompt tokens are capped at the prompt tokens.
        """
        if model is None:
            return None
        price = self.price(model)
        if price is None:
            return None
        prompt = _count("prompt_tokens", prompt_tokens)
        completion = _count("completion_tokens", completion_tokens)
        cached = min(_count("cached_tokens", cached_tokens), prompt)
        cached_price = price.input if price.cached_input is None else price.cached_input
        return (
            (prompt - cached) * price.input + cached * cached_price + completion * price.output
        ) / 1_000_000

    def _lookup(self, model: str) -> ModelPrice | None:
        unprefixed = model.rpartition("/")[2]
        names = [model, unprefixed, _DATE_SUFFIX.sub("", model), _DATE_SUFFIX.sub("", unprefixed)]
        for name in dict.fromkeys(names):  # in order, without repeats
            found = self._exact.get(name)
            if found is None:
                found = self._folded.get(name.casefold())
            if found is not None:
                return found
        return None

    def __len__(self) -> int:
        return len(self._exact)

    def __repr__(self) -> str:
        return f"<PricingTable {len(self._exact)} models>"


def _count(name: str, value: int | None) -> int:
    if value is None:
        return 0
    if value < 0:
        raise ValueError(f"{name} has value {value}; token counts must be >= 0")
    return value


def load_pricing(path: str | Path) -> PricingTable:
    """Read a price file: TOML (``[pricing.MODEL]`` or ``["MODEL"]`` tables) or LiteLLM JSON.

    The format is taken from the suffix (``.toml``, ``.json``), else from the first character
    (``{`` is JSON). Problems raise :class:`~shadow.errors.UsageError` naming the file.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read pricing file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise UsageError(f"pricing file {path} is not UTF-8 text") from None
    suffix = path.suffix.lower()
    is_json = suffix == ".json" or (suffix != ".toml" and text.lstrip().startswith("{"))
    prices = _parse_litellm(text, path) if is_json else _parse_toml(text, path)
    if not prices:
        raise UsageError(f"pricing file {path} prices no models")
    return PricingTable(prices)


def _parse_toml(text: str, path: Path) -> dict[str, ModelPrice]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"pricing file {path} is not valid TOML: {exc}") from None
    prefix = ""
    if "pricing" in data:  # shadow.toml's shape, or a whole shadow.toml: read [pricing] only
        data, prefix = data["pricing"], "pricing."
        if not isinstance(data, dict):
            raise UsageError(f"pricing file {path}: pricing must be a table of [pricing.MODEL]")
    return {
        model: _toml_price(f"{prefix}{_key(model)}", table, path) for model, table in data.items()
    }


def _toml_price(key: str, table: object, path: Path) -> ModelPrice:
    if not isinstance(table, dict):
        raise UsageError(
            f"pricing file {path}: {key} has value {table!r}; it must be a table "
            "with input, output and optionally cached_input"
        )
    unknown = sorted(set(table) - _TOML_KEYS)
    if unknown:
        raise UsageError(
            f"pricing file {path}: {key}.{unknown[0]} is not a known key; "
            "known keys: cached_input, input, output"
        )
    for required in ("input", "output"):
        if required not in table:
            raise UsageError(f"pricing file {path}: {key}.{required} is required")
    values = {name: _usd(f"{key}.{name}", value, path) for name, value in table.items()}
    return ModelPrice(**values)


def _key(model: str) -> str:
    """A model name as a TOML key path segment: bare when it can be, quoted otherwise."""
    return model if re.fullmatch(r"[A-Za-z0-9_-]+", model) else json.dumps(model)


def _usd(key: str, value: object, path: Path) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise UsageError(f"pricing file {path}: {key} has value {value!r}; it must be a number")
    number = float(value)
    if not (math.isfinite(number) and number >= 0):
        raise UsageError(
            f"pricing file {path}: {key} has value {value}; a price must be a number >= 0"
        )
    return number


def _parse_litellm(text: str, path: Path) -> dict[str, ModelPrice]:
    """LiteLLM's per-token prices, as USD per million tokens.

    Entries without per-token prices (image, audio and rerank models, the ``sample_spec``
    template) are skipped; an embedding model without an output price gets 0.
    """
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
        per_token = {
            "input": spec.get("input_cost_per_token"),
            "output": spec.get("output_cost_per_token"),
            "cached_input": spec.get("cache_read_input_token_cost"),
        }
        if per_token["output"] is None and spec.get("mode") == "embedding":
            per_token["output"] = 0
        if per_token["input"] is None or per_token["output"] is None:
            continue
        prices[model] = ModelPrice(
            **{
                name: _per_million(f"{model}.{_LITELLM_KEYS[name]}", value, path)
                for name, value in per_token.items()
                if value is not None
            }
        )
    return prices


_LITELLM_KEYS: Mapping[str, str] = MappingProxyType(
    {
        "input": "input_cost_per_token",
        "output": "output_cost_per_token",
        "cached_input": "cache_read_input_token_cost",
    }
)


def _per_million(key: str, per_token: object, path: Path) -> float:
    """A per-token price as USD per million tokens, computed in decimal as the file writes it."""
    _usd(key, per_token, path)
    return float(Decimal(str(per_token)) * _PER_MILLION)


def pricing_for(config: Config, path: str | Path | None = None) -> PricingTable:
    """The pricing a run uses: ``--pricing FILE``, else ``[pricing]`` from the config, else
    :data:`DEFAULT_PRICES` (the simulated models' prices)."""
    if path:
        return load_pricing(path)
    table = PricingTable.from_config(config)
    return table if len(table) else PricingTable(DEFAULT_PRICES)
