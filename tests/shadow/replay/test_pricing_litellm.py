"""Pricing as LiteLLM's file prices: cache writes, tiers above a prompt size, prefixed names.

The fixture ``data/litellm_prices.json`` is in the shape of LiteLLM's
``model_prices_and_context_window.json`` (its per-token prices for these models).
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from shadow.config import ModelPrice, PriceTier, parse_config
from shadow.errors import ConfigError, UsageError
from shadow.replay.pricing import PricingTable, load_pricing

LITELLM = Path(__file__).parent / "data" / "litellm_prices.json"


@pytest.fixture(scope="module")
def litellm() -> PricingTable:
    """The fixture file, loaded."""
    return load_pricing(LITELLM)


def test_gemini_25_pro_above_200k_is_priced_at_the_tier(litellm: PricingTable) -> None:
    """250k prompt tokens: every token at the >200k prices, not 49% low at the base ones."""
    tier = (250_000 * 2.50 + 2_000 * 15.00) / 1e6
    base = (250_000 * 1.25 + 2_000 * 10.00) / 1e6
    cost = litellm.cost("gemini-2.5-pro", 250_000, 2_000)
    assert cost == pytest.approx(tier, rel=1e-12)
    assert 1 - base / tier == pytest.approx(0.49, abs=0.01)  # the "priced 49% low"


def test_the_tier_starts_above_its_threshold(litellm: PricingTable) -> None:
    """Exactly 200,000 prompt tokens is still the base price (LiteLLM: prompt > threshold)."""
    assert litellm.cost("gemini-2.5-pro", 200_000, 0) == pytest.approx(0.25, rel=1e-12)
    assert litellm.cost("gemini-2.5-pro", 200_001, 0) == pytest.approx(
        200_001 * 2.5 / 1e6, rel=1e-12
    )


def test_cached_tokens_above_the_tier_use_the_tier_cache_price(litellm: PricingTable) -> None:
    """300k prompt, 100k of them cached: 200k × 2.50 + 100k × 0.25 + output at 15."""
    expected = (200_000 * 2.50 + 100_000 * 0.25 + 1_000 * 15.0) / 1e6
    assert litellm.cost("gemini-2.5-pro", 300_000, 1_000, cached_tokens=100_000) == pytest.approx(
        expected, rel=1e-12
    )


def test_cache_writes_are_priced_at_the_cache_creation_price(litellm: PricingTable) -> None:
    """Anthropic's cache writes: 3.75 per million below 200k, 7.50 above, reads 0.30 / 0.60."""
    below = litellm.cost(
        "claude-sonnet-4-20250514", 10_000, 500, cached_tokens=2_000, cache_write_tokens=6_000
    )
    assert below == pytest.approx(
        (2_000 * 3.0 + 2_000 * 0.30 + 6_000 * 3.75 + 500 * 15.0) / 1e6, rel=1e-12
    )
    above = litellm.cost(
        "claude-sonnet-4-20250514", 250_000, 500, cached_tokens=50_000, cache_write_tokens=100_000
    )
    assert above == pytest.approx(
        (100_000 * 6.0 + 50_000 * 0.60 + 100_000 * 7.50 + 500 * 22.5) / 1e6, rel=1e-12
    )


def test_the_file_is_read_into_tiers_and_cache_prices(litellm: PricingTable) -> None:
    """Each LiteLLM key lands in its field; service-tier variants (…_priority) are not read."""
    assert litellm.prices["claude-sonnet-4-20250514"] == ModelPrice(
        input=3.0,
        output=15.0,
        cached_input=0.3,
        cache_write_input=3.75,
        tiers=(
            PriceTier(
                above_tokens=200_000,
                input=6.0,
                output=22.5,
                cached_input=0.6,
                cache_write_input=7.5,
            ),
        ),
    )
    assert litellm.prices["gemini-1.5-pro"].tiers == (
        PriceTier(above_tokens=128_000, input=2.5, output=10.0),
    )
    assert litellm.prices["gpt-4o"] == ModelPrice(input=2.5, output=10.0, cached_input=1.25)
    assert "256-x-256/dall-e-2" not in litellm.prices


@pytest.mark.parametrize(
    ("asked", "per_million_input"),
    [
        ("gemini-2.5-pro", 1.25),
        ("gemini/gemini-2.5-pro", 1.25),  # prefixed ask, unprefixed entry
        ("vertex_ai/gemini-2.5-pro", 1.25),
        ("gemini-2.5-flash", 0.30),  # unprefixed ask, only a prefixed entry
        ("models/gemini-2.5-flash", 0.30),
        ("openai/gpt-4o-2024-08-06", 2.5),  # prefixed and dated, base priced
        ("anthropic/claude-sonnet-4-20250514", 3.0),
        ("claude-3-5-haiku@20241022", 1.0),  # Vertex's @date, only vertex_ai/ priced
    ],
)
def test_dated_and_provider_prefixed_names(
    litellm: PricingTable, asked: str, per_million_input: float
) -> None:
    """Names as providers and gateways report them find LiteLLM's entries."""
    assert litellm.cost(asked, 100_000, 0) == pytest.approx(per_million_input / 10, rel=1e-12)


