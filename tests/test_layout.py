"""The tree keeps its shape: stages as packages, no import cycles, nothing imports the CLI or demo.

Imports are read from the source (every ``import`` statement, those inside functions and under
``TYPE_CHECKING`` included), so a lazy import cannot hide a cycle or an upward dependency.
"""

from __future__ import annotations

import ast
import re
import tomllib
from collections import defaultdict
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("shadow", "capture", "analysis")
MAX_LINES = 600

# docs/architecture.md, "Layout": one subpackage per stage, in the order data flows.
SHADOW_STAGES = {"trace", "wire", "kafka", "replay", "results", "sim", "demo", "cli"}
# What sits beside the stages: cross-cutting pieces every stage may use.
SHADOW_TOP_MODULES = {
    "__init__",
    "__main__",
    "_version",
    "closing",
    "config",
    "config_checks",
    "errors",
    "files",
    "lifeline",
    "logs",
    "serving",
}
ON_TOP = ("shadow.cli", "shadow.demo")
ENTRY_POINT = "shadow.__main__"  # `python -m shadow` runs the CLI


def _modules(root: Path = REPO) -> dict[str, Path]:
    """Dotted module name → file, for every module of the three packages."""
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _owner(name: str, modules: Mapping[str, Path]) -> str | None:
    """The project module that defines ``name`` (a module, or a name inside one)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _imported(module: str, path: Path, modules: Mapping[str, Path]) -> Iterator[str]:
    """Every project module that ``module`` imports, wherever the import statement stands."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            targets = [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            owner = _owner(target, modules)
            if owner is not None and owner != module:
                yield owner


def import_graph(root: Path = REPO) -> dict[str, set[str]]:
    """Module → the project modules it imports."""
    modules = _modules(root)
    return {name: set(_imported(name, path, modules)) for name, path in modules.items()}


def cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def upward_imports(graph: Mapping[str, set[str]]) -> list[tuple[str, str]]:
    """(importer, imported) pairs where a module below the top imports the CLI or the demo."""
    bad = []
    for module, imported in sorted(graph.items()):
        for target in sorted(imported):
            top = next((prefix for prefix in ON_TOP if _within(target, prefix)), None)
            if top is None or _within(module, top) or module == ENTRY_POINT:
                continue
            if top == "shadow.demo" and _within(module, "shadow.cli"):
                continue  # `shadow demo` is a command: the CLI may start it
            bad.append((module, target))
    return bad


def test_no_import_cycles() -> None:
    """No two project modules import each other, directly or through others, lazily or not."""
    assert cycles(import_graph()) == []


def test_nothing_below_imports_the_cli_or_the_demo() -> None:
    """shadow.cli and shadow.demo sit on top: no library module imports them."""
    assert upward_imports(import_graph()) == []


def test_the_checks_see_a_lazy_cycle_and_an_upward_import(tmp_path: Path) -> None:
    """The two checks above fail on a tree that has a lazy cycle and a library importing the CLI."""
    for package in PACKAGES:
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "shadow" / "cli").mkdir()
    (tmp_path / "shadow" / "cli" / "__init__.py").write_text("")
    (tmp_path / "shadow" / "a.py").write_text("from shadow.b import thing\n")
    (tmp_path / "shadow" / "b.py").write_text("def thing():\n    from shadow import a\n")
    (tmp_path / "analysis" / "c.py").write_text("from shadow.cli import main\n")
    graph = import_graph(tmp_path)
    assert cycles(graph) == [["shadow.a", "shadow.b"]]
    assert upward_imports(graph) == [("analysis.c", "shadow.cli")]


def test_shadow_is_laid_out_by_stage() -> None:
    """shadow/ holds one subpackage per stage and only the cross-cutting modules beside them."""
    root = REPO / "shadow"
    packages = {p.name for p in root.iterdir() if (p / "__init__.py").is_file()}
    modules = {p.stem for p in root.glob("*.py")}
    assert packages == SHADOW_STAGES
    assert modules <= SHADOW_TOP_MODULES


def _python_files() -> list[Path]:
    files = [p for package in PACKAGES for p in (REPO / package).rglob("*.py")]
    files += list((REPO / "bench").rglob("*.py")) + list((REPO / "tests").rglob("*.py"))
    return sorted(files)


def test_no_module_is_over_the_size_limit() -> None:
    """Every module (library, tests and benchmarks) stays at or under 600 lines."""
    long = {
        str(p.relative_to(REPO)): n
        for p in _python_files()
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}


def test_only_the_kafka_package_uses_aiokafka() -> None:
    """Everything that talks Kafka lives in shadow/kafka (the table in docs/architecture.md)."""
    users = defaultdict(list)
    for path in _python_files():
        if path.is_relative_to(REPO / "tests") or path.is_relative_to(REPO / "bench"):
            continue
        if re.search(r"^\s*(from|import) aiokafka", path.read_text(), re.MULTILINE):
            users[path.relative_to(REPO).parts[:2]].append(path.name)
    assert set(users) <= {("shadow", "kafka")}


@pytest.mark.parametrize("suffix", [".py", ".html", ".ipynb", ".toml", ".yml"])
def test_nothing_points_outside_the_repository(suffix: str) -> None:
    """Code, tests, notebooks and config cite docs inside the repo, not a note beside it."""
    outside = re.compile(r"DESIGN\.md|\.\./shared|parents\[\d\] / \"shared\"")
    roots = [*PACKAGES, "tests", "bench", "notebooks", "examples"]
    hits = [
        str(path.relative_to(REPO))
        for root in roots
        for path in (REPO / root).rglob(f"*{suffix}")
        if path != Path(__file__).resolve() and outside.search(path.read_text(errors="replace"))
    ]
    hits += [
        name
        for name in ("docker-compose.yml", "pyproject.toml")
        if name.endswith(suffix) and outside.search((REPO / name).read_text())
    ]
    assert hits == []


def test_the_wheel_ships_the_three_packages() -> None:
    """pyproject.toml builds a wheel of exactly the three packages (an install needs them)."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert config["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"] == list(PACKAGES)


def test_test_modules_have_unique_names() -> None:
    """pytest imports test modules by file name, so two test_x.py in different folders clash."""
    names = [p.name for p in (REPO / "tests").rglob("test_*.py")]
    assert sorted({n for n in names if names.count(n) > 1}) == []
