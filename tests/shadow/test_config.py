"""Tests for shadow.config: defaults, the documented example, and messages that say the fix."""

from __future__ import annotations

import dataclasses
import itertools
import re
import tomllib
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from shadow.config import (
    ArmConfig,
    Config,
    GateRule,
    ModelPrice,
    SliceRule,
    load_config,
    parse_config,
)
from shadow.errors import ConfigError, UsageError
from shadow.wire.routes import DEFAULT_ALLOW

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "shadow.toml"


def _load(tmp_path: Path, text: str) -> Config:
    path = tmp_path / "shadow.toml"
    path.write_text(text, encoding="utf-8")
    return load_config(path)


def _error(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, text)
    return str(info.value)


# --- loading ---------------------------------------------------------------------------------


def test_no_file_gives_the_defaults() -> None:
    """load_config(None) returns the defaults without touching the disk."""
    config = load_config(None)
    assert config == Config()
    assert config.replay.speed == 1.0
    assert config.replay.allow == DEFAULT_ALLOW
    assert config.replay.routes().patterns == DEFAULT_ALLOW
    assert config.kafka.topic == "shadow.traces"
    assert config.kafka.idempotence is False
    assert config.capture.sampling.rate == 1.0
    assert config.safety.max_cost_usd is None
    assert config.arms == {}
    assert config.gate == ()


def test_empty_file_gives_the_defaults(tmp_path: Path) -> None:
    """An empty shadow.toml is valid and equals the defaults."""
    assert _load(tmp_path, "") == Config()


def test_example_config_loads_with_the_values_it_shows() -> None:
    """examples/shadow.toml loads and its values are the ones written in it."""
    config = load_config(EXAMPLE)
    assert config.replay.speed == 1.0
    assert config.kafka.topic == "shadow.traces"
    assert config.kafka.compression == "zstd"
    assert config.capture.body_cap_bytes == 1 << 20
    assert config.arms["baseline"].url == "http://127.0.0.1:8001"
    assert config.arms["candidate"].url == "http://127.0.0.1:8002"
    assert config.arms["candidate"].body_overrides == {"model": "shadow-small"}
    assert config.pricing["shadow-large"] == ModelPrice(input=2.5, output=10.0, cached_input=1.25)
    assert config.pricing["shadow-small"] == ModelPrice(input=0.15, output=0.6, cached_input=0.075)
    assert config.slices == (
        SliceRule(name="tenant", header="x-tenant", default="unknown"),
        SliceRule(name="intent", json_path="$.metadata.intent", default="other"),
        SliceRule(name="model", json_path="$.model"),
    )
    assert config.gate == (
        GateRule(metric="latency_p99_ms", max_increase_pct=10, by=("intent",), min_samples=100),
        GateRule(metric="excess_divergence", max=0.05),
        GateRule(metric="cost_per_success_usd", max_increase_pct=0),
        GateRule(metric="ok_rate", max_decrease_pct=1),
    )
    assert config.safety.max_cost_usd is None


def test_values_are_converted_to_the_declared_types(tmp_path: Path) -> None:
    """Integers for float keys become floats, lists become tuples, and acks may be a number."""
    config = _load(
        tmp_path,
        '[replay]\nspeed = 2\nallowed_paths = ["/v1/chat/completions"]\n[kafka]\nacks = 1\n',
    )
    assert config.replay.speed == 2.0
    assert isinstance(config.replay.speed, float)
    assert config.replay.allowed_paths == ("/v1/chat/completions",)
    assert config.kafka.acks == "1"


def test_parse_config_names_its_source() -> None:
    """parse_config puts the given source in its messages."""
    with pytest.raises(ConfigError, match=r"\(in inline\)$"):
        parse_config({"replay": {"speed": 0}}, source="inline")


# --- bad values: key, value and fix ------------------------------------------------------------


def test_negative_speed_names_key_value_and_fix(tmp_path: Path) -> None:
    """A negative replay.speed is refused with the key, the value as written and the bound."""
    message = _error(tmp_path, "[replay]\nspeed = -3\n")
    assert "replay.speed has value -3;" in message
    assert "> 0" in message
    assert "shadow.toml" in message


