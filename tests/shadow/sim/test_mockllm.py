"""shadow mock-llm through the real OpenAI SDK: API, usage rule, determinism, latency, faults."""

from __future__ import annotations

import asyncio
import difflib
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import httpx
import openai
import pytest

from shadow.sim import FaultConfig, MockLLMServer
from shadow.sim.profiles import LARGE, ROUTED_CONTEXT_THRESHOLD
from shadow.wire.tokens import count_tokens

Sdk = Callable[[str], openai.OpenAI]


def client_for(server: MockLLMServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key="sk-test", max_retries=0)


def ask(client: openai.OpenAI, prompt: str, **kwargs: object) -> openai.types.chat.ChatCompletion:
    return client.chat.completions.create(  # type: ignore[no-any-return,call-overload]
        model="shadow-large", messages=[{"role": "user", "content": prompt}], **kwargs
    )


def test_chat_completion_reports_usage_by_the_documented_token_rule(
    sdk: Sdk,
    mock_large: MockLLMServer,
) -> None:
    """prompt_tokens counts whitespace-separated words; completion_tokens the answer's words."""
    prompt = "refactor this function so the cache is read once per request"
    reply = ask(sdk(mock_large.url), prompt, max_tokens=40)
    text = reply.choices[0].message.content or ""
    assert reply.model == "shadow-large"
    assert reply.usage is not None
    assert reply.usage.prompt_tokens == count_tokens(prompt) == 11
    assert reply.usage.completion_tokens == count_tokens(text)
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
    assert 1 <= reply.usage.completion_tokens <= 40


def test_max_tokens_caps_the_answer_and_says_length(sdk: Sdk, mock_large: MockLLMServer) -> None:
    """An answer cut by max_tokens has exactly that many tokens and finish_reason 'length'."""
    client = sdk(mock_large.url)
    reply = ask(client, "explain the retry loop " * 5, max_tokens=3)
    assert reply.usage is not None
    assert reply.usage.completion_tokens == 3
    assert reply.choices[0].finish_reason == "length"
    uncapped = ask(client, "explain the retry loop " * 5, temperature=0)
    assert uncapped.choices[0].finish_reason == "stop"
    assert uncapped.usage is not None
    assert uncapped.usage.completion_tokens >= 3


def test_answers_are_deterministic_at_temperature_zero(sdk: Sdk, mock_large: MockLLMServer) -> None:
    """The same prompt at temperature 0 gets the same text; a different prompt does not."""
    client = sdk(mock_large.url)
    first = ask(client, "write a test for the parser", temperature=0).choices[0].message.content
    again = ask(client, "write a test for the parser", temperature=0).choices[0].message.content
    other = ask(client, "write a test for the cache", temperature=0).choices[0].message.content
    assert first == again
    assert first != other


def test_temperature_varies_a_few_words_per_call(sdk: Sdk) -> None:
    """At temperature 1 two calls differ a little (the noise floor) but mostly agree."""
    with MockLLMServer("large", seed=3, time_scale=0) as server:
        client = sdk(server.url)
        prompt = "debug the worker pool deadlock " * 20
        answers = [
            (ask(client, prompt, temperature=1).choices[0].message.content or "").split()
            for _ in range(6)
        ]
    pairs = [(a, b) for i, a in enumerate(answers) for b in answers[i + 1 :]]
    differing = [sum(x != y for x, y in zip(a, b, strict=True)) / len(a) for a, b in pairs]
    assert any(d > 0 for d in differing)
    assert max(differing) < 0.25


def test_the_same_seed_reproduces_the_whole_call_sequence(sdk: Sdk) -> None:
    """Two servers with one seed give identical answers call for call, temperature included."""

    def run() -> list[str]:
        with MockLLMServer("large", seed=11, time_scale=0) as server:
            client = sdk(server.url)
            return [
                ask(client, f"question {i} " * 30, temperature=1).choices[0].message.content or ""
                for i in range(5)
            ]

    assert run() == run()


