"""The ``shadow`` command line.

Subcommands live in their own modules and are imported only when run, so ``shadow --help`` is
quick and ``shadow`` never imports ``capture`` or ``analysis`` unless a command needs them.

Errors follow one convention: a :class:`~shadow.errors.ShadowError` prints one line
(``shadow: error: ...``) and exits with its code (2 for bad input, 1 for an operational
failure); the traceback is shown only with ``--debug`` (or ``SHADOW_DEBUG=1``).
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

import click

from shadow._version import __version__
from shadow.cli.flags import user_message
from shadow.errors import ShadowError

__all__ = ["cli", "main"]

_COMMANDS: dict[str, tuple[str, str]] = {
    # name: (module, short help shown by `shadow --help` without importing the module)
    "analyze": ("shadow.cli.analyze_cmd", "Summarise a run by arm and slice, with deltas."),
    "broker": ("shadow.cli.broker_cmd", "Run the embedded Kafka-compatible broker."),
    "capture": ("shadow.cli.capture_cmd", "Run the capture sidecar in front of a live service."),
    "demo": ("shadow.cli.demo_cmd", "Run the whole flow on this machine, in one command."),
    "gate": ("shadow.cli.gate_cmd", "Pass or fail a run against rules (exit 0, 1 or 2)."),
    "import": ("shadow.cli.import_cmd", "Turn public trace formats into TraceRecords."),
    "mirror": ("shadow.cli.mirror_cmd", "Mirror live traffic from Kafka to a candidate."),
    "mock-llm": ("shadow.cli.mockllm_cmd", "Run the simulated OpenAI-compatible model server."),
    "replay": ("shadow.cli.replay_cmd", "Replay captured traffic to a baseline and a candidate."),
    "report": ("shadow.cli.report_cmd", "Write a self-contained HTML report of a run."),
}


class _LazyGroup(click.Group):
    """A group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in _COMMANDS:
            return None
        module = importlib.import_module(_COMMANDS[cmd_name][0])
        command: click.Command = module.command
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, helptext) for name, (_, helptext) in sorted(_COMMANDS.items())]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="shadow")
@click.option("--debug", is_flag=True, help="Show full tracebacks instead of one-line errors.")
def cli(debug: bool) -> None:
    """shadow: replay production LLM traffic against a baseline and a candidate, and judge the
    change on latency, tokens, cost per successful response and output divergence, slice by slice.

    \b
    Typical flow:
      shadow broker                                   # a local Kafka-compatible broker
      shadow mock-llm --port 8001 --profile large     # simulated pipelines (or your own)
      shadow import azure trace.csv --out traces.jsonl
    """


def _debug_requested(argv: list[str]) -> bool:
    return "--debug" in argv or os.environ.get("SHADOW_DEBUG", "") not in ("", "0")


def main(argv: list[str] | None = None) -> Any:
    """Entry point of the ``shadow`` console script."""
    args = sys.argv[1:] if argv is None else argv
    debug = _debug_requested(args)
    try:
        return cli.main(args=args, prog_name="shadow", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("shadow: interrupted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except ShadowError as exc:
        if debug:
            raise
        click.echo(f"shadow: error: {user_message(exc)}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("shadow: interrupted", err=True)
        sys.exit(130)
    except Exception as exc:
        if debug:
            raise
        click.echo(
            f"shadow: internal error: {type(exc).__name__}: {exc} (rerun with --debug for the "
            "traceback, and please report it)",
            err=True,
        )
        sys.exit(1)
