"""``shadow.toml``: frozen, keyword-only dataclasses built once at the CLI edge.

Every section is optional; a missing key takes the default documented in
``examples/shadow.toml``. Values are checked when the dataclass is built, and a bad one raises
:class:`~shadow.errors.ConfigError` naming the key, the value and the fix::

    replay.speed has value -3; it must be > 0 (in shadow.toml)

Unknown keys are errors too (a typo must not silently fall back to a default).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from shadow.config_checks import Invalid as _Invalid
from shadow.config_checks import fraction as _fraction
from shadow.config_checks import positive as _positive
from shadow.config_checks import regexes as _regexes
from shadow.config_checks import require as _require
from shadow.errors import ConfigError
from shadow.wire.credentials import CREDENTIAL_HEADERS, pass_header_problem
from shadow.wire.routes import DEFAULT_ALLOW, RouteAllowList, deprecated_paths, route_problem

__all__ = [
    "AnalysisConfig",
    "ArmConfig",
    "CaptureConfig",
    "Config",
    "GateRule",
    "KafkaConfig",
    "ModelPrice",
    "PriceTier",
    "RedactionConfig",
    "ReplayConfig",
    "SafetyConfig",
    "SamplingConfig",
    "SliceRule",
    "ValidatorsConfig",
    "load_config",
    "override",
    "parse_config",
    "parse_price",
]

DEFAULT_TOPIC = "shadow.traces"
_warned: set[tuple[str, ...]] = set()


@dataclass(frozen=True, kw_only=True)
class SamplingConfig:
    """Which exchanges the sidecar tees: a rate, optionally consistent on a header's value."""

    rate: float = 1.0
    key_header: str = ""
    """When set, hash this header's value so a user's or session's requests are all in or out."""

    def __post_init__(self) -> None:
        _fraction(self, "rate")


@dataclass(frozen=True, kw_only=True)
class CaptureConfig:
    """The capture sidecar (``shadow capture``)."""

    upstream: str = ""
    listen: str = "127.0.0.1:8080"
    service: str = ""
    body_cap_bytes: int = 1 << 20
    queue_size: int = 10_000
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 300.0
    admin_prefix: str = "/shadow"
    upstream_ca_file: str = ""
    """CA bundle to verify an https upstream with (default: the system's trust store)."""
    spool_dir: str = ".shadow-spool"
    spool_max_bytes: int = 1 << 30
    shutdown_grace_s: float = 10.0
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    request_features: bool = True
    """Add the request features (turns, prompt_size, tools, tool_calls, stream, format) to
    every record's slices (shadow/wire/features.py); the [[slices]] rules win on a name."""
    worker_priority: Literal["idle", "normal"] = "idle"
    """The record worker's CPU scheduling: ``idle`` (Linux SCHED_IDLE: it takes only CPU time
    nothing else wants, so it never delays requests or the app beside it; when it cannot keep
    up, records are shed and counted) or ``normal``."""
    worker_cpus: str = "auto"
    """Where the record worker runs: ``auto`` (when the serving process is pinned to some of
    the CPUs, on the others; else anywhere), ``inherit`` (where the serving process may run),
    or a list of CPU numbers such as ``"1,3"``."""

    def __post_init__(self) -> None:
        _positive(self, "body_cap_bytes", "queue_size", "connect_timeout_s", "read_timeout_s")
        _require(
            self.worker_cpus in ("auto", "inherit")
            or all(part.strip().isdigit() for part in self.worker_cpus.split(",")),
            "worker_cpus",
            self.worker_cpus,
            'use "auto", "inherit" or CPU numbers such as "1,3"',
        )
        _positive(self, "spool_max_bytes", "shutdown_grace_s")
        if self.upstream:
            _require(
                self.upstream.startswith(("http://", "https://")),
                "upstream",
                self.upstream,
                "it must be an http:// or https:// URL",
            )
        host, sep, port = self.listen.rpartition(":")
        _require(bool(sep and host and port.isdigit()), "listen", self.listen, "use HOST:PORT")
        _require(
            self.admin_prefix.startswith("/") and len(self.admin_prefix) > 1,
            "admin_prefix",
            self.admin_prefix,
            "use a path such as '/shadow'",
        )