def test_streaming_delivers_one_token_per_chunk_and_the_usage_chunk(
    sdk: Sdk,
    mock_large: MockLLMServer,
) -> None:
    """A stream reassembles to the non-streamed text and ends with a usage chunk when asked."""
    client = sdk(mock_large.url)
    prompt = "explain the serializer"
    stream = client.chat.completions.create(
        model="shadow-large",
        messages=[{"role": "user", "content": prompt}],
        stream=True,
        stream_options={"include_usage": True},
        temperature=0,
        max_tokens=25,
    )
    pieces: list[str] = []
    usage = None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            if choice.delta.content:
                pieces.append(choice.delta.content)
    text = "".join(pieces)
    plain = ask(client, prompt, temperature=0, max_tokens=25).choices[0].message.content
    assert text == plain
    assert usage is not None
    assert usage.completion_tokens == len(pieces) == count_tokens(text)
    assert usage.prompt_tokens == count_tokens(prompt)


def test_stream_without_include_usage_has_no_usage_chunk(
    sdk: Sdk, mock_large: MockLLMServer
) -> None:
    """Without stream_options.include_usage no chunk carries usage, as with OpenAI."""
    stream = sdk(mock_large.url).chat.completions.create(
        model="x", messages=[{"role": "user", "content": "hi"}], stream=True, max_tokens=4
    )
    chunks = list(stream)
    assert chunks
    assert all(chunk.usage is None for chunk in chunks)


async def test_async_client_and_legacy_completions(mock_large: MockLLMServer) -> None:
    """The async SDK client works, and /v1/completions answers with text and usage."""
    client = openai.AsyncOpenAI(base_url=mock_large.url + "/v1", api_key="sk-test")
    completion = await client.completions.create(
        model="shadow-large", prompt="def parse(line):", max_tokens=6
    )
    models = await client.models.list()
    await client.close()
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == 2
    assert completion.usage.completion_tokens == count_tokens(completion.choices[0].text) == 6
    assert [m.id for m in models.data] == ["shadow-large"]


def test_routed_profile_sends_long_or_hard_prompts_to_large(
    sdk: Sdk, mock_routed: MockLLMServer
) -> None:
    """routed: short easy prompts go to small; long prompts and hard intents go to large."""
    client = sdk(mock_routed.url)
    short = ask(client, "complete this line", max_tokens=5)
    long = ask(client, "word " * (ROUTED_CONTEXT_THRESHOLD + 1), max_tokens=5)
    hard = ask(client, "fix it", max_tokens=5, metadata={"intent": "debug"})
    boundary = ask(client, "word " * ROUTED_CONTEXT_THRESHOLD, max_tokens=5)
    assert short.model == "shadow-small"
    assert long.model == "shadow-large"
    assert hard.model == "shadow-large"
    assert boundary.model == "shadow-small"


def test_small_model_drifts_from_large_on_hard_prompts_only(sdk: Sdk) -> None:
    """small agrees with large on easy prompts and diverges on hard ones."""

    def words(server: MockLLMServer, prompt: str, intent: str) -> list[str]:
        reply = ask(sdk(server.url), prompt, temperature=0, metadata={"intent": intent})
        return (reply.choices[0].message.content or "").split()

    def overlap(a: list[str], b: list[str]) -> float:
        return difflib.SequenceMatcher(a=a, b=b, autojunk=False).ratio()

    with (
        MockLLMServer("large", seed=5, time_scale=0) as large,
        MockLLMServer("small", seed=5, time_scale=0) as small,
    ):
        easy = [
            overlap(
                words(large, f"complete line {i}", "complete"),
                words(small, f"complete line {i}", "complete"),
            )
            for i in range(20)
        ]
        hard = [
            overlap(
                words(large, f"refactor {i}", "refactor"), words(small, f"refactor {i}", "refactor")
            )
            for i in range(20)
        ]
    assert sum(easy) / len(easy) > 0.8
    assert sum(hard) / len(hard) < 0.5


def test_bad_requests_get_openai_style_400s(sdk: Sdk, mock_large: MockLLMServer) -> None:
    """Invalid JSON, missing messages and bad max_tokens are 400s the SDK raises as BadRequest."""
    client = sdk(mock_large.url)
    with pytest.raises(openai.BadRequestError, match="messages"):
        client.chat.completions.create(model="x", messages=[])
    with pytest.raises(openai.BadRequestError, match="max_tokens"):
        ask(client, "hi", max_tokens=0)
    raw = httpx.post(mock_large.url + "/v1/chat/completions", content=b"{not json")
    assert raw.status_code == 400
    assert raw.json()["error"]["type"] == "invalid_request_error"
    assert httpx.get(mock_large.url + "/v1/nothing").status_code == 404
    assert httpx.get(mock_large.url + "/v1/chat/completions").status_code == 405
    assert httpx.get(mock_large.url + "/health").json() == {"status": "ok"}


