"""The Dockerfile and .dockerignore, read without Docker: a non-root image of shadow with its
semantic extra, and a build context without local state."""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"


# -- the image ----------------------------------------------------------------------------


def _dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instruction, _, rest = line.partition(" ")
            out.append((instruction.upper(), rest.strip()))
    return out


def test_dockerfile_builds_a_non_root_shadow_image() -> None:
    """python slim base, `pip install '.[semantic]'` without dev extras, a non-root user,
    ENTRYPOINT shadow."""
    steps = _dockerfile()
    bases = [rest for instruction, rest in steps if instruction == "FROM"]
    assert len(bases) == 1
    assert re.fullmatch(r"python:3\.1[1-9]-slim(-\w+)?", bases[0]), bases
    entrypoints = [rest for instruction, rest in steps if instruction == "ENTRYPOINT"]
    assert len(entrypoints) == 1
    assert json.loads(entrypoints[0]) == ["shadow"]
    users = [rest for instruction, rest in steps if instruction == "USER"]
    assert users
    assert users[-1] not in ("root", "0")
    runs = " ".join(rest for instruction, rest in steps if instruction == "RUN")
    assert re.search(r"pip install '\.\[semantic\]'(\s|&|$)", runs), runs
    assert "[dev]" not in runs
    for instruction, rest in steps:
        if instruction == "COPY":
            *sources, _ = rest.split()
            for source in sources:
                assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
    built_from = {"pyproject.toml", "README.md", "shadow", "capture", "analysis"}
    copied = {s for i, r in steps if i == "COPY" for s in r.split()[:-1]}
    assert built_from <= copied


def test_dockerignore_keeps_local_state_out_of_the_context() -> None:
    """The virtualenv, caches, git, results and benchmark output never reach the build."""
    patterns = {
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    required = {".git", ".venv", "tests/artifacts", "bench/results", ".mypy_cache", ".pytest_cache"}
    assert required <= patterns
    assert not patterns & {"shadow", "capture", "analysis", "pyproject.toml", "README.md"}
