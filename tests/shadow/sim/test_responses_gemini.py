"""shadow mock-llm speaks OpenAI Responses (the real openai SDK) and Gemini (its documented
JSON and SSE shapes over httpx), with the same answers and tokens as Chat Completions."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai

from shadow.sim import MockLLMServer
from shadow.wire.tokens import count_tokens

SYSTEM, QUESTION = "you review code", "explain the retry loop"


def chat_answer(server: MockLLMServer, max_tokens: int) -> str:
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="k", max_retries=0)
    reply = client.chat.completions.create(
        model="gpt-4o", max_tokens=max_tokens, temperature=0,
        messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTION}],
    )  # fmt: skip
    return reply.choices[0].message.content or ""


def test_responses_plain_and_streamed(mock_large: MockLLMServer) -> None:
    """output_text and usage as the SDK parses them; the stream's events end in
    response.completed with the same text and usage."""
    client = openai.OpenAI(base_url=mock_large.url + "/v1", api_key="k", max_retries=0)
    kwargs: dict[str, Any] = {"model": "gpt-4o", "instructions": SYSTEM, "input": QUESTION,
                              "temperature": 0, "max_output_tokens": 700}  # fmt: skip
    plain = client.responses.create(**kwargs)
    assert plain.output_text == chat_answer(mock_large, 700)
    assert plain.status == "completed"
    assert plain.usage is not None
    assert plain.usage.input_tokens == count_tokens(f"{SYSTEM} {QUESTION}")
    assert plain.usage.output_tokens == count_tokens(plain.output_text)
    events = list(client.responses.create(**kwargs, stream=True))
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    done = events[-1].response
    assert "".join(deltas) == done.output_text == plain.output_text
    assert done.usage is not None
    assert len(deltas) == done.usage.output_tokens == plain.usage.output_tokens
    cut = client.responses.create(**{**kwargs, "max_output_tokens": 3})
    assert cut.status == "incomplete"
    assert cut.incomplete_details is not None
    assert cut.incomplete_details.reason == "max_output_tokens"


def test_responses_function_call(mock_large: MockLLMServer) -> None:
    """tool_choice required gives a function_call item with JSON arguments."""
    client = openai.OpenAI(base_url=mock_large.url + "/v1", api_key="k", max_retries=0)
    tool = {"type": "function", "name": "lookup", "parameters": {
        "type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}}  # fmt: skip
    reply = client.responses.create(  # type: ignore[call-overload]
        model="m", input="find it", tools=[tool], tool_choice="required"
    )
    call = reply.output[0]
    assert call.type == "function_call"
    assert call.name == "lookup"
    assert set(json.loads(call.arguments)) == {"q"}


def gemini(
    server: MockLLMServer, method: str, body: dict[str, Any], query: str = ""
) -> httpx.Response:
    url = f"{server.url}/v1beta/models/gemini-2.0-flash:{method}{query}"
    return httpx.post(url, json=body, headers={"x-goog-api-key": "k"})


GEMINI_ASK = {
    "systemInstruction": {"parts": [{"text": SYSTEM}]},
    "contents": [{"role": "user", "parts": [{"text": QUESTION}]}],
    "generationConfig": {"maxOutputTokens": 700, "temperature": 0},
}


def test_gemini_generate_content_json(mock_large: MockLLMServer) -> None:
    """candidates[0].content.parts[].text, finishReason, usageMetadata and modelVersion."""
    reply = gemini(mock_large, "generateContent", GEMINI_ASK)
    assert reply.status_code == 200
    data = reply.json()
    candidate = data["candidates"][0]
    text = "".join(part["text"] for part in candidate["content"]["parts"])
    assert text == chat_answer(mock_large, 700)
    assert candidate["content"]["role"] == "model"
    assert candidate["finishReason"] == "STOP"
    usage = data["usageMetadata"]
    assert usage["promptTokenCount"] == count_tokens(f"{SYSTEM} {QUESTION}")
    assert usage["candidatesTokenCount"] == count_tokens(text)
    assert usage["totalTokenCount"] == usage["promptTokenCount"] + usage["candidatesTokenCount"]
    assert data["modelVersion"] == "shadow-large"


def sse_payloads(text: str) -> list[dict[str, Any]]:
    events = [e for e in text.replace("\r\n", "\n").split("\n\n") if e.strip()]
    assert all(e.startswith("data: ") for e in events)
    return [json.loads(e.removeprefix("data: ")) for e in events]


def test_gemini_stream_sse_and_json_array(mock_large: MockLLMServer) -> None:
    """alt=sse: one GenerateContentResponse per token, CRLF-framed, usage so far in each,
    finishReason on the last; without alt=sse the same responses as one JSON array."""
    ask = {**GEMINI_ASK, "generationConfig": {"maxOutputTokens": 6, "temperature": 0}}
    sse = gemini(mock_large, "streamGenerateContent", ask, "?alt=sse")
    assert sse.headers["content-type"].startswith("text/event-stream")
    assert "\r\n\r\n" in sse.text
    chunks = sse_payloads(sse.text)
    plain = gemini(mock_large, "generateContent", ask).json()
    text = "".join(p["text"] for c in chunks for p in c["candidates"][0]["content"]["parts"])
    assert text == plain["candidates"][0]["content"]["parts"][0]["text"]
    assert len(chunks) == 6
    assert [c["usageMetadata"]["candidatesTokenCount"] for c in chunks] == [1, 2, 3, 4, 5, 6]
    assert chunks[-1]["candidates"][0]["finishReason"] == "MAX_TOKENS"
    assert all("finishReason" not in c["candidates"][0] for c in chunks[:-1])
    array = gemini(mock_large, "streamGenerateContent", ask).json()
    for chunk in (*array, *chunks):
        del chunk["responseId"]  # one per call
    assert array == chunks


def test_gemini_function_call_implicit_cache_and_auth(mock_large: MockLLMServer) -> None:
    """mode ANY gives a functionCall part; a second turn reads the earlier turns from the
    implicit cache; a key in another API's header is a 401 in Google's error shape."""
    schema = {"type": "OBJECT", "properties": {"n": {"type": "INTEGER"}}, "required": ["n"]}
    tools = [{"functionDeclarations": [{"name": "lookup", "parameters": schema}]}]
    ask = {**GEMINI_ASK, "tools": tools, "toolConfig": {"functionCallingConfig": {"mode": "ANY"}}}
    part = gemini(mock_large, "generateContent", ask).json()["candidates"][0]["content"]["parts"][0]
    assert part["functionCall"]["name"] == "lookup"
    assert isinstance(part["functionCall"]["args"]["n"], int)
    history = [{"role": "user", "parts": [{"text": "a fresh shared history " * 20}]},
               {"role": "model", "parts": [{"text": "ok"}]}]  # fmt: skip
    for question, cached in (("first question", None), ("second question", 81)):
        body = {"contents": [*history, {"role": "user", "parts": [{"text": question}]}]}
        usage = gemini(mock_large, "generateContent", body).json()["usageMetadata"]
        assert usage.get("cachedContentTokenCount") == cached
        assert usage["promptTokenCount"] == 83
    wrong = httpx.post(
        f"{mock_large.url}/v1beta/models/g:generateContent", json=GEMINI_ASK,
        headers={"x-api-key": "k"},
    )  # fmt: skip
    assert wrong.status_code == 401
    assert wrong.json()["error"]["status"] == "UNAUTHENTICATED"
    bad = gemini(mock_large, "generateContent", {"contents": []})
    assert bad.status_code == 400
    assert bad.json()["error"]["status"] == "INVALID_ARGUMENT"
