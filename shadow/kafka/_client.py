"""What the producer and the consumer share: stopping a client without caring if it fails."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

__all__ = ["stop_quietly"]


async def stop_quietly(
    client: Any, log: logging.Logger, *, what: str, timeout_s: float = 5.0
) -> None:
    """Stop an aiokafka ``what`` (producer, consumer), logging at debug instead of raising."""
    try:
        await asyncio.wait_for(client.stop(), timeout_s)
    except Exception as exc:  # stopping a client whose broker is gone may fail; nothing to do
        log.debug("kafka %s stop failed: %r", what, exc)
