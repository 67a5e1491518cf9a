"""Options shared by ``shadow analyze``, ``gate`` and ``report``: SLOs, pins, thresholds.

Each has a key in ``shadow.toml``'s ``[analysis]`` section; a flag overrides the file.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from shadow.config import AnalysisConfig, load_config, override
from shadow.errors import UsageError

__all__ = ["analysis_options", "analysis_settings", "load_embedder_spec"]

F = TypeVar("F", bound=Callable[..., Any])

_SLO_KEYS = {"ttft": "slo_ttft_ms", "tpot": "slo_tpot_ms", "latency": "slo_latency_ms"}


def analysis_options(func: F) -> F:
    """Add --config, --slo, --pin, --min-samples and --embedder to a command."""
    options = [
        click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
                     help="shadow.toml; its [analysis] section sets the defaults below."),
        click.option("--slo", metavar="ttft=MS,tpot=MS,latency=MS",
                     help="Goodput SLOs, e.g. --slo ttft=2000,tpot=100."),
        click.option("--pin", "pins", multiple=True, metavar="ARM=MODEL",
                     help="Alarm when ARM's responses report another model (repeatable)."),
        click.option("--min-samples", type=click.IntRange(1),
                     help="Smaller slices are reported as too small, not judged [default: 30]."),
        click.option("--embedder", metavar="SPEC",
                     help="Divergence measure: auto (MiniLM if installed), lexical, minilm, static "
                     "(fast MiniLM word table), or an OpenAI-compatible base URL[#model] "
                     "[default: auto]."),
    ]  # fmt: skip
    for option in reversed(options):
        func = option(func)
    return func


def analysis_settings(
    config_path: Path | None,
    slo: str | None,
    pins: tuple[str, ...],
    min_samples: int | None,
    embedder: str | None,
) -> AnalysisConfig:
    """The [analysis] settings of ``config_path`` with the flags applied on top."""
    settings = load_config(config_path).analysis
    changes: dict[str, Any] = {}
    if slo:
        for part in slo.split(","):
            name, _, value = part.partition("=")
            key = _SLO_KEYS.get(name.strip())
            try:
                number = float(value)
            except ValueError:
                number = -1.0
            if key is None or number <= 0:
                raise UsageError(
                    f"--slo has {part!r}; give NAME=MS pairs with NAME one of ttft, tpot, "
                    "latency and MS > 0, e.g. --slo ttft=2000,tpot=100"
                )
            changes[key] = number
    if pins:
        pinned = dict(settings.pin_models)
        for pin in pins:
            arm, _, model = pin.partition("=")
            if not arm or not model:
                raise UsageError(f"--pin has {pin!r}; give ARM=MODEL, e.g. --pin candidate=gpt-4o")
            pinned[arm.strip()] = model.strip()
        changes["pin_models"] = pinned
    if min_samples is not None:
        changes["min_samples"] = min_samples
    if embedder is not None:
        changes["embedder"] = embedder
    return override(settings, "analysis", **changes)


def load_embedder_spec(spec: str) -> Any:
    """The Embedder for ``spec`` (None for the lexical measure); see analysis.embeddings."""
    from analysis.embeddings import load_embedder

    return load_embedder(spec)
