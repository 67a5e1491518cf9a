"""CLI conventions: teaching --help, one-line errors with exit 2, tracebacks only with --debug."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from shadow.cli import cli


def run_shadow(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shadow", *args], capture_output=True, text=True, timeout=60
    )


def test_help_lists_every_command_without_importing_them() -> None:
    """`shadow --help` lists the commands with their one-line summaries."""
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for name in ("analyze", "broker", "capture", "gate", "import", "mirror", "mock-llm", "replay"):
        assert f"  {name} " in result.output
    probe = (
        "import sys; from click.testing import CliRunner; from shadow.cli import cli; "
        "CliRunner().invoke(cli, ['--help']); "
        "print(sorted(m for m in ('shadow.sim', 'shadow.trace.azure', 'capture', 'analysis', "
        "'aiokafka', 'uvicorn') if m in sys.modules))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert loaded.stdout.strip() == "[]"


def test_every_command_has_help_with_an_example() -> None:
    """Each command's --help explains itself and shows an example invocation."""
    commands = ["analyze", "broker", "capture", "gate", "mirror", "mock-llm", "replay"]
    for args in [*([c] for c in commands), ["import", "azure"]]:
        result = CliRunner().invoke(cli, [*args, "--help"])
        assert result.exit_code == 0, result.output
        assert "shadow " + args[0] in result.output  # an example command line


def test_a_user_error_is_one_line_and_exit_2(tmp_path: Path) -> None:
    """A missing input file prints one line that names it, exits 2 and shows no traceback."""
    missing = tmp_path / "missing.csv"
    result = run_shadow("import", "azure", str(missing), "--out", str(tmp_path / "out.jsonl"))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("shadow: error: ")
    assert "missing.csv" in lines[0]
    assert "Traceback" not in result.stderr


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    """With --debug the same error comes with its traceback for a bug report."""
    missing = tmp_path / "missing.csv"
    result = run_shadow(
        "--debug", "import", "azure", str(missing), "--out", str(tmp_path / "out.jsonl")
    )
    assert result.returncode != 0
    assert "Traceback" in result.stderr


def test_usage_errors_exit_2() -> None:
    """An unknown command or a bad option value is a usage error: exit 2."""
    assert run_shadow("no-such-command").returncode == 2
    bad = run_shadow("mock-llm", "--profile", "huge")
    assert bad.returncode == 2
    assert "huge" in bad.stderr


def test_version() -> None:
    """`shadow --version` prints the package version."""
    from shadow import __version__

    result = run_shadow("--version")
    assert result.returncode == 0
    assert __version__ in result.stdout
