"""shadow mock-llm speaks Anthropic Messages: the real anthropic SDK, plain and streamed."""

from __future__ import annotations

from collections.abc import Iterator

import anthropic
import httpx
import openai
import pytest

from shadow.sim import MockLLMServer
from shadow.wire.tokens import count_tokens

TOOLS: list[anthropic.types.ToolParam] = [
    {
        "name": "get_weather",
        "description": "The weather in a city",
        "input_schema": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city", "days"],
        },
    }
]


@pytest.fixture
def claude(mock_large: MockLLMServer) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=mock_large.url, api_key="sk-ant", max_retries=0) as client:
        yield client


def test_messages_answer_with_text_usage_and_the_chat_answer(
    claude: anthropic.Anthropic, mock_large: MockLLMServer
) -> None:
    """A message answers as the SDK parses it, with the same text and tokens as the same
    conversation sent to Chat Completions."""
    message = claude.messages.create(
        model="claude-haiku",
        max_tokens=30,
        extra_body={"temperature": 0},  # this SDK has no temperature argument
        system="you review code",
        messages=[{"role": "user", "content": "explain the retry loop"}],
    )
    chat = openai.OpenAI(base_url=mock_large.url + "/v1", api_key="k", max_retries=0)
    same = chat.chat.completions.create(
        model="gpt-4o",
        max_tokens=30,
        temperature=0,
        messages=[
            {"role": "system", "content": "you review code"},
            {"role": "user", "content": "explain the retry loop"},
        ],
    )
    block = message.content[0]
    assert isinstance(block, anthropic.types.TextBlock)
    assert block.text == same.choices[0].message.content
    assert message.model == "shadow-large"
    assert message.stop_reason == ("max_tokens" if same.choices[0].finish_reason == "length"
                                   else "end_turn")  # fmt: skip
    assert message.usage.input_tokens == count_tokens("you review code explain the retry loop")
    assert message.usage.output_tokens == count_tokens(block.text)
    assert message.usage.cache_read_input_tokens == 0
    assert message.usage.cache_creation_input_tokens == 0


def test_streamed_message_reassembles_to_the_plain_one(claude: anthropic.Anthropic) -> None:
    """The stream's events are the documented ones, one text_delta per token; the SDK's
    final message has the plain answer's text and usage."""
    kwargs = {
        "model": "claude-haiku",
        "max_tokens": 12,
        "extra_body": {"temperature": 0},
        "messages": [{"role": "user", "content": "explain the serializer"}],
    }
    plain = claude.messages.create(**kwargs)  # type: ignore[call-overload]
    events: list[str] = []
    deltas: list[str] = []
    with claude.messages.stream(**kwargs) as stream:  # type: ignore[arg-type]
        for event in stream:
            events.append(event.type)
            if event.type == "content_block_delta" and event.delta.type == "text_delta":
                deltas.append(event.delta.text)
        final = stream.get_final_message()
    assert events[0] == "message_start"
    assert events[-1] == "message_stop"
    assert {"content_block_start", "content_block_stop", "message_delta"} <= set(events)
    assert [b.text for b in final.content if b.type == "text"] == [
        b.text for b in plain.content if b.type == "text"
    ]
    assert "".join(deltas) == final.content[0].text  # type: ignore[union-attr]
    assert len(deltas) == final.usage.output_tokens == plain.usage.output_tokens == 12
    assert final.usage.input_tokens == plain.usage.input_tokens == 3
    assert final.stop_reason == "max_tokens"


def test_tool_use_streams_input_json_deltas(claude: anthropic.Anthropic) -> None:
    """With tools and tool_choice any, the answer is a tool_use block whose input follows the
    schema, streamed as input_json_delta pieces; after the tool result, text."""
    ask = [{"role": "user", "content": "weather in Lisbon?"}]
    with claude.messages.stream(
        model="c", max_tokens=50, tools=TOOLS, tool_choice={"type": "any"},
        messages=ask,  # type: ignore[arg-type]
    ) as stream:  # fmt: skip
        pieces = [
            e.delta.partial_json
            for e in stream
            if e.type == "content_block_delta" and e.delta.type == "input_json_delta"
        ]
        final = stream.get_final_message()
    call = final.content[0]
    assert isinstance(call, anthropic.types.ToolUseBlock)
    assert final.stop_reason == "tool_use"
    assert call.name == "get_weather"
    assert isinstance(call.input, dict)
    assert set(call.input) == {"city", "days"}
    assert isinstance(call.input["city"], str)
    assert isinstance(call.input["days"], int)
    assert len(pieces) == final.usage.output_tokens > 1
    answered = claude.messages.create(
        model="c", max_tokens=10, tools=TOOLS,
        messages=[*ask, {"role": "assistant", "content": final.content},  # type: ignore[list-item]
                  {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id,
                                                "content": "sunny"}]}],
    )  # fmt: skip
    assert answered.stop_reason in ("end_turn", "max_tokens")
    assert answered.content[0].type == "text"


def test_cache_control_writes_then_reads_the_prefix(claude: anthropic.Anthropic) -> None:
    """A cache_control breakpoint writes its prefix the first time and reads it after;
    input_tokens counts the rest."""
    system: list[anthropic.types.TextBlockParam] = [
        {
            "type": "text",
            "text": "long shared context " * 50,
            "cache_control": {"type": "ephemeral"},
        }
    ]

    def ask(question: str) -> anthropic.types.Usage:
        return claude.messages.create(
            model="c", max_tokens=5, system=system,
            messages=[{"role": "user", "content": question}],
        ).usage  # fmt: skip

    first, second = ask("one question here"), ask("another one")
    assert (first.cache_creation_input_tokens, first.cache_read_input_tokens) == (150, 0)
    assert first.input_tokens == 3
    assert (second.cache_creation_input_tokens, second.cache_read_input_tokens) == (0, 150)
    assert second.input_tokens == 2


def test_errors_and_auth_in_anthropic_shape(mock_large: MockLLMServer) -> None:
    """Bad requests are Anthropic errors the SDK raises; a key in another API's header is a
    401; anthropic-version is required."""
    url = mock_large.url + "/v1/messages"
    with (
        anthropic.Anthropic(base_url=mock_large.url, api_key="k", max_retries=0) as client,
        pytest.raises(anthropic.BadRequestError, match="max_tokens"),
    ):
        client.messages.create(
            model="c", max_tokens=0, messages=[{"role": "user", "content": "hi"}]
        )
    body = {"model": "c", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    version = {"anthropic-version": "2023-06-01"}
    wrong = httpx.post(url, json=body, headers={**version, "x-goog-api-key": "k"})
    assert wrong.status_code == 401
    assert wrong.json()["error"]["type"] == "authentication_error"
    assert httpx.post(url, json=body, headers={"x-api-key": "k"}).status_code == 400
    ok = httpx.post(url, json=body, headers={**version, "x-api-key": "k"})
    assert ok.status_code == 200
    assert ok.json()["type"] == "message"
