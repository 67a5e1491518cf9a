"""Slice labels for a captured request: tenant, intent, model, ... from headers and JSON paths.

Each ``[[slices]]`` rule of ``shadow.toml`` (:class:`~shadow.config.SliceRule`) names one label
and where it comes from: a request header, or a dotted JSON path into the request body
(``$.metadata.intent``; a numeric key indexes a list, ``$.messages.0.role``). With no rules
configured, the defaults are::

    tenant  <- header x-tenant
    intent  <- $.metadata.intent
    model   <- $.model

A value is kept when it is a non-empty string, or a number or boolean (converted with
``str()``: ``3``, ``0.5``, ``True``); objects, lists, null and empty strings count as absent.
An absent value takes the rule's ``default``, and an empty default leaves the slice out. Values
are cut to :data:`MAX_VALUE_CHARS` characters, so a label stays a label.

Request features (:mod:`shadow.wire.features`: ``turns``, ``prompt_size``, ``tools``,
``tool_calls``, ``stream``, ``format``) are added to every record by default, after the rules:
a label a rule (or a header) already set is kept, never replaced by a feature.
``capture.request_features = false`` turns them off.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from shadow.config import SliceRule
from shadow.trace.record import Usage
from shadow.wire.features import answer_calls_tools, request_features
from shadow.wire.sse import StreamSummary

__all__ = ["DEFAULT_SLICE_RULES", "MAX_VALUE_CHARS", "SliceExtractor"]

MAX_VALUE_CHARS = 128

DEFAULT_SLICE_RULES: tuple[SliceRule, ...] = (
    SliceRule(name="tenant", header="x-tenant"),
    SliceRule(name="intent", json_path="$.metadata.intent"),
    SliceRule(name="model", json_path="$.model"),
)

_DECODER = msgspec.json.Decoder()


@dataclass(frozen=True, slots=True)
class _Rule:
    name: str
    header: str  # lower-cased; empty for a JSON rule
    keys: tuple[str, ...]  # the JSON path split at dots, without "$"; empty for a header rule
    default: str


class SliceExtractor:
    """Extracts slice labels per request; built once from the configured rules."""

    __slots__ = ("_features", "_needs_body", "_rules")

    def __init__(self, rules: Sequence[SliceRule] = (), *, features: bool = True) -> None:
        self._rules = tuple(
            _Rule(
                name=rule.name,
                header=rule.header.lower(),
                keys=tuple(rule.json_path.split(".")[1:]) if rule.json_path else (),
                default=rule.default[:MAX_VALUE_CHARS],
            )
            for rule in (rules or DEFAULT_SLICE_RULES)
        )
        self._needs_body = any(rule.keys for rule in self._rules)
        self._features = features

    @property
    def features(self) -> bool:
        """Whether :meth:`extract` adds the request features when given the exchange's path."""
        return self._features

    def extract(
        self,
        headers: Mapping[str, str],
        body: bytes,
        *,
        path: str | None = None,
        status: int | None = None,
        response: bytes | None = None,
        stream: StreamSummary | None = None,
        streamed: bool = False,
        usage: Usage | None = None,
    ) -> dict[str, str]:
        """The slice labels of one request, in rule order, then its request features.

        Args:
            headers: the request headers, names lower-cased.
            body: the raw request body; parsed once, and only if a rule reads a JSON path
                or the features are computed.
            path: the request path; without it (or with features off) only the rules apply.
            status: the answer's HTTP status (None: no answer).
            response: the answer's body when it was not streamed.
            stream: the reassembled answer when it was streamed.
            streamed: the answer was an event stream.
            usage: the exchange's usage (its prompt tokens size the prompt).
        """
        with_features = self._features and path is not None
        document: object = None
        if self._needs_body or with_features:
            document = _decode(body)
        slices = self._by_rules(headers, document)
        if with_features and path is not None:
            calls: bool | None = None
            if status is not None and 200 <= status <= 299:
                if stream is not None:
                    calls = bool(stream.tool_calls)
                elif response is not None:
                    calls = answer_calls_tools(_decode(response), path)
            features = request_features(
                path,
                document,
                prompt_tokens=usage.prompt_tokens if usage is not None else None,
                streamed=streamed,
                tool_calls=calls,
            )
            for name, value in features.items():
                slices.setdefault(name, value)
        return slices

    def _by_rules(self, headers: Mapping[str, str], document: object) -> dict[str, str]:
        slices: dict[str, str] = {}
        for rule in self._rules:
            value = _lookup(document, rule.keys) if rule.keys else headers.get(rule.header)
            text = _label(value)
            if text is None:
                text = rule.default
            if text:
                slices[rule.name] = text
        return slices


def _decode(body: bytes) -> object:
    try:
        return _DECODER.decode(body)
    except (ValueError, RecursionError):  # DecodeError, UnicodeDecodeError, deep nesting
        return None


def _lookup(document: object, keys: tuple[str, ...]) -> object:
    node: Any = document
    for key in keys:
        if isinstance(node, dict):
            node = node.get(key)
        elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
            node = node[int(key)]
        else:
            return None
    return node


def _label(value: object) -> str | None:
    if isinstance(value, str):
        return value[:MAX_VALUE_CHARS] if value else None
    if isinstance(value, bool | int | float):
        return str(value)[:MAX_VALUE_CHARS]
    return None