@dataclass(frozen=True, kw_only=True)
class KafkaConfig:
    """Kafka producer/consumer settings shared by capture, replay and mirror."""

    bootstrap: str = "127.0.0.1:9092"
    topic: str = DEFAULT_TOPIC
    acks: Literal["all", "1", "0"] = "all"
    compression: Literal["none", "gzip", "lz4", "zstd"] = "zstd"
    linger_ms: int = 5
    idempotence: bool = False
    """Off by default: the embedded broker (Tansu 0.6) does not support InitProducerId."""
    key: str = "trace_id"
    """``trace_id``, or ``header:NAME`` to key by a session header and keep sessions ordered."""

    def __post_init__(self) -> None:
        _require(bool(self.bootstrap), "bootstrap", self.bootstrap, "use HOST:PORT[,HOST:PORT]")
        _require(bool(self.topic), "topic", self.topic, "name a topic")
        _require(self.linger_ms >= 0, "linger_ms", self.linger_ms, "it must be >= 0")
        _require(
            self.key == "trace_id" or (self.key.startswith("header:") and len(self.key) > 7),
            "key",
            self.key,
            "use 'trace_id' or 'header:NAME'",
        )


@dataclass(frozen=True, kw_only=True)
class ArmConfig:
    """How one arm (baseline or candidate) is called during replay."""

    url: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    api_key_env: str = ""
    """Name of the environment variable holding this arm's key, sent in the ``auth`` style.

    Captured credentials are never replayed."""
    auth: Literal["auto", "bearer", "x-api-key", "x-goog-api-key", "api-key"] = "auto"
    """How the key is sent: ``auto`` by the request's API (:data:`shadow.wire.routes.API_AUTH`)."""
    body_overrides: Mapping[str, Any] = field(default_factory=dict)
    """JSON keys set on every request body, e.g. ``{ model = "small-v2" }``."""
    format: Literal["auto", "openai", "anthropic", "gemini"] = "auto"
    """The API the arm speaks; another than the capture's translates (shadow.wire.translate)."""
    timeout_s: float = 120.0

    def __post_init__(self) -> None:
        if self.url:
            _require(
                self.url.startswith(("http://", "https://")),
                "url",
                self.url,
                "it must be an http:// or https:// URL",
            )
        _positive(self, "timeout_s")
        if self.format in ("anthropic", "gemini"):
            fix = f'a {self.format} arm names its model: body_overrides = {{ model = "..." }}'
            _require(isinstance(self.body_overrides.get("model"), str), "format", self.format, fix)
        for name in self.headers:
            _require(
                name.lower() not in CREDENTIAL_HEADERS,
                f"headers.{name}",
                "<redacted>",
                "put credentials in an environment variable and name it in api_key_env",
            )


@dataclass(frozen=True, kw_only=True)
class ReplayConfig:
    """The replayer (``shadow replay``) and live mirror (``shadow mirror``)."""

    speed: float = 1.0
    max_in_flight: int = 10_000
    repeat_baseline: bool = False
    retries: int = 0
    allow: tuple[str, ...] = DEFAULT_ALLOW
    """The routes replayed, ``METHOD /path`` with ``{placeholder}`` segments, matched on the
    normalised path (:mod:`shadow.wire.routes`); others are skipped and counted by reason."""
    allowed_paths: tuple[str, ...] = ()
    """Deprecated alias of ``allow``: ``POST`` to each of these exact paths (no longer a prefix)."""
    pass_headers: tuple[str, ...] = ()
    """Captured headers sent on to the arms as captured (named, non-secret ones only)."""
    batch_rows: int = 1_000

    def __post_init__(self) -> None:
        _positive(self, "speed", "max_in_flight", "batch_rows")
        _require(self.retries >= 0, "retries", self.retries, "it must be >= 0")
        for path in self.allowed_paths:
            _require(path.startswith("/"), "allowed_paths", path, "each path must start with '/'")
        _require(bool(self.allow), "allow", [], "name at least one route")
        if self.allowed_paths:
            fix = "it is the deprecated alias of replay.allow; set only replay.allow"
            _require(self.allow == DEFAULT_ALLOW, "allowed_paths", list(self.allowed_paths), fix)
            if self.allowed_paths not in _warned:  # once: override() rebuilds the section
                _warned.add(self.allowed_paths)
                logging.getLogger("shadow.config").warning(deprecated_paths(self.allowed_paths))
        checks = [("allow", p, route_problem(p)) for p in self.allow]
        checks += [("allowed_paths", p, route_problem(f"POST {p}")) for p in self.allowed_paths]
        checks += [("pass_headers", n, pass_header_problem(n)) for n in self.pass_headers]
        for key, value, problem in checks:
            _require(problem is None, key, value, problem or "")

    def routes(self) -> RouteAllowList:
        """The allow-list in force: ``allow``, or ``POST`` to each of ``allowed_paths``."""
        if self.allowed_paths:
            return RouteAllowList(f"POST {path}" for path in self.allowed_paths)
        return RouteAllowList(self.allow)


