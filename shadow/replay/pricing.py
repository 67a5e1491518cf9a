"""What an attempt cost: per-million token prices by model, from shadow.toml or a price file.

An attempt's prompt tokens are split into uncached input, cached input (read from the
provider's prompt cache) and cache writes (written to it); both cached and cache-write tokens
are part of the prompt tokens, as LiteLLM counts them::

    cost = (uncached × input + cached × cached_input + cache_write × cache_write_input
            + completion × output) / 1e6   USD

``cached_input`` and ``cache_write_input`` default to ``input`` when a model has none. A model
with tiers (LiteLLM's ``*_above_200k_tokens``; ``[[pricing."MODEL".tiers]]``) is billed, when
the prompt tokens are above a tier's ``above_tokens``, entirely at the highest such tier: every
token of the request at the tier's prices, a price the tier does not give being the model's own
(LiteLLM's rule). As docs/architecture.md, "Metric definitions" says, failed and retried
attempts keep their cost.

A response's model name is matched to a price in this order, the first hit winning:

1. exactly (``gpt-4o-2024-08-06``);
2. ignoring case (``GPT-4o-2024-08-06``);
3. without a provider prefix, everything up to the last ``/`` (``openai/gpt-4o-2024-08-06``),
   exactly, then ignoring case;
4. without a date suffix, ``-YYYY-MM-DD``, ``-YYYYMMDD`` or ``@YYYYMMDD``
   (``gpt-4o-2024-08-06`` → ``gpt-4o``, ``claude-3-5-sonnet-20241022`` →
   ``claude-3-5-sonnet``), with and without the prefix, exactly, then ignoring case;
5. each of those names against the table's provider-prefixed names without their prefix
   (``gemini-2.5-pro`` → ``gemini/gemini-2.5-pro``), when every such name has the same price
   (``vertex_ai/m`` and ``bedrock/m`` at different prices leave ``m`` unpriced).

A model with no price costs ``None`` (unknown, never free) and is remembered in
:attr:`PricingTable.unknown_models` so the report can say which models were not priced.

Price files (``--pricing FILE``) are either TOML shaped like shadow.toml's
``[pricing.MODEL]`` tables (a whole shadow.toml works: only its ``[pricing]`` is read) or
top-level ``["MODEL"]`` tables, or LiteLLM's ``model_prices_and_context_window.json``
(:mod:`shadow.replay.litellm`).
"""

from __future__ import annotations

import functools
import json
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from shadow.config import Config, ModelPrice, parse_price
from shadow.errors import UsageError
from shadow.replay.litellm import parse_litellm

__all__ = [
    "DEFAULT_PRICES",
    "PricingTable",
    "Rates",
    "load_pricing",
    "pricing_for",
    "rate_tiers",
]

DEFAULT_PRICES: Mapping[str, ModelPrice] = MappingProxyType(
    {
        "shadow-large": ModelPrice(input=2.50, output=10.00, cached_input=1.25),
        "shadow-small": ModelPrice(input=0.15, output=0.60, cached_input=0.075),
    }
)
"""USD per million tokens for the models of ``shadow mock-llm`` (as in examples/shadow.toml)."""

_DATE_SUFFIX = re.compile(r"(?:-\d{4}-\d{2}-\d{2}|-\d{8}|@\d{8})$")


@dataclass(frozen=True, slots=True)
class Rates:
    """The four per-million prices one request is billed at (its tier resolved)."""

    above_tokens: int
    """The tier's threshold (0: the model's base prices)."""
    input: float
    output: float
    cached_input: float
    cache_write_input: float


@functools.lru_cache(maxsize=4096)
def rate_tiers(price: ModelPrice) -> tuple[Rates, ...]:
    """The base rates and each tier's, lowest threshold first, every default filled in."""
    base = Rates(
        above_tokens=0,
        input=price.input,
        output=price.output,
        cached_input=price.input if price.cached_input is None else price.cached_input,
        cache_write_input=(
            price.input if price.cache_write_input is None else price.cache_write_input
        ),
    )
    rates = [base]
    for tier in price.tiers:
        cached = tier.cached_input if tier.cached_input is not None else price.cached_input
        write = (
            tier.cache_write_input
            if tier.cache_write_input is not None
            else price.cache_write_input
        )
        rates.append(
            Rates(
                above_tokens=tier.above_tokens,
                input=tier.input,
                output=price.output if tier.output is None else tier.output,
                cached_input=tier.input if cached is None else cached,
                cache_write_input=tier.input if write is None else write,
            )
        )
    return tuple(rates)


