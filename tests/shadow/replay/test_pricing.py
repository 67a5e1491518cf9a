"""shadow.replay.pricing: attempt cost by hand, model-name lookup, price files (TOML, LiteLLM)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shadow.config import ModelPrice, load_config, parse_config
from shadow.errors import UsageError
from shadow.replay.pricing import DEFAULT_PRICES, PricingTable, load_pricing

EXAMPLE_TOML = Path(__file__).resolve().parents[3] / "examples" / "shadow.toml"


@pytest.fixture
def table() -> PricingTable:
    """The mock models' prices."""
    return PricingTable(DEFAULT_PRICES)


def test_cost_by_hand(table: PricingTable) -> None:
    """1,000 prompt and 500 completion tokens of shadow-large: $0.0025 + $0.005."""
    assert table.cost("shadow-large", 1_000, 500) == pytest.approx(0.0075, abs=1e-15)


def test_cached_tokens_are_billed_at_the_cached_price(table: PricingTable) -> None:
    """Of 1,000 prompt tokens, 400 cached: 600 × 2.50 + 400 × 1.25 + 100 × 10.00 per million."""
    expected = (600 * 2.50 + 400 * 1.25 + 100 * 10.00) / 1e6
    assert table.cost("shadow-large", 1_000, 100, cached_tokens=400) == pytest.approx(
        expected, abs=1e-15
    )


def test_cached_tokens_without_a_cached_price_cost_the_input_price() -> None:
    """A model with no cached-input price bills cached prompt tokens as ordinary input."""
    table = PricingTable({"plain": ModelPrice(input=3.0, output=15.0)})
    assert table.cost("plain", 2_000, 0, cached_tokens=1_500) == pytest.approx(0.006, abs=1e-15)


def test_missing_counts_cost_nothing_and_cached_is_capped(table: PricingTable) -> None:
    """Unreported counts are 0, and cached tokens never exceed the prompt tokens."""
    assert table.cost("shadow-small", None, None, None) == 0.0
    assert table.cost("shadow-small", 100, None, cached_tokens=500) == pytest.approx(
        100 * 0.075 / 1e6
    )


def test_negative_counts_are_refused(table: PricingTable) -> None:
    """A negative token count is a bug upstream, not a discount."""
    with pytest.raises(ValueError, match="completion_tokens has value -1"):
        table.cost("shadow-small", 10, -1)


def test_unknown_model_costs_none_and_is_remembered(table: PricingTable) -> None:
    """A model without a price costs None (unknown, not free) and lands in unknown_models."""
    assert table.cost("gpt-9", 1_000, 1_000) is None
    assert table.cost("gpt-9", 1, 1) is None
    assert table.cost(None, 1_000, 1_000) is None
    assert table.cost("shadow-small", 1, 1) is not None
    assert table.unknown_models == {"gpt-9"}


@pytest.mark.parametrize(
    ("asked", "priced_as"),
    [
        ("gpt-4o", "gpt-4o"),
        ("GPT-4o", "gpt-4o"),
        ("openai/gpt-4o", "gpt-4o"),
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("openai/GPT-4o-2024-08-06", "gpt-4o"),
        ("claude-3-5-sonnet-20241022", "claude-3-5-sonnet"),
        ("anthropic/claude-3-5-sonnet-20241022", "claude-3-5-sonnet"),
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini-2024-07-18"),
        ("azure/gpt-4o-mini-2024-07-18", "gpt-4o-mini-2024-07-18"),
    ],
)
def test_lookup_falls_back_to_case_prefix_and_date(asked: str, priced_as: str) -> None:
    """A model is found exactly, then ignoring case, then without provider prefix or date."""
    prices = {
        "gpt-4o": ModelPrice(input=2.5, output=10.0),
        "gpt-4o-mini-2024-07-18": ModelPrice(input=0.15, output=0.6),
        "claude-3-5-sonnet": ModelPrice(input=3.0, output=15.0),
    }
    assert PricingTable(prices).price(asked) is prices[priced_as]


def test_exact_match_wins_over_fallbacks() -> None:
    """A dated or prefixed name with its own price is not priced as its base model."""
    base, dated, routed = (ModelPrice(input=x, output=x) for x in (1.0, 2.0, 3.0))
    table = PricingTable({"gpt-4o": base, "gpt-4o-2024-05-13": dated, "openai/gpt-4o": routed})
    assert table.price("gpt-4o-2024-05-13") is dated
    assert table.price("openai/gpt-4o") is routed
    assert table.price("gpt-4o-2024-08-06") is base


def test_from_config_reads_the_example_pricing() -> None:
    """The pricing tables of examples/shadow.toml are the mock models' default prices."""
    table = PricingTable.from_config(load_config(EXAMPLE_TOML))
    assert dict(table.prices) == dict(DEFAULT_PRICES)


def test_from_config_without_pricing_prices_nothing() -> None:
    """A config with no [pricing] tables gives an empty table: every model is unknown."""
    table = PricingTable.from_config(parse_config({}))
    assert len(table) == 0
    assert table.cost("shadow-large", 1, 1) is None


# ---------------------------------------------------------------------------------------------
# Price files
# ---------------------------------------------------------------------------------------------