@dataclass(frozen=True, kw_only=True)
class SafetyConfig:
    """Rails that stop a replay from hurting a target or a budget."""

    max_cost_usd: float | None = None
    breaker_error_rate: float = 0.5
    breaker_min_requests: int = 20
    breaker_cooldown_s: float = 5.0

    def __post_init__(self) -> None:
        if self.max_cost_usd is not None:
            _positive(self, "max_cost_usd")
        _fraction(self, "breaker_error_rate")
        _positive(self, "breaker_min_requests", "breaker_cooldown_s")


def _prices(obj: object, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if value is not None:
            _require(math.isfinite(value) and value >= 0, name, value, "a price must be >= 0")


@dataclass(frozen=True, kw_only=True)
class PriceTier:
    """Prices (USD per million tokens) for a request whose prompt is above ``above_tokens``.

    As LiteLLM applies its ``*_above_200k_tokens`` prices: the whole request (every prompt,
    cached, cache-write and completion token) is billed at the tier, and a price the tier does
    not give is the model's own.
    """

    above_tokens: int
    input: float
    output: float | None = None
    cached_input: float | None = None
    cache_write_input: float | None = None

    def __post_init__(self) -> None:
        _require(self.above_tokens > 0, "above_tokens", self.above_tokens, "it must be > 0")
        _prices(self, "input", "output", "cached_input", "cache_write_input")


@dataclass(frozen=True, kw_only=True)
class ModelPrice:
    """USD per million tokens for one model (``[pricing."MODEL"]``).

    ``cached_input``: prompt tokens read from the provider's prompt cache (default: ``input``);
    ``cache_write_input``: prompt tokens written to it (default: ``input``); ``tiers``: the
    prices above a prompt size (:class:`PriceTier`), each threshold once.
    """

    input: float
    output: float
    cached_input: float | None = None
    cache_write_input: float | None = None
    tiers: tuple[PriceTier, ...] = ()

    def __post_init__(self) -> None:
        _prices(self, "input", "output", "cached_input", "cache_write_input")
        thresholds = [tier.above_tokens for tier in self.tiers]
        _require(
            len(set(thresholds)) == len(thresholds),
            "tiers",
            thresholds,
            "each above_tokens may appear once",
        )
        if thresholds != sorted(thresholds):  # kept in order: the lookup takes the highest
            object.__setattr__(
                self, "tiers", tuple(sorted(self.tiers, key=lambda t: t.above_tokens))
            )


@dataclass(frozen=True, kw_only=True)
class SliceRule:
    """One slice label: taken from a request header or a JSON path into the request body."""

    name: str
    header: str = ""
    json_path: str = ""
    default: str = ""

    def __post_init__(self) -> None:
        _require(bool(self.name), "name", self.name, "every slice rule needs a name")
        _require(
            bool(self.header) != bool(self.json_path),
            "header",
            self.header or self.json_path,
            f"slice {self.name!r} needs exactly one of header or json_path",
        )
        if self.json_path:
            _require(
                re.fullmatch(r"\$(\.[A-Za-z0-9_-]+)+", self.json_path) is not None,
                "json_path",
                self.json_path,
                "use a dotted path such as '$.metadata.intent'",
            )


@dataclass(frozen=True, kw_only=True)
class RedactionConfig:
    """What the sidecar removes before a record leaves the process."""

    headers: tuple[str, ...] = ()
    """Extra header names to redact beyond Authorization, Cookie, Set-Cookie, X-Api-Key, api-key."""
    json_paths: tuple[str, ...] = ()
    scrub_emails: bool = True
    scrub_cards: bool = True
    scrub_tokens: bool = True
    """Credentials by shape (provider keys, tokens, webhook URLs) and by name in bodies."""
    scrub_personal: bool = True
    """Phone numbers, IBANs and US social security numbers in bodies."""
    patterns: tuple[str, ...] = ()
    """Extra regular expressions to scrub from bodies."""
    replacement: str = "[REDACTED]"

    def __post_init__(self) -> None:
        _regexes("patterns", self.patterns)


@dataclass(frozen=True, kw_only=True)
class ValidatorsConfig:
    """What makes a response successful beyond 2xx and a parseable body."""

    non_empty: bool = True
    json_schema: str = ""
    """Path to a JSON Schema file that the output text must satisfy (for JSON-mode pipelines)."""
    refusal_patterns: tuple[str, ...] = ()
    max_chars: int | None = None

    def __post_init__(self) -> None:
        _regexes("refusal_patterns", self.refusal_patterns)
        if self.max_chars is not None:
            _positive(self, "max_chars")


@dataclass(frozen=True, kw_only=True)
class AnalysisConfig:
    """What ``shadow analyze`` (and ``gate``, ``report``) judge against."""

    slo_ttft_ms: float | None = None
    """Goodput SLO: time to first token (the whole latency for a non-streamed response)."""
    slo_tpot_ms: float | None = None
    """Goodput SLO: time per output token, (latency − ttft) / (completion_tokens − 1)."""
    slo_latency_ms: float | None = None
    """Goodput SLO: end-to-end latency."""
    min_samples: int = 30
    """Slices with fewer attempts on either arm are reported as too small, not judged."""
    flag_abs: float = 0.05
    """A slice's excess divergence is flagged only when it is at least this much ..."""
    flag_rel: float = 0.5
    """... and at least this fraction of the slice's noise floor (as Diffy separates noise)."""
    pin_models: Mapping[str, str] = field(default_factory=dict)
    """Arm -> the model id its responses must report; any other id raises an alarm."""
    embedder: str = "auto"
    """Semantic divergence: "auto", "lexical", "minilm" or an OpenAI-compatible /v1 URL."""

    def __post_init__(self) -> None:
        for name in ("slo_ttft_ms", "slo_tpot_ms", "slo_latency_ms"):
            if getattr(self, name) is not None:
                _positive(self, name)
        _positive(self, "min_samples")
        _require(self.flag_abs >= 0, "flag_abs", self.flag_abs, "it must be >= 0")
        _require(self.flag_rel >= 0, "flag_rel", self.flag_rel, "it must be >= 0")
        for arm in self.pin_models:
            _require(
                arm in ("baseline", "candidate", "baseline_repeat", "production"),
                f"pin_models.{arm}",
                arm,
                "pin models of the arms baseline, candidate, baseline_repeat or production",
            )


@dataclass(frozen=True, kw_only=True)
class GateRule:
    """One ``[[gate]]`` rule of ``shadow gate`` (the README's analyzer section: how it judges)."""

    metric: str
    max_increase_pct: float | None = None
    max_decrease_pct: float | None = None
    max: float | None = None
    min: float | None = None
    by: tuple[str, ...] = ()
    min_samples: int | None = None
    """Fewest samples per arm for a slice to be judged; None: 30, or 150 for a p99 figure
    (:func:`analysis.verdicts.min_samples`)."""

    def __post_init__(self) -> None:
        bounds = [self.max_increase_pct, self.max_decrease_pct, self.max, self.min]
        _require(
            sum(b is not None for b in bounds) == 1,
            "metric",
            self.metric,
            "give exactly one of max_increase_pct, max_decrease_pct, max, min",
        )
        if self.min_samples is not None:
            _positive(self, "min_samples")


@dataclass(frozen=True, kw_only=True)
class Config:
    """Everything ``shadow.toml`` can set."""

    capture: CaptureConfig = field(default_factory=CaptureConfig)
    kafka: KafkaConfig = field(default_factory=KafkaConfig)
    replay: ReplayConfig = field(default_factory=ReplayConfig)
    arms: Mapping[str, ArmConfig] = field(default_factory=dict)
    safety: SafetyConfig = field(default_factory=SafetyConfig)
    pricing: Mapping[str, ModelPrice] = field(default_factory=dict)
    slices: tuple[SliceRule, ...] = ()
    redaction: RedactionConfig = field(default_factory=RedactionConfig)
    validators: ValidatorsConfig = field(default_factory=ValidatorsConfig)
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)
    gate: tuple[GateRule, ...] = ()

    def __post_init__(self) -> None:
        for name in self.arms:
            _require(
                name in ("baseline", "candidate"),
                f"arms.{name}",
                name,
                "arms are 'baseline' and 'candidate'",
            )