def test_config_error_is_a_usage_error(tmp_path: Path) -> None:
    """ConfigError is a UsageError, so the CLI exits 2 on it."""
    with pytest.raises(UsageError) as info:
        _load(tmp_path, "[replay]\nspeed = 0\n")
    assert info.value.exit_code == 2


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[replay]\nspeed = "fast"\n', "replay.speed has value 'fast'; it must be a number"),
        ("[replay]\nretries = 1.5\n", "replay.retries has value 1.5; it must be an integer"),
        ("[replay]\nrepeat_baseline = 1\n", "replay.repeat_baseline has value 1; it must be true"),
        ('[replay]\nallowed_paths = "/v1"\n', "replay.allowed_paths has value '/v1'; it must be a"),
        ("[kafka]\ntopic = 7\n", "kafka.topic has value 7; it must be a string"),
        ('[kafka]\nacks = "some"\n', "kafka.acks has value 'some'; it must be one of 'all'"),
        ("replay = 3\n", "replay must be a table, got 3"),
        ("[capture.sampling]\nrate = true\n", "capture.sampling.rate has value True"),
    ],
)
def test_wrong_types_name_key_value_and_expected_type(
    tmp_path: Path, text: str, expected: str
) -> None:
    """A value of the wrong type names the dotted key, the value and the type it must have."""
    assert expected in _error(tmp_path, text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[capture.sampling]\nrate = 1.5\n", "capture.sampling.rate has value 1.5"),
        ('[capture]\nupstream = "ftp://x"\n', "capture.upstream has value 'ftp://x'"),
        ('[capture]\nlisten = "8080"\n', "use HOST:PORT"),
        ("[kafka]\nlinger_ms = -1\n", "kafka.linger_ms has value -1; it must be >= 0"),
        ('[kafka]\nkey = "session"\n', "use 'trace_id' or 'header:NAME'"),
        ('[replay]\nallowed_paths = ["v1"]\n', "replay.allowed_paths has value 'v1'"),
        ("[safety]\nmax_cost_usd = 0\n", "safety.max_cost_usd has value 0; it must be > 0"),
        ("[pricing.m]\ninput = -1\noutput = 1\n", "pricing.m.input has value -1; a price must"),
        ('[arms.baseline]\nurl = "127.0.0.1:8001"\n', "arms.baseline.url has value"),
        ("[validators]\nmax_chars = 0\n", "validators.max_chars has value 0; it must be > 0"),
    ],
)
def test_out_of_range_values_name_key_value_and_fix(
    tmp_path: Path, text: str, expected: str
) -> None:
    """A value outside its range names the dotted key, the value and the fix."""
    assert expected in _error(tmp_path, text)


def test_unknown_key_is_an_error_not_a_silent_default(tmp_path: Path) -> None:
    """A misspelt key is refused and the message lists the keys that exist there."""
    message = _error(tmp_path, "[replay]\nsped = 2\n")
    assert "replay.sped is not a known key" in message
    assert "speed" in message


def test_unknown_section_is_an_error(tmp_path: Path) -> None:
    """An unknown top-level table is refused."""
    assert "replayer is not a known key" in _error(tmp_path, "[replayer]\nspeed = 2\n")


def test_unknown_nested_key_names_its_full_path(tmp_path: Path) -> None:
    """A misspelt key in a nested table is named with its whole dotted path."""
    message = _error(tmp_path, "[capture.sampling]\nratio = 0.5\n")
    assert "capture.sampling.ratio is not a known key" in message


def test_unknown_arm_name_is_refused(tmp_path: Path) -> None:
    """Arms other than baseline and candidate are refused."""
    message = _error(tmp_path, '[arms.canary]\nurl = "http://127.0.0.1:8003"\n')
    assert "arms.canary" in message
    assert "'baseline' and 'candidate'" in message


