"""Session-wide real parts: the embedded Kafka broker and simulated model servers.

Each runs on an ephemeral port on 127.0.0.1 and is shared by every test of the session.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import openai
import pytest

from shadow.kafka.broker import EmbeddedBroker
from shadow.sim import MockLLMServer

REPO = Path(__file__).resolve().parents[1]
TEST_DATA = REPO / "tests" / "data"
AZURE_CSV = TEST_DATA / "azure_llm_code_2023.csv"


@pytest.fixture(scope="session")
def broker() -> Iterator[EmbeddedBroker]:
    """The embedded Kafka-compatible broker (Tansu) on a free port."""
    with EmbeddedBroker(port=0) as running:
        yield running


@pytest.fixture(scope="session")
def mock_large() -> Iterator[MockLLMServer]:
    """mock-llm with the ``large`` profile, delays compressed 100x."""
    with MockLLMServer("large", seed=7, time_scale=0.01) as server:
        yield server


@pytest.fixture(scope="session")
def mock_routed() -> Iterator[MockLLMServer]:
    """mock-llm with the ``routed`` profile, delays compressed 100x."""
    with MockLLMServer("routed", seed=7, time_scale=0.01) as server:
        yield server


@pytest.fixture(scope="session")
def azure_csv() -> Path:
    """The public Azure LLM code trace (CC-BY 4.0) that ships in tests/data."""
    return AZURE_CSV


@pytest.fixture
def sdk() -> Iterator[Callable[[str], openai.OpenAI]]:
    """Make OpenAI SDK clients for a server's base URL; all are closed after the test."""
    clients: list[openai.OpenAI] = []

    def make(base_url: str, api_key: str = "sk-test") -> openai.OpenAI:
        client = openai.OpenAI(base_url=base_url + "/v1", api_key=api_key, max_retries=0)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()
