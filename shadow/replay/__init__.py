"""Replay and mirror: fan each captured request out to the arms, paced, guarded and priced.

The stages, in the order a request meets them: a source (:mod:`~shadow.replay.sources`) yields
records, :mod:`~shadow.replay.pacing` says when each is due, the rails
(:mod:`~shadow.replay.breaker`, :mod:`~shadow.replay.validators`, the budget) decide whether
it is sent and whether its answer counts, :mod:`~shadow.replay.targets` sends it to an arm,
:mod:`~shadow.replay.pricing` prices the attempt, and the results go to :mod:`shadow.results`.
:class:`Replayer` reads a finished capture; :class:`Mirror` follows a live topic.
"""

from __future__ import annotations

from shadow.replay.mirror import Mirror
from shadow.replay.replayer import Replayer, ReplayStats

__all__ = ["Mirror", "ReplayStats", "Replayer"]