@pytest.mark.parametrize("header", ["Authorization", "x-api-key", "Api-Key", "cookie"])
def test_credentials_in_arm_headers_are_refused(tmp_path: Path, header: str) -> None:
    """Credential headers in an arm are refused, and the secret is not echoed back."""
    message = _error(tmp_path, f'[arms.candidate.headers]\n"{header}" = "Bearer sk-secret"\n')
    assert f"arms.candidate.headers.{header}" in message
    assert "api_key_env" in message
    assert "sk-secret" not in message


def test_arm_headers_without_credentials_are_accepted() -> None:
    """Ordinary headers in an arm are kept as given."""
    arm = ArmConfig(url="http://127.0.0.1:8001", headers={"x-route": "b"})
    assert arm.headers == {"x-route": "b"}


@pytest.mark.parametrize("section", ["redaction", "validators"])
def test_invalid_regular_expression_is_refused(tmp_path: Path, section: str) -> None:
    """A pattern that does not compile names its key and says it is not a regular expression."""
    key = "patterns" if section == "redaction" else "refusal_patterns"
    message = _error(tmp_path, f"[{section}]\n{key} = ['ok', '(unclosed']\n")
    assert f"{section}.{key} has value '(unclosed'" in message
    assert "not a valid regular expression" in message


def test_gate_rule_with_two_bounds_is_refused(tmp_path: Path) -> None:
    """A gate rule must give exactly one bound."""
    text = '[[gate]]\nmetric = "ok_rate"\nmax = 1.0\nmin = 0.9\n'
    message = _error(tmp_path, text)
    assert "gate[0]" in message
    assert "exactly one of max_increase_pct, max_decrease_pct, max, min" in message


def test_gate_rule_without_a_bound_is_refused(tmp_path: Path) -> None:
    """A gate rule with no bound at all is refused too."""
    assert "exactly one of" in _error(tmp_path, '[[gate]]\nmetric = "ok_rate"\n')


def test_gate_rule_without_metric_is_refused(tmp_path: Path) -> None:
    """A [[gate]] table without its required metric names the missing key and the rule."""
    text = '[[gate]]\nmetric = "ok_rate"\nmin = 0.9\n\n[[gate]]\nmax = 1\n'
    message = _error(tmp_path, text)
    assert "gate[1].metric is required" in message


def test_pricing_without_output_is_refused(tmp_path: Path) -> None:
    """A pricing table needs both input and output prices."""
    message = _error(tmp_path, "[pricing.shadow-large]\ninput = 2.5\n")
    assert "pricing.shadow-large.output is required" in message


def test_slice_rule_with_header_and_json_path_is_refused(tmp_path: Path) -> None:
    """A slice rule takes its label from exactly one of a header or a JSON path."""
    text = '[[slices]]\nname = "tenant"\nheader = "x-tenant"\njson_path = "$.tenant"\n'
    message = _error(tmp_path, text)
    assert "slices[0]" in message
    assert "exactly one of header or json_path" in message


def test_slice_rule_with_bad_json_path_is_refused(tmp_path: Path) -> None:
    """A slice JSON path must be a dotted path from the root."""
    message = _error(tmp_path, '[[slices]]\nname = "intent"\njson_path = "metadata.intent"\n')
    assert "slices[0].json_path has value 'metadata.intent'" in message


def test_invalid_toml_is_a_config_error(tmp_path: Path) -> None:
    """A file that is not TOML is refused with its path."""
    message = _error(tmp_path, "[replay\nspeed = 1\n")
    assert "is not valid TOML" in message
    assert str(tmp_path / "shadow.toml") in message


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    """A config path that does not exist is refused with its path."""
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match="cannot read config") as info:
        load_config(missing)
    assert str(missing) in str(info.value)


