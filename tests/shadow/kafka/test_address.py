"""KafkaAddress: the one kafka://HOST:PORT[,HOST:PORT]/TOPIC form, parsed, printed, refused."""

from __future__ import annotations

import pytest

from shadow.errors import UsageError
from shadow.kafka.address import KafkaAddress


@pytest.mark.parametrize(
    ("text", "bootstrap", "topic"),
    [
        ("kafka://127.0.0.1:9092/shadow.traces", "127.0.0.1:9092", "shadow.traces"),
        ("kafka://a:1,b.example:65535/t_1-x", "a:1,b.example:65535", "t_1-x"),
        ("kafka://[::1]:9092/t", "[::1]:9092", "t"),
    ],
)
def test_parse_reads_the_servers_and_topic_and_str_gives_the_text_back(
    text: str, bootstrap: str, topic: str
) -> None:
    """A valid address parses into its parts and prints as it was written."""
    address = KafkaAddress.parse(text)
    assert (address.bootstrap, address.topic) == (bootstrap, topic)
    assert address.servers == bootstrap.split(",")
    assert str(address) == text


@pytest.mark.parametrize(
    "text",
    [
        "kafka://127.0.0.1/topic",
        "kafka://127.0.0.1:9092/",
        "kafka://127.0.0.1:9092/bad topic",
        "kafka://127.0.0.1:0/topic",
        "kafka://127.0.0.1:99999/topic",
        "kafka://a:1,,b:2/topic",
        "kafka://127.0.0.1:9092/a/b",
        "127.0.0.1:9092/topic",
    ],
)
def test_a_malformed_address_is_one_line_naming_it_and_the_form(text: str) -> None:
    """Anything else is a UsageError that quotes the text and states the accepted form."""
    with pytest.raises(UsageError, match=r"kafka://HOST:PORT\[,HOST:PORT\]/TOPIC") as info:
        KafkaAddress.parse(text)
    assert repr(text) in str(info.value)
    assert "\n" not in str(info.value)


def test_is_address_tells_an_address_from_a_file_name() -> None:
    """Only text that starts with kafka:// is meant as an address (valid or not)."""
    assert KafkaAddress.is_address("kafka://nowhere")
    assert not KafkaAddress.is_address("traces.jsonl")
