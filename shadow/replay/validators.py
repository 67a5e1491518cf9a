"""What makes a response a *success* beyond 2xx: the configured validators.

docs/architecture.md, "Metric definitions": ok = 2xx, the body parses, and every configured
validator passes. Validators run on the output text: ``non_empty``, ``max_chars``,
``refusal_patterns`` (regular expressions that mark a refusal or an error message dressed as an
answer) and ``json_schema`` (the output must be JSON that the schema accepts, for JSON-mode
pipelines).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from shadow.config import ValidatorsConfig
from shadow.errors import ConfigError

__all__ = ["Validators"]


class Validators:
    """Compiled validators; :meth:`check` returns None when the output passes, else why not."""

    def __init__(self, config: ValidatorsConfig | None = None) -> None:
        config = config or ValidatorsConfig()
        self.non_empty = config.non_empty
        self.max_chars = config.max_chars
        self._refusals = [re.compile(p) for p in config.refusal_patterns]
        self._schema: Any = None
        if config.json_schema:
            self._schema = _load_schema(config.json_schema)

    def check(self, text: str | None) -> str | None:
        """None if ``text`` passes every validator, else a short reason (``validator:...``)."""
        if self.non_empty and not (text or "").strip():
            return "validator:empty"
        if text is None:
            return None
        if self.max_chars is not None and len(text) > self.max_chars:
            return "validator:too_long"
        for pattern in self._refusals:
            if pattern.search(text):
                return "validator:refusal"
        if self._schema is not None:
            try:
                document = json.loads(text)
            except ValueError:
                return "validator:not_json"
            if not self._schema.is_valid(document):
                return "validator:schema"
        return None


def _load_schema(path: str) -> Any:
    import jsonschema

    try:
        schema = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(
            f"validators.json_schema has value {path!r}; cannot read it ({exc.strerror})"
        ) from None
    except ValueError as exc:
        raise ConfigError(
            f"validators.json_schema has value {path!r}; it is not JSON ({exc})"
        ) from None
    validator_class = jsonschema.validators.validator_for(schema)
    try:
        validator_class.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise ConfigError(
            f"validators.json_schema has value {path!r}; not a valid JSON Schema ({exc.message})"
        ) from None
    return validator_class(schema)
