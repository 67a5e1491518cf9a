"""``shadow mock-llm``: the simulated model server (OpenAI, Anthropic, Gemini) in the foreground."""

from __future__ import annotations

import click

from shadow.errors import UsageError

__all__ = ["command"]


@click.command("mock-llm")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    default=8001,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port to listen on; 0 picks a free one (the URL is printed).",
)
@click.option(
    "--profile",
    type=click.Choice(["large", "small", "routed"]),
    default="large",
    show_default=True,
    help="large: slow, careful, expensive; small: fast, cheap, drifts on hard or long prompts; "
    "routed: long (> 1,024 tokens) or hard (refactor, debug) prompts to large, the rest to small.",
)
@click.option("--seed", default=0, show_default=True, help="Seed for answers and injected faults.")
@click.option(
    "--error-rate",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="Share of calls answered with an injected 429, 500 or 503.",
)
@click.option(
    "--slow-rate",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="Share of calls that run --slow-factor times slower.",
)
@click.option(
    "--slow-factor",
    default=10.0,
    show_default=True,
    type=click.FloatRange(1),
    help="How much slower a slow call is.",
)
@click.option(
    "--hang-rate",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="Share of calls that never answer (until the client disconnects).",
)
@click.option(
    "--slots",
    type=click.IntRange(1),
    default=None,
    help="Concurrent requests per model before queueing (default: the profile's; raise it "
    "for load tests with many concurrent streams).",
)
@click.option(
    "--time-scale",
    default=1.0,
    show_default=True,
    type=click.FloatRange(0),
    help="Multiplies every simulated delay: 0.01 for fast tests, 0 for no delay at all.",
)
def command(
    host: str,
    port: int,
    profile: str,
    seed: int,
    error_rate: float,
    slow_rate: float,
    slow_factor: float,
    hang_rate: float,
    slots: int | None,
    time_scale: float,
) -> None:
    """Run a simulated model server until Ctrl-C or SIGTERM.

    Speaks OpenAI (POST /v1/chat/completions, /v1/completions, /v1/responses, /v1/embeddings,
    Azure's /openai/deployments/{d}/...), Anthropic (POST /v1/messages) and Gemini (POST
    /v1beta/models/{m}:generateContent and :streamGenerateContent?alt=sse), streaming or not,
    with the same models; GET /v1/models and GET /health. Answers are deterministic
    from (prompt, --seed, model); temperature > 0 (the default is 1, as with OpenAI) varies a
    few words per call, the noise a baseline_repeat arm measures. Latency: TTFT = base +
    prefill per prompt token, then a decode time per output token; a fixed number of slots
    per model queues the rest, so latency grows under load. Tokens are whitespace-separated
    words, in prompts and answers alike.

    \b
    Examples:
      shadow mock-llm --port 8001 --profile large              # the baseline pipeline
      shadow mock-llm --port 8002 --profile routed             # the candidate: routing rule
      shadow mock-llm --port 0 --time-scale 0 --error-rate 0.05
    """
    from shadow.sim.app import FaultConfig
    from shadow.sim.server import MockLLMServer

    try:
        faults = FaultConfig(
            error_rate=error_rate, slow_rate=slow_rate, slow_factor=slow_factor, hang_rate=hang_rate
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    server = MockLLMServer(
        profile, seed=seed, time_scale=time_scale, faults=faults, host=host, port=port, slots=slots
    )
    server.bind()
    click.echo(f"mock-llm ({profile}) listening on {server.url}", err=False)
    server.run()
