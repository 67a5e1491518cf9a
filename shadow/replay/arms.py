"""The arms of a replay: ``baseline``, ``candidate``, and ``baseline_repeat`` for the noise floor.

``baseline_repeat`` sends every request to the baseline a second time, so the analyzer can tell
a candidate's difference from the baseline's own run-to-run noise; it is the baseline's
target under another arm name (:class:`AliasTarget`), sharing its connections.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from shadow.config import ArmConfig
from shadow.replay.targets import Attempt, HttpTarget, Target, untranslatable
from shadow.trace.record import TraceRecord
from shadow.wire.routes import RouteAllowList

__all__ = ["AliasTarget", "replay_arms", "replay_targets"]


def replay_arms(*, repeat_baseline: bool) -> tuple[str, ...]:
    """The arm names of a replay, in the order they are sent to."""
    return ("baseline", "candidate") + (("baseline_repeat",) if repeat_baseline else ())


def replay_targets(
    arms: Mapping[str, ArmConfig],
    *,
    repeat_baseline: bool,
    routes: RouteAllowList | None = None,
    pass_headers: Sequence[str] = (),
) -> dict[str, Target]:
    """HTTP targets for ``arms["baseline"]`` and ``arms["candidate"]`` (and the repeat), each
    sending only what ``routes`` admits (default: :data:`shadow.wire.routes.DEFAULT_ALLOW`)."""
    allow = routes if routes is not None else RouteAllowList()
    baseline = HttpTarget("baseline", arms["baseline"], routes=allow, pass_headers=pass_headers)
    targets: dict[str, Target] = {
        "baseline": baseline,
        "candidate": HttpTarget(
            "candidate", arms["candidate"], routes=allow, pass_headers=pass_headers
        ),
    }
    if repeat_baseline:
        targets["baseline_repeat"] = AliasTarget("baseline_repeat", baseline)
    return targets


class AliasTarget:
    """Another target under a different arm name; closing the alias leaves the target open."""

    def __init__(self, arm: str, target: Target) -> None:
        self.arm = arm
        self._target = target

    def untranslatable(self, record: TraceRecord) -> str | None:
        """What the aliased target cannot translate of ``record`` (None: nothing)."""
        return untranslatable(self._target, record)

    async def send(self, record: TraceRecord, *, due: float) -> Attempt:
        """Send through the aliased target."""
        return await self._target.send(record, due=due)

    async def aclose(self) -> None:
        """Nothing to release: the aliased target is closed by its owner."""