def test_load_toml_in_shadow_toml_shape(tmp_path: Path) -> None:
    """[pricing."MODEL"] tables load, quoted names included."""
    path = tmp_path / "prices.toml"
    path.write_text(
        '[pricing."shadow-large"]\ninput = 2.5\noutput = 10\ncached_input = 1.25\n'
        '[pricing."org/model.v2"]\ninput = 1\noutput = 2\n'
    )
    table = load_pricing(path)
    assert table.prices == {
        "shadow-large": ModelPrice(input=2.5, output=10.0, cached_input=1.25),
        "org/model.v2": ModelPrice(input=1.0, output=2.0),
    }


def test_load_toml_with_top_level_tables(tmp_path: Path) -> None:
    """Top-level ["MODEL"] tables load too."""
    path = tmp_path / "prices.toml"
    path.write_text('["shadow-small"]\ninput = 0.15\noutput = 0.60\ncached_input = 0.075\n')
    assert load_pricing(path).prices == {"shadow-small": DEFAULT_PRICES["shadow-small"]}


def test_load_a_whole_shadow_toml_reads_only_its_pricing() -> None:
    """examples/shadow.toml works as a price file: its other sections are not prices."""
    assert dict(load_pricing(EXAMPLE_TOML).prices) == dict(DEFAULT_PRICES)


def test_load_litellm_json(tmp_path: Path) -> None:
    """LiteLLM per-token prices become per-million prices; templates and non-chat are skipped."""
    data = {
        "sample_spec": {
            "input_cost_per_token": 0.0,
            "output_cost_per_token": 0.0,
            "litellm_provider": "one of https://docs.litellm.ai/docs/providers",
            "mode": "one of: chat, embedding, completion, image_generation",
        },
        "gpt-4o": {
            "input_cost_per_token": 2.5e-06,
            "output_cost_per_token": 1e-05,
            "cache_read_input_token_cost": 1.25e-06,
            "litellm_provider": "openai",
            "mode": "chat",
        },
        "claude-3-haiku-20240307": {
            "input_cost_per_token": 2.5e-07,
            "output_cost_per_token": 1.25e-06,
            "mode": "chat",
        },
        "text-embedding-3-small": {"input_cost_per_token": 2e-08, "mode": "embedding"},
        "256-x-256/dall-e-2": {"input_cost_per_pixel": 2.4414e-07, "mode": "image_generation"},
        "1024-x-1024/stability.sd-xl": {"output_cost_per_image": 0.04, "mode": "image_generation"},
    }
    path = tmp_path / "model_prices_and_context_window.json"
    path.write_text(json.dumps(data, indent=4))
    table = load_pricing(path)
    assert table.prices == {
        "gpt-4o": ModelPrice(input=2.5, output=10.0, cached_input=1.25),
        "claude-3-haiku-20240307": ModelPrice(input=0.25, output=1.25),
        "text-embedding-3-small": ModelPrice(input=0.02, output=0.0),
    }
    assert table.cost("openai/gpt-4o-2024-08-06", 1_000_000, 0) == 2.5


LITELLM_STRING_PRICE = '{"m": {"input_cost_per_token": "0.1", "output_cost_per_token": 1e-6}}'
LITELLM_ONLY_TEMPLATE = '{"sample_spec": {"input_cost_per_token": 0, "output_cost_per_token": 0}}'


@pytest.mark.parametrize(
    ("name", "text", "problem"),
    [
        ("p.toml", "input = [", "is not valid TOML"),
        ("p.toml", '["m"]\ninput = 1\n', "m.output is required"),
        ("p.toml", '["m"]\ninput = -1\noutput = 1\n', "m.input has value -1; a price must be"),
        (
            "p.toml",
            '["m"]\ninput = "x"\noutput = 1\n',
            "m.input has value 'x'; it must be a number",
        ),
        ("p.toml", '["m"]\ninput = 1\noutput = 1\ncache = 1\n', "m.cache is not a known key"),
        ("p.toml", '[pricing."a.b"]\ninput = 1\noutput = nan\n', 'pricing."a.b".output has value'),
        ("p.toml", "m = 3\n", "m has value 3; it must be a table"),
        ("p.toml", "", "prices no models"),
        ("p.json", "{not json", "is not valid JSON"),
        ("p.json", "[1, 2]", "expected a JSON object of models"),
        (
            "p.json",
            LITELLM_STRING_PRICE,
            "m.input_cost_per_token has value '0.1'; it must be a number",
        ),
        ("p.json", LITELLM_ONLY_TEMPLATE, "prices no models"),
    ],
)
def test_bad_price_files_are_one_line_usage_errors(
    tmp_path: Path, name: str, text: str, problem: str
) -> None:
    """Every problem with a price file is one line that names the file and the problem."""
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(UsageError) as caught:
        load_pricing(path)
    message = str(caught.value)
    assert str(path) in message
    assert problem in message
    assert "\n" not in message


def test_missing_price_file(tmp_path: Path) -> None:
    """A file that is not there is a usage error naming it."""
    path = tmp_path / "absent.toml"
    with pytest.raises(UsageError, match=r"cannot read pricing file .*absent\.toml"):
        load_pricing(path)


def test_format_is_sniffed_without_a_known_suffix(tmp_path: Path) -> None:
    """A file with another suffix is read as JSON when it starts with '{', else as TOML."""
    json_path = tmp_path / "prices.txt"
    json_path.write_text('{"m": {"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6}}')
    toml_path = tmp_path / "prices.conf"
    toml_path.write_text('["m"]\ninput = 1\noutput = 2\n')
    assert load_pricing(json_path).prices == load_pricing(toml_path).prices