def load_config(path: str | Path | None) -> Config:
    """Load ``shadow.toml`` from ``path``; ``None`` gives the defaults."""
    if path is None:
        return Config()
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config {path} is not UTF-8 text") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config {path} is not valid TOML: {exc}") from None
    return parse_config(data, source=str(path))


def parse_config(data: Mapping[str, Any], *, source: str = "config") -> Config:
    """Build a :class:`Config` from already-parsed TOML data."""
    return _build(Config, data, prefix="", source=source)


def parse_price(data: object, *, key: str, source: str) -> ModelPrice:
    """One ``[pricing."MODEL"]`` table as a :class:`ModelPrice`, checked as shadow.toml is.

    ``key`` names the table in error messages (``pricing."gpt-4o"``); ``source`` the file.
    """
    return _build(ModelPrice, data, prefix=f"{key}.", source=source)


_T = typing.TypeVar("_T")


def _build(cls: type[_T], data: object, *, prefix: str, source: str) -> _T:
    where = prefix.rstrip(".") or "the top level"
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where} must be a table, got {data!r} (in {source})")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"{prefix}{unknown[0]} is not a known key; known keys here: "
            f"{', '.join(sorted(fields))} (in {source})"
        )
    kwargs = {
        name: _convert(hints[name], value, key=f"{prefix}{name}", source=source)
        for name, value in data.items()
    }
    try:
        return cls(**kwargs)
    except _Invalid as bad:
        # Show the value as written (``-3``), not as converted (``-3.0``), when the key is plain.
        written = data.get(bad.key, bad.value)
        shown = written if written == bad.value else bad.value
        raise ConfigError(
            f"{prefix}{bad.key} has value {shown!r}; {bad.fix} (in {source})"
        ) from None
    except TypeError as exc:  # a required key is missing
        missing = re.search(r"argument: '(\w+)'", str(exc))
        name = missing.group(1) if missing else "a required key"
        raise ConfigError(f"{prefix}{name} is required in {where} (in {source})") from None