def test_prefixed_entries_that_disagree_leave_the_base_name_unpriced(
    litellm: PricingTable,
) -> None:
    """bedrock/ and mistral/ price mistral-large differently: which one is unknown, so none."""
    assert litellm.cost("mistral-large", 1_000, 0) is None
    assert "mistral-large" in litellm.unknown_models
    assert litellm.cost("bedrock/mistral-large", 1_000_000, 0) == pytest.approx(4.0)


def test_unpriced_lists_the_models_without_a_price(litellm: PricingTable) -> None:
    """PricingTable.unpriced names each model with no price, sorted."""
    assert litellm.unpriced(["gpt-4o", "gpt-9", "gpt-9", "acme/x"]) == ["acme/x", "gpt-9"]


def test_toml_tiers_and_cache_writes(tmp_path: Path) -> None:
    """shadow.toml's [pricing] and a TOML price file take cache_write_input and tiers."""
    text = (
        '[pricing."big"]\ninput = 1.0\noutput = 4.0\ncache_write_input = 1.25\n'
        '[[pricing."big".tiers]]\nabove_tokens = 500_000\ninput = 3.0\n'
        '[[pricing."big".tiers]]\nabove_tokens = 100_000\ninput = 2.0\noutput = 8.0\n'
    )
    path = tmp_path / "prices.toml"
    path.write_text(text)
    table = load_pricing(path)
    price = table.prices["big"]
    assert [t.above_tokens for t in price.tiers] == [100_000, 500_000]  # kept in order
    # above 500k: input 3.0, output the model's own 4.0 (the tier gives none)
    assert table.cost("big", 600_000, 1_000) == pytest.approx((600_000 * 3 + 1_000 * 4) / 1e6)
    # above 100k: the 100k tier; its cache writes fall back to the model's 1.25
    assert table.cost("big", 200_000, 1_000, cache_write_tokens=50_000) == pytest.approx(
        (150_000 * 2 + 50_000 * 1.25 + 1_000 * 8) / 1e6
    )
    config = parse_config(tomllib.loads(text))
    assert config.pricing["big"] == price


def test_cache_write_tokens_are_capped_by_the_uncached_prompt() -> None:
    """Cache writes are part of the prompt: never more than the prompt tokens not cached."""
    table = PricingTable({"m": ModelPrice(input=1.0, output=0.0, cache_write_input=2.0)})
    assert table.cost("m", 100, 0, cached_tokens=60, cache_write_tokens=500) == pytest.approx(
        (60 * 1.0 + 40 * 2.0) / 1e6
    )
    with pytest.raises(ValueError, match="cache_write_tokens has value -1"):
        table.cost("m", 1, 0, cache_write_tokens=-1)


@pytest.mark.parametrize(
    ("toml", "problem"),
    [
        ("[[pricing.m.tiers]]\nabove_tokens = 0\ninput = 1\n", "pricing.m.tiers[0].above_tokens"),
        ("[[pricing.m.tiers]]\ninput = 1\n", "pricing.m.tiers[0].above_tokens is required"),
        ("[[pricing.m.tiers]]\nabove_tokens = 5\n", "pricing.m.tiers[0].input is required"),
        (
            "[[pricing.m.tiers]]\nabove_tokens = 5\ninput = 1\n"
            "[[pricing.m.tiers]]\nabove_tokens = 5\ninput = 2\n",
            "pricing.m.tiers has value [5, 5]; each above_tokens may appear once",
        ),
        ("cache_write_input = -1\n", "pricing.m.cache_write_input has value -1"),
        ("cache_write_input = inf\n", "pricing.m.cache_write_input has value inf"),
    ],
)
def test_bad_tier_keys_are_config_errors(toml: str, problem: str) -> None:
    """Tier and cache-write keys are checked like every other key, one line each."""
    text = "[pricing.m]\ninput = 1\noutput = 1\n" + toml
    with pytest.raises(ConfigError) as caught:
        parse_config(tomllib.loads(text))
    assert problem in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_litellm_tier_price_that_is_not_a_number_names_its_key(tmp_path: Path) -> None:
    """A bad tier price in a LiteLLM file is a one-line usage error naming the key."""
    path = tmp_path / "p.json"
    path.write_text(
        '{"m": {"input_cost_per_token": 1e-6, "output_cost_per_token": 1e-6,'
        ' "input_cost_per_token_above_200k_tokens": 2e-6,'
        ' "output_cost_per_token_above_200k_tokens": "x"}}'
    )
    with pytest.raises(UsageError, match=r"m\.output_cost_per_token_above_200k_tokens has value"):
        load_pricing(path)
