"""Replay and mirror: fan each captured request out to the arms, paced, guarded and priced.

The stages, in the order a request meets them: a source (:mod:`~shadow.replay.sources`) yields
records, :mod:`~shadow.replay.pacing` says when each is due (:mod:`~shadow.replay.plan` holds a
replay's whole schedule), the rails (:mod:`~shadow.replay.breaker`,
:mod:`~shadow.replay.validators`, the budget) decide whether it is sent and whether its answer
counts, :mod:`~shadow.replay.targets` sends it to an arm, :mod:`~shadow.replay.pricing` prices
the attempt, and the results go to :mod:`shadow.results`. One fan-out
(:mod:`~shadow.replay.scheduler`) does the sending for both :class:`Replayer` (a finished
capture) and :class:`Mirror` (a live topic); a :class:`RunSession` owns a run's life, and
:mod:`~shadow.replay.jobs` runs a whole replay or mirror from its settings.
"""

from __future__ import annotations

from shadow.replay.jobs import MirrorJob, ReplayJob, run_mirror, run_replay
from shadow.replay.mirror import Mirror
from shadow.replay.plan import Pacing, ReplayPlan
from shadow.replay.replayer import Replayer
from shadow.replay.scheduler import FanOut
from shadow.replay.session import RunSession
from shadow.replay.stats import ArmStats, ReplayStats

__all__ = [
    "ArmStats",
    "FanOut",
    "Mirror",
    "MirrorJob",
    "Pacing",
    "ReplayJob",
    "ReplayPlan",
    "ReplayStats",
    "Replayer",
    "RunSession",
    "run_mirror",
    "run_replay",
]