def _convert(tp: Any, value: object, *, key: str, source: str) -> Any:
    """Check ``value`` against the annotation ``tp`` and build nested dataclasses."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)

    def bad(expected: str) -> ConfigError:
        return ConfigError(f"{key} has value {value!r}; it must be {expected} (in {source})")

    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _build(tp, value, prefix=f"{key}.", source=source)
    if origin in (types.UnionType, typing.Union):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _convert(inner, value, key=key, source=source)
    if origin is Literal:
        text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
        if text not in args:
            raise bad("one of " + ", ".join(repr(a) for a in args))
        return text
    if origin is tuple:
        if not isinstance(value, list):
            raise bad("a list")
        return tuple(
            _convert(args[0], item, key=f"{key}[{i}]", source=source)
            for i, item in enumerate(value)
        )
    if origin in (Mapping, dict) or tp is Mapping:
        if not isinstance(value, Mapping):
            raise bad("a table")
        inner = args[1] if args else Any
        return {k: _convert(inner, v, key=f"{key}.{k}", source=source) for k, v in value.items()}
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise bad("true or false")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad("an integer")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise bad("a number")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise bad("a string")
        return value
    raise TypeError(f"config annotation {tp!r} at {key} is not supported")  # pragma: no cover


def override(section: _T, name: str, **changes: Any) -> _T:
    """A copy of a config section with ``changes`` (e.g. CLI flags), validated like a file.

    ``name`` is the section's key path used in error messages, e.g. ``capture``.
    """
    changes = {k: v for k, v in changes.items() if v is not None}
    if not changes:
        return section
    try:
        return dataclasses.replace(section, **changes)  # type: ignore[type-var]
    except _Invalid as bad:
        raise ConfigError(f"{name}.{bad.key} has value {bad.value!r}; {bad.fix}") from None
