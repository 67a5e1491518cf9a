"""Options shared by ``shadow analyze``, ``gate`` and ``report``: SLOs, pins, thresholds, slices.

Each has a key in ``shadow.toml``'s ``[analysis]`` section; a flag overrides the file. This
module declares the flags, parses their syntax, and hands the values to
:func:`analysis.settings.resolve_settings`; it also says library errors in terms of flags.
``--slice NAME=EXPR`` (repeatable) computes a slice from each trace's stored request when the
run is opened (:func:`open_results`; :mod:`analysis.slicing`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from shadow.errors import UsageError

if TYPE_CHECKING:
    from analysis.embedders.base import Embedder
    from analysis.run import Run
    from shadow.config import AnalysisConfig

__all__ = ["analysis_options", "analysis_settings", "load_embedder_spec", "open_results",
           "slice_keys"]  # fmt: skip

F = TypeVar("F", bound=Callable[..., Any])

_SLO_KEYS = {"ttft": "slo_ttft_ms", "tpot": "slo_tpot_ms", "latency": "slo_latency_ms"}


def analysis_options(func: F) -> F:
    """Add --config, --slo, --pin, --min-samples, --embedder and --slice to a command."""
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
        click.option("--slice", "slice_exprs", multiple=True, metavar="NAME=EXPR",
                     help="Add a slice computed from each trace's stored request, a DuckDB "
                     "expression over the traces table (request_body, path, method, slices, "
                     "...), e.g. --slice messages=\"json_array_length(request_body->'messages')\";"
                     " use NAME in --by and gate rules' by (repeatable)."),
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
    slice_exprs: tuple[str, ...] = (),
) -> AnalysisConfig:
    """The [analysis] settings of ``config_path`` with the flags applied on top.

    ``slice_exprs`` (``--slice``) are not settings: their syntax is checked here, and
    :func:`open_results` evaluates them."""
    from analysis.slicing import parse_slice_expr

    for text in slice_exprs:
        parse_slice_expr(text)
    from analysis.settings import resolve_settings

    slos: dict[str, float] = {}
    for part in slo.split(",") if slo else []:
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
        slos[key] = number
    pinned: dict[str, str] = {}
    for pin in pins:
        arm, _, model = pin.partition("=")
        if not arm or not model:
            raise UsageError(f"--pin has {pin!r}; give ARM=MODEL, e.g. --pin candidate=gpt-4o")
        pinned[arm.strip()] = model.strip()
    return resolve_settings(
        config_path, slo=slos, pins=pinned, min_samples=min_samples, embedder=embedder
    )


def load_embedder_spec(settings: AnalysisConfig) -> Embedder | None:
    """The Embedder of the settings (None for the lexical measure)."""
    from analysis.settings import resolve_embedder

    return resolve_embedder(settings)


def slice_keys(by: str) -> list[str]:
    """The slice names of a ``--by`` value, checked as analysis checks them."""
    from analysis.sql import slice_name_problem

    keys = [name.strip() for name in by.split(",") if name.strip()]
    problem = slice_name_problem(keys)
    if problem is not None:
        raise UsageError(f"--by has {', '.join(keys)}; {problem}")
    return keys


def open_results(run_path: str, run_id: str | None, slice_exprs: tuple[str, ...] = ()) -> Run:
    """:func:`analysis.run.open_run`, an empty store's error saying which flag writes one,
    with the ``--slice`` slices added (:meth:`analysis.run.Run.add_slices`)."""
    from analysis.run import NoRunError, open_run

    try:
        run = open_run(run_path, run_id)
    except NoRunError as exc:
        raise UsageError(f"{exc} (--out)") from None
    try:
        return run.add_slices(slice_exprs)
    except BaseException:
        run.close()
        raise