def test_non_utf8_file_is_a_config_error(tmp_path: Path) -> None:
    """A config file that is not UTF-8 text is refused."""
    path = tmp_path / "shadow.toml"
    path.write_bytes(b"[replay]\nspeed = 1 # \xff\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(path)


def test_config_is_frozen() -> None:
    """Config objects cannot be changed after they are built."""
    config = Config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.replay.speed = 2.0  # type: ignore[misc]


# --- the example documents every key -----------------------------------------------------------

_TABLE = re.compile(r"\[\[?\s*([^\[\]]+?)\s*\]\]?")
_COMMENTED_KEY = re.compile(r"#\s*([A-Za-z_][A-Za-z0-9_]*)\s*=")


def _commented_keys(text: str) -> dict[str, set[str]]:
    """Keys shown as commented-out lines (``# key = value``), by the table they sit in."""
    found: dict[str, set[str]] = {}
    table = ""
    for line in text.splitlines():
        stripped = line.strip()
        if header := _TABLE.fullmatch(stripped.split("#", 1)[0].strip()):
            table = header.group(1)
        elif key := _COMMENTED_KEY.match(stripped):
            found.setdefault(table, set()).add(key.group(1))
    return found


def _is_dataclass(tp: object) -> typing.TypeGuard[type[Any]]:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _undocumented(
    cls: type[Any], data: Mapping[str, Any], table: str, commented: dict[str, set[str]]
) -> list[str]:
    """Dotted keys of dataclass ``cls`` that neither ``data`` nor a commented line shows."""
    missing: list[str] = []
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        key = f"{table}.{field.name}" if table else field.name
        tp = hints[field.name]
        origin, args = typing.get_origin(tp), typing.get_args(tp)
        value = data.get(field.name)
        if _is_dataclass(tp):
            missing += _undocumented(tp, value or {}, key, commented)
        elif origin is Mapping and _is_dataclass(args[1]):
            entries: Mapping[str, Any] = value or {"<none>": {}}
            for name, entry in entries.items():
                missing += _undocumented(args[1], entry, f"{key}.{name}", commented)
        elif origin is tuple and _is_dataclass(args[0]) and field.name in commented.get(table, ()):
            continue  # a commented-out inline array of tables, e.g. `# tiers = [{ ... }]`
        elif origin is tuple and _is_dataclass(args[0]):
            # An array of tables documents a key when any of its entries shows it.
            merged = {k: v for entry in value or [] for k, v in entry.items()}
            missing += _undocumented(args[0], merged, key, commented)
        elif field.name not in data and field.name not in commented.get(table, set()):
            missing.append(key)
    return missing


def test_example_documents_every_config_key() -> None:
    """examples/shadow.toml shows every key of every config dataclass, set or commented out."""
    text = EXAMPLE.read_text(encoding="utf-8")
    missing = _undocumented(Config, tomllib.loads(text), "", _commented_keys(text))
    assert missing == []


def test_every_key_in_the_example_has_a_comment_line_above_it() -> None:
    """Each key set in examples/shadow.toml is explained by the comment line just above it."""
    lines = EXAMPLE.read_text(encoding="utf-8").splitlines()
    bare = [
        line
        for above, line in itertools.pairwise(lines)
        if re.match(r"[A-Za-z_\"]", line) and not above.startswith("#")
    ]
    assert bare == []


def test_example_shows_both_arms_and_the_mock_models() -> None:
    """The example configures both arms and prices both mock models."""
    data = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    assert set(data["arms"]) == {"baseline", "candidate"}
    assert set(data["pricing"]) == {"shadow-large", "shadow-small"}


def _commented_out_lines() -> list[str]:
    lines = EXAMPLE.read_text(encoding="utf-8").splitlines()
    return [line for line in lines if _COMMENTED_KEY.match(line.strip())]


@pytest.mark.parametrize("line", _commented_out_lines())
def test_commented_out_keys_in_the_example_are_real_keys(tmp_path: Path, line: str) -> None:
    """Uncommenting a commented-out key of the example gives valid TOML and a known key."""
    text = EXAMPLE.read_text(encoding="utf-8")
    uncommented = text.replace(line, line.strip().removeprefix("#").strip(), 1)
    message = ""
    try:
        _load(tmp_path, uncommented)
    except ConfigError as exc:  # a conflict such as a second gate bound is fine; a typo is not
        message = str(exc)
    assert "not a known key" not in message
    assert "not valid TOML" not in message
