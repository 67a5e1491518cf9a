"""The one Kafka address type: ``kafka://HOST:PORT[,HOST:PORT]/TOPIC``.

Every command that takes a Kafka location (the replay and mirror SOURCE, the capture sink)
reads it through :meth:`KafkaAddress.parse` and prints it with ``str()``, so the form, its
validation and its error message are written once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from shadow.errors import UsageError

__all__ = ["KAFKA_FORM", "KafkaAddress"]

KAFKA_FORM = (
    "kafka://HOST:PORT[,HOST:PORT]/TOPIC (topic names use letters, digits, '.', '_' and '-')"
)
"""The accepted form, as error messages state it."""

_SCHEME = "kafka://"
_ADDRESS = re.compile(r"kafka://(?P<bootstrap>[^/]+)/(?P<topic>[A-Za-z0-9._-]{1,249})")
_HOST_PORT = re.compile(r"(?P<host>[A-Za-z0-9._-]+|\[[0-9A-Fa-f:]+\]):(?P<port>\d{1,5})")


@dataclass(frozen=True, slots=True)
class KafkaAddress:
    """A topic on a Kafka cluster.

    Build it from text with :meth:`parse` (which validates); the constructor takes parts that
    are already trusted, such as configuration values.
    """

    bootstrap: str
    """The bootstrap servers, ``HOST:PORT[,HOST:PORT]``."""
    topic: str

    @classmethod
    def parse(cls, text: str) -> KafkaAddress:
        """Read ``kafka://HOST:PORT[,HOST:PORT]/TOPIC``.

        Raises:
            UsageError: ``text`` is not of that form (or a port is out of range).
        """
        match = _ADDRESS.fullmatch(text)
        hosts = match["bootstrap"].split(",") if match else []
        if not match or not all(_valid_host_port(host) for host in hosts):
            raise UsageError(f"{text!r} is not a Kafka address; expected {KAFKA_FORM}")
        return cls(match["bootstrap"], match["topic"])

    @staticmethod
    def is_address(text: str) -> bool:
        """Whether ``text`` is meant as an address (starts with ``kafka://``), valid or not."""
        return text.startswith(_SCHEME)

    @property
    def servers(self) -> list[str]:
        """The bootstrap servers one by one, as Kafka clients take them."""
        return self.bootstrap.split(",")

    def __str__(self) -> str:
        return f"{_SCHEME}{self.bootstrap}/{self.topic}"


def _valid_host_port(text: str) -> bool:
    match = _HOST_PORT.fullmatch(text)
    return match is not None and 0 < int(match["port"]) < 65536
