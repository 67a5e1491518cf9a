"""KafkaSink failures: an unreachable cluster is a SinkError within the delivery bound."""

from __future__ import annotations

import socket
import time

import pytest

from shadow.config import KafkaConfig
from shadow.errors import CaptureError, SinkError
from shadow.kafka.producer import KafkaSink


async def test_unreachable_bootstrap_is_a_sink_error_naming_it_and_close_is_safe_twice() -> None:
    """A closed port fails the batch at once with a SinkError naming the address; close is safe."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed when the block ends: nothing listens there
    bootstrap = f"127.0.0.1:{port}"
    async with KafkaSink(
        KafkaConfig(bootstrap=bootstrap, topic="shadow.traces"), delivery_timeout_s=1.0
    ) as sink:
        assert sink.name == f"kafka://{bootstrap}/shadow.traces"
        started = time.monotonic()
        with pytest.raises(SinkError, match=rf"^cannot connect to Kafka at {bootstrap}: ") as info:
            await sink.send_batch([(b"k", b"v")])
        assert time.monotonic() - started < 10
        assert isinstance(info.value, CaptureError)
    await sink.aclose()  # a second close after the block's is a no-op
