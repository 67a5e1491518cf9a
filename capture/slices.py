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
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from shadow.config import SliceRule

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

    __slots__ = ("_needs_body", "_rules")

    def __init__(self, rules: Sequence[SliceRule] = ()) -> None:
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

    def extract(self, headers: Mapping[str, str], body: bytes) -> dict[str, str]:
        """The slice labels of one request, in rule order.

        Args:
            headers: the request headers, names lower-cased.
            body: the raw request body; parsed once, and only if a rule reads a JSON path.
        """
        document: object = None
        if self._needs_body:
            try:
                document = _DECODER.decode(body)
            except (ValueError, RecursionError):  # DecodeError, UnicodeDecodeError, deep nesting
                document = None
        slices: dict[str, str] = {}
        for rule in self._rules:
            value = _lookup(document, rule.keys) if rule.keys else headers.get(rule.header)
            text = _label(value)
            if text is None:
                text = rule.default
            if text:
                slices[rule.name] = text
        return slices


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
