"""Waiting for Kafka at start: try again with a capped exponential backoff until it answers.

A long-running process that needs Kafka (the live mirror) does what the capture sidecar does
when its broker is down at start: it comes up anyway, says so, and keeps trying, the delay
doubling from :data:`FIRST_RETRY_S` to at most :data:`MAX_RETRY_S` (the sidecar's spool
drainer uses the same schedule: ``capture/tee.py``'s ``retry_min_s`` and ``retry_max_s``).
"Answers" means what a Kafka client's start needs: one of the bootstrap servers accepted a
connection and returned the cluster metadata (aiokafka's own bootstrap, so TLS or SASL
settings would be exercised the same way).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from dataclasses import dataclass

from shadow.kafka.address import KafkaAddress

__all__ = ["FIRST_RETRY_S", "MAX_RETRY_S", "Backoff", "wait_for_kafka"]

log = logging.getLogger("shadow.kafka.retry")

FIRST_RETRY_S = 0.2
MAX_RETRY_S = 5.0
_ATTEMPT_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Backoff:
    """Delays between attempts: ``first_s``, doubling, capped at ``max_s``."""

    first_s: float = FIRST_RETRY_S
    max_s: float = MAX_RETRY_S

    def delays(self) -> Iterator[float]:
        """The delay before each further attempt, forever."""
        delay = self.first_s
        while True:
            yield delay
            delay = min(delay * 2, self.max_s)


class _Quiet(logging.Filter):
    """Keeps aiokafka's own line per failed connection out of the output while we retry."""

    def filter(self, record: logging.LogRecord) -> bool:
        return False


async def _answers(address: KafkaAddress, timeout_s: float) -> str | None:
    """None when a bootstrap server returned cluster metadata; else why not."""
    from aiokafka.client import AIOKafkaClient
    from aiokafka.errors import KafkaConnectionError, KafkaError

    client = AIOKafkaClient(
        bootstrap_servers=address.servers,
        client_id="shadow-probe",
        request_timeout_ms=max(1000, int(timeout_s * 1000)),
    )
    try:
        await asyncio.wait_for(client.bootstrap(), timeout_s)
    except TimeoutError:
        return f"no answer within {timeout_s:g} s"
    except KafkaConnectionError:
        return "no connection to any bootstrap server"
    except (KafkaError, OSError) as exc:
        return str(exc) or type(exc).__name__
    finally:
        await client.close()
    return None


async def wait_for_kafka(
    address: KafkaAddress,
    *,
    backoff: Backoff | None = None,
    attempt_timeout_s: float = _ATTEMPT_TIMEOUT_S,
) -> int:
    """Return once Kafka at ``address`` answers; the number of failed attempts before that.

    Each failure is logged (a warning naming the servers, the reason and the next delay) and
    retried after the next delay of ``backoff``; cancel the call to give up.
    """
    delays = (backoff or Backoff()).delays()
    quiet = _Quiet()
    aiokafka_log = logging.getLogger("aiokafka.client")
    aiokafka_log.addFilter(quiet)
    failures = 0
    try:
        while (reason := await _answers(address, attempt_timeout_s)) is not None:
            failures += 1
            delay = next(delays)
            log.warning(
                "Kafka at %s does not answer (%s); trying again in %.1f s",
                address.bootstrap,
                reason,
                delay,
            )
            await asyncio.sleep(delay)  # the backoff between attempts, not a synchronisation
    finally:
        aiokafka_log.removeFilter(quiet)
    if failures:
        log.warning("Kafka at %s answers after %d failed attempts", address.bootstrap, failures)
    return failures
