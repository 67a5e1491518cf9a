"""The public surface of each package: a sorted ``__all__`` whose every name can be imported."""

from __future__ import annotations

import importlib
from importlib import resources
from types import ModuleType

import pytest

import shadow

PACKAGES = ["shadow", "capture", "analysis"]
SUBPACKAGES = [
    "analysis.embedders",
    "analysis.report",
    "shadow.kafka",
    "shadow.replay",
    "shadow.results",
    "shadow.sim",
    "shadow.trace",
    "shadow.wire",
]


def _isort_key(name: str) -> tuple[int, str]:
    """How ruff (RUF022) orders ``__all__``: CONSTANTS, then Classes, then everything else."""
    if name.isupper() or (name.upper() == name and "_" in name):
        return (0, name)
    return (1, name) if name[:1].isupper() else (2, name)


def _public_names(module: ModuleType) -> set[str]:
    """Names a package defines or re-exports without a leading underscore (modules excluded)."""
    return {
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and not isinstance(value, ModuleType)
        and name != "annotations"  # the flag `from __future__ import annotations` leaves behind
    }


@pytest.mark.parametrize("package", PACKAGES + SUBPACKAGES)
def test_all_is_sorted(package: str) -> None:
    """Each package's __all__ is sorted (ruff's order), so additions land in one obvious place."""
    names = importlib.import_module(package).__all__
    assert names == sorted(names, key=_isort_key)
    assert len(names) == len(set(names))


def test_the_sort_order_is_constants_then_classes_then_the_rest() -> None:
    """The order the check above expects, shown on names of each kind."""
    names = ["load", "Run", "NO_SLICE", "FIGURES", "AnalysisResult", "__version__", "open_run"]
    assert sorted(names, key=_isort_key) == [
        "FIGURES",
        "NO_SLICE",
        "AnalysisResult",
        "Run",
        "__version__",
        "load",
        "open_run",
    ]


@pytest.mark.parametrize("package", PACKAGES + SUBPACKAGES)
def test_every_name_in_all_is_importable(package: str) -> None:
    """Every name listed in __all__ can be imported from the package."""
    module = importlib.import_module(package)
    missing = [name for name in module.__all__ if not hasattr(module, name)]
    assert missing == []


@pytest.mark.parametrize("package", PACKAGES + SUBPACKAGES)
def test_every_public_name_is_in_all(package: str) -> None:
    """A public name in a package's namespace is exported on purpose, not by accident."""
    module = importlib.import_module(package)
    assert _public_names(module) <= set(module.__all__)


def test_shadow_exports_exactly_the_chosen_names() -> None:
    """shadow's public surface is exactly this list; changing it is a deliberate API change."""
    assert shadow.__all__ == [
        "AnalysisError",
        "BrokerError",
        "CaptureError",
        "Config",
        "ConfigError",
        "HttpRequest",
        "HttpResponse",
        "ReplayError",
        "ShadowError",
        "Timing",
        "TraceError",
        "TraceRecord",
        "Usage",
        "UsageError",
        "__version__",
        "decode",
        "encode",
        "load_config",
    ]


@pytest.mark.parametrize("package", PACKAGES)
def test_package_ships_type_information(package: str) -> None:
    """Each package ships a py.typed marker so users' type checkers read its annotations."""
    assert (resources.files(package) / "py.typed").is_file()