def test_error_rate_injects_a_mix_of_429_500_503() -> None:
    """--error-rate 0.5 fails about half the calls with 429, 500 and 503 and the rest succeed."""
    faults = FaultConfig(error_rate=0.5)
    with (
        MockLLMServer("large", seed=1, time_scale=0, faults=faults) as server,
        httpx.Client() as http,
    ):
        statuses = [
            http.post(
                server.url + "/v1/chat/completions",
                json={
                    "model": "x",
                    "messages": [{"role": "user", "content": "hi"}],
                    "max_tokens": 2,
                },
            ).status_code
            for _ in range(400)
        ]
    failed = [s for s in statuses if s != 200]
    assert 150 <= len(failed) <= 250
    assert set(failed) == {429, 500, 503}


def test_hung_calls_never_answer_until_the_client_gives_up() -> None:
    """--hang-rate 1 makes every call hang; the client's timeout is what ends it."""
    with MockLLMServer("large", time_scale=0, faults=FaultConfig(hang_rate=1.0)) as server:
        started = time.monotonic()
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(
                server.url + "/v1/chat/completions",
                json={"model": "x", "messages": [{"role": "user", "content": "hi"}]},
                timeout=httpx.Timeout(5.0, read=0.3),
            )
        assert time.monotonic() - started >= 0.3


def test_slow_calls_take_slow_factor_times_longer() -> None:
    """--slow-rate 1 --slow-factor 5 makes a call take several times the normal latency."""
    body = {"model": "x", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}

    def timed(server: MockLLMServer) -> float:
        with httpx.Client() as http:
            started = time.perf_counter()
            http.post(server.url + "/v1/chat/completions", json=body).raise_for_status()
            return time.perf_counter() - started

    with (
        MockLLMServer("large", time_scale=0.2) as normal,
        MockLLMServer(
            "large", time_scale=0.2, faults=FaultConfig(slow_rate=1.0, slow_factor=5)
        ) as slow,
    ):
        ratio = timed(slow) / timed(normal)
    assert ratio > 3


async def test_requests_beyond_the_slots_queue() -> None:
    """With twice as many concurrent requests as slots, the second half waits for a free slot."""
    body = {"model": "x", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    # time_scale 0.5: each request holds its slot for about 90 ms (TTFT base 180 ms x 0.5).
    async with (
        MockLLMServer("large", time_scale=0.5) as server,
        httpx.AsyncClient(limits=httpx.Limits(max_connections=200)) as http,
    ):

        async def one() -> float:
            started = time.perf_counter()
            reply = await http.post(server.url + "/v1/chat/completions", json=body, timeout=30)
            reply.raise_for_status()
            return time.perf_counter() - started

        await one()  # warm the connection pool
        latencies = sorted(await asyncio.gather(*(one() for _ in range(2 * LARGE.slots))))
    # Sleeps never end early, so with queueing the second wave needs at least two service
    # times; without it every request would take about one.
    assert min(latencies[: LARGE.slots]) >= 0.085
    assert min(latencies[LARGE.slots :]) >= 0.17


@pytest.fixture
def cli_server() -> Iterator[tuple[subprocess.Popen[str], str]]:
    """A real `shadow mock-llm` process on a free port, and its printed URL."""
    command = [sys.executable, "-m", "shadow", "mock-llm", "--port", "0", "--profile", "routed"]
    with subprocess.Popen(
        [*command, "--time-scale", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:\d+", line)
        assert match, line
        try:
            yield proc, match.group(0)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()


def test_cli_serves_and_stops_cleanly_on_sigterm(
    sdk: Sdk,
    cli_server: tuple[subprocess.Popen[str], str],
) -> None:
    """`shadow mock-llm --port 0` prints its URL, serves the SDK, and exits 0 on SIGTERM."""
    proc, url = cli_server
    client = sdk(url)
    assert ask(client, "short one", max_tokens=2).model == "shadow-small"
    proc.terminate()
    assert proc.wait(15) == 0


def test_cli_port_in_use_is_a_one_line_error(mock_large: MockLLMServer) -> None:
    """Asking for a taken port exits 2 with one line that names the port and the fix."""
    result = subprocess.run(
        [sys.executable, "-m", "shadow", "mock-llm", "--port", str(mock_large.port)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert f"port {mock_large.port}" in lines[0]
    assert "already in use" in lines[0]