class PricingTable:
    """Per-million token prices by model name, and the cost of an attempt."""

    __slots__ = ("_exact", "_folded", "_resolved", "_unknown", "_unprefixed")

    def __init__(self, prices: Mapping[str, ModelPrice]) -> None:
        self._exact: dict[str, ModelPrice] = dict(prices)
        self._folded: dict[str, ModelPrice] = {}
        for name, price in self._exact.items():
            self._folded.setdefault(name.casefold(), price)
        by_base: dict[str, list[ModelPrice]] = {}
        for name, price in self._exact.items():
            if "/" in name:
                by_base.setdefault(name.rpartition("/")[2].casefold(), []).append(price)
        # A base name is priced through its prefixed names only when they all agree.
        self._unprefixed: dict[str, ModelPrice] = {
            base: found[0] for base, found in by_base.items() if all(p == found[0] for p in found)
        }
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

    def unpriced(self, models: Iterable[str]) -> list[str]:
        """The names among ``models`` that have no price, sorted, each once."""
        return sorted({model for model in models if self.price(model) is None})

    def cost(
        self,
        model: str | None,
        prompt_tokens: int | None,
        completion_tokens: int | None,
        cached_tokens: int | None = 0,
        cache_write_tokens: int | None = 0,
    ) -> float | None:
        """USD for one attempt, or None when the model is not given or has no price.

        A count that is None (not reported) counts as 0. Cached and cache-write tokens are
        part of the prompt tokens: more cached than prompt tokens are capped at the prompt
        tokens, and cache writes at the prompt tokens left after the cached ones.
        """
        if model is None:
            return None
        price = self.price(model)
        if price is None:
            return None
        prompt = _count("prompt_tokens", prompt_tokens)
        completion = _count("completion_tokens", completion_tokens)
        cached = min(_count("cached_tokens", cached_tokens), prompt)
        written = min(_count("cache_write_tokens", cache_write_tokens), prompt - cached)
        rates = _rates_for(price, prompt)
        return (
            (prompt - cached - written) * rates.input
            + cached * rates.cached_input
            + written * rates.cache_write_input
            + completion * rates.output
        ) / 1_000_000

    def _lookup(self, model: str) -> ModelPrice | None:
        unprefixed = model.rpartition("/")[2]
        names = [model, unprefixed, _DATE_SUFFIX.sub("", model), _DATE_SUFFIX.sub("", unprefixed)]
        names = list(dict.fromkeys(names))  # in order, without repeats
        for name in names:
            found = self._exact.get(name)
            if found is None:
                found = self._folded.get(name.casefold())
            if found is not None:
                return found
        for name in names:
            found = self._unprefixed.get(name.rpartition("/")[2].casefold())
            if found is not None:
                return found
        return None

    def __len__(self) -> int:
        return len(self._exact)

    def __repr__(self) -> str:
        return f"<PricingTable {len(self._exact)} models>"


def _rates_for(price: ModelPrice, prompt_tokens: int) -> Rates:
    """The rates a request of ``prompt_tokens`` is billed at: the highest tier it is above."""
    rates = rate_tiers(price)
    chosen = rates[0]
    for tier in rates[1:]:
        if prompt_tokens > tier.above_tokens:
            chosen = tier
    return chosen


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
    prices = parse_litellm(text, path) if is_json else _parse_toml(text, path)
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
            "with input, output and optionally cached_input, cache_write_input, tiers"
        )
    return parse_price(table, key=key, source=f"pricing file {path}")


def _key(model: str) -> str:
    """A model name as a TOML key path segment: bare when it can be, quoted otherwise."""
    return model if re.fullmatch(r"[A-Za-z0-9_-]+", model) else json.dumps(model)


def pricing_for(config: Config, path: str | Path | None = None) -> PricingTable:
    """The pricing a run uses: ``--pricing FILE``, else ``[pricing]`` from the config, else
    :data:`DEFAULT_PRICES` (the simulated models' prices)."""
    if path:
        return load_pricing(path)
    table = PricingTable.from_config(config)
    return table if len(table) else PricingTable(DEFAULT_PRICES)
