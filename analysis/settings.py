"""The settings an analysis runs with: a config file's ``[analysis]`` section, then overrides.

``shadow analyze``, ``gate`` and ``report`` (and the demo) resolve their settings here, so a
figure is judged against the same SLOs, pins and thresholds whichever of them computes it; the
CLI parses its flags into the keyword arguments and passes them on.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from analysis.embedders.base import Embedder
from analysis.embedders.loader import load_embedder
from shadow.config import AnalysisConfig, load_config, override

__all__ = ["resolve_embedder", "resolve_settings"]


def resolve_settings(
    config_path: str | os.PathLike[str] | None,
    *,
    slo: Mapping[str, float] | None = None,
    pins: Mapping[str, str] | None = None,
    min_samples: int | None = None,
    embedder: str | None = None,
) -> AnalysisConfig:
    """The ``[analysis]`` settings of ``config_path`` (defaults without one) with overrides.

    Args:
        slo: ``slo_ttft_ms``/``slo_tpot_ms``/``slo_latency_ms`` keys with their values.
        pins: arm -> model, added to (and replacing) the file's ``pin_models``.
        min_samples: replaces the file's ``min_samples``.
        embedder: replaces the file's ``embedder`` spec.

    Raises:
        ConfigError: a value is out of range (the message names the key).
    """
    settings = load_config(None if config_path is None else Path(config_path)).analysis
    changes: dict[str, Any] = dict(slo or {})
    if pins:
        changes["pin_models"] = {**settings.pin_models, **pins}
    if min_samples is not None:
        changes["min_samples"] = min_samples
    if embedder is not None:
        changes["embedder"] = embedder
    return override(settings, "analysis", **changes)


def resolve_embedder(settings: AnalysisConfig) -> Embedder | None:
    """The embedder of ``settings.embedder`` (None: the lexical measure); see
    :func:`analysis.embedders.loader.load_embedder`."""
    return load_embedder(settings.embedder)
