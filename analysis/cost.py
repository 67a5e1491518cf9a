"""Cost you can trust: which attempts had no price, whether a group's cost is complete, the
spend per month at the recorded traffic rate, and repricing a run's attempts with tiers.

Definitions (docs/architecture.md, "Metric definitions"):

- an attempt is **unpriced** when it reported tokens (``prompt_tokens + completion_tokens >
  0``) but has no ``cost_usd``: its model (or its missing model name, shown as
  :data:`~shadow.replay.budget.NO_MODEL`) has no price. Attempts with no tokens (errors,
  skips) cost nothing and are not unpriced.
- a group's cost is **complete** when none of its attempts is unpriced; an incomplete cost is
  reported as unknown (``None``), never as the sum of the priced part.
- the **spend projection** of a group (slice values and arm) is
  ``Σ cost_usd of the group's attempts / span × 30 days``, where ``span`` is
  ``max(captured_at) − min(captured_at)`` over every trace of the run (the recorded traffic
  rate of the whole run: a slice's share of traffic is kept). It is ``None`` with a reason when
  the span is 0 (one trace, or every trace captured at once), the cost is incomplete, or
  requests of the group were skipped by the breaker or the budget (their cost is unknown).

Every function takes a :class:`~analysis.sql.Queryable` (a Run) and ``by``, the slice names to
group by (none: per arm); rows without a slice group under :data:`~analysis.sql.NO_SLICE`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from analysis.sql import (
    NO_SLICE,
    ROUTE_SKIPPED_SQL,
    SKIPPED_SQL,
    Queryable,
    check_slice_names,
    slice_columns,
    sql_literal,
)
from shadow.replay.budget import NO_MODEL
from shadow.replay.pricing import PricingTable, rate_tiers

__all__ = [
    "GROUP_COST_SQL",
    "GROUP_COST_SUMS_SQL",
    "MONTH_S",
    "PRICE_COLUMNS",
    "REPRICED_COST_SQL",
    "UNPRICED_MODEL_SQL",
    "GroupCost",
    "SpendProjection",
    "UnpricedModel",
    "group_cost",
    "group_costs",
    "price_rows",
    "project_spend",
    "recorded_span",
    "spend_projection",
    "unpriced",
    "unpriced_models",
]

MONTH_S: Final = 30 * 86_400
"""A month of the projection: 30 days, in seconds."""

_UNPRICED: Final = (
    "cost_usd IS NULL AND coalesce(prompt_tokens, 0) + coalesce(completion_tokens, 0) > 0"
)


@dataclass(frozen=True, slots=True)
class UnpricedModel:
    """Attempts of one group on one model that had no price."""

    group: tuple[str, ...]
    """The slice values, in the order of ``by`` (empty without ``by``)."""
    arm: str
    model: str
    """The reported model name, or :data:`~shadow.replay.budget.NO_MODEL`."""
    attempts: int


@dataclass(frozen=True, slots=True)
class GroupCost:
    """The cost of one group (slice values and arm), and whether it is known."""

    group: tuple[str, ...]
    arm: str
    attempts: int
    unpriced_attempts: int
    skipped_requests: int
    """Requests (trace on this arm) the breaker or the budget skipped: nothing was sent."""
    priced_cost_usd: float
    """Σ cost of the priced attempts (a lower bound when the cost is incomplete)."""

    @property
    def complete(self) -> bool:
        """True when every attempt that reported tokens was priced."""
        return self.unpriced_attempts == 0

    @property
    def cost_usd(self) -> float | None:
        """The group's cost, or None when it is incomplete (never the priced part as if all)."""
        return self.priced_cost_usd if self.complete else None


@dataclass(frozen=True, slots=True)
class SpendProjection:
    """One group's spend per month at the recorded traffic rate (the module docstring)."""

    group: tuple[str, ...]
    arm: str
    cost_usd: float | None
    """The group's cost in this run (None: incomplete)."""
    span_s: float
    """The recorded span of the run's traces (max − min captured_at), seconds."""
    monthly_usd: float | None
    """``cost_usd / span_s × 30 days``, or None (then ``reason`` says why: print "n/a")."""
    reason: str | None


def unpriced(run: Queryable, by: Sequence[str] = ()) -> list[UnpricedModel]:
    """The unpriced models per group and arm with their attempt counts, most attempts first."""
    keys, params = _keys(by)
    order = ", ".join([*(f"s{i}" for i in range(len(by))), "arm", "model"])
    rows = run.records(
        f"SELECT {', '.join([*keys, 'arm'])}, coalesce(model, ${len(params) + 1}) AS model,"
        f" count(*) AS attempts FROM run_results WHERE {_UNPRICED}"
        f" GROUP BY ALL ORDER BY attempts DESC, {order}",
        [*params, NO_MODEL],
    )
    return [
        UnpricedModel(
            group=tuple(str(row[f"s{i}"]) for i in range(len(by))),
            arm=str(row["arm"]),
            model=str(row["model"]),
            attempts=int(row["attempts"]),
        )
        for row in rows
    ]


GROUP_COST_SUMS_SQL: Final = f"""
    count(*) FILTER (WHERE NOT ({SKIPPED_SQL})) AS _cost_attempts,
    count(*) FILTER (WHERE {_UNPRICED}) AS _cost_unpriced,
    count(*) FILTER (WHERE {SKIPPED_SQL} AND NOT {ROUTE_SKIPPED_SQL} AND attempt = 0)
        AS _cost_skipped,
    coalesce(sum(cost_usd), 0) AS _cost_usd
"""
"""The sums of :data:`GROUP_COST_SQL` without its histogram of unpriced models (which
:func:`analysis.aggregates.group_figures` counts per model it found by
:data:`UNPRICED_MODEL_SQL`, then puts in the row as ``_cost_unpriced_models``)."""

UNPRICED_MODEL_SQL: Final = (
    f"CASE WHEN {_UNPRICED} THEN coalesce(model, {sql_literal(NO_MODEL)}) END"
)
"""The model an attempt without a price is counted under; NULL for a priced attempt."""

GROUP_COST_SQL: Final = f"""{GROUP_COST_SUMS_SQL},
    histogram({UNPRICED_MODEL_SQL}) AS _cost_unpriced_models
"""
"""The aggregates of one group's cost over ``run_results`` (read by :func:`group_cost` and
:func:`unpriced_models`), to add to a ``GROUP BY`` of the slices and arm."""


def group_cost(group: tuple[str, ...], arm: str, row: Mapping[str, Any]) -> GroupCost:
    """The :class:`GroupCost` of a row carrying :data:`GROUP_COST_SQL`."""
    return GroupCost(
        group=group,
        arm=arm,
        attempts=int(row["_cost_attempts"]),
        unpriced_attempts=int(row["_cost_unpriced"]),
        skipped_requests=int(row["_cost_skipped"]),
        priced_cost_usd=float(row["_cost_usd"]),
    )


def unpriced_models(row: Mapping[str, Any]) -> dict[str, int]:
    """Model -> unpriced attempts of a row carrying :data:`GROUP_COST_SQL`, most first (then by
    name: the order of :func:`unpriced`)."""
    found = row.get("_cost_unpriced_models") or {}
    return dict(
        sorted(((str(k), int(v)) for k, v in found.items()), key=lambda kv: (-kv[1], kv[0]))
    )


def group_costs(run: Queryable, by: Sequence[str] = ()) -> list[GroupCost]:
    """Every group's cost and completeness, in group then arm order."""
    keys, params = _keys(by)
    rows = run.records(
        f"SELECT {', '.join([*keys, 'arm'])}, {GROUP_COST_SQL} FROM run_results"
        " GROUP BY ALL ORDER BY ALL",
        params,
    )
    return [
        group_cost(tuple(str(row[f"s{i}"]) for i in range(len(by))), str(row["arm"]), row)
        for row in rows
    ]


def recorded_span(run: Queryable) -> float:
    """The recorded span of the run's traces (max − min ``captured_at``), seconds; 0 when
    there are none."""
    span = run.records(
        "SELECT (max(captured_at) - min(captured_at)) / 1e9 AS span FROM traces WHERE run_id = $1",
        [run.run_id],
    )
    return float(span[0]["span"] or 0.0) if span else 0.0


def spend_projection(run: Queryable, by: Sequence[str] = ()) -> list[SpendProjection]:
    """Each group's spend per month at the run's recorded traffic rate, in group order."""
    return project_spend(group_costs(run, by), recorded_span(run))


def project_spend(costs: Iterable[GroupCost], span_s: float) -> list[SpendProjection]:
    """Each group's spend per month over ``span_s`` (:func:`recorded_span`), in the order of
    ``costs``."""
    projections = []
    for cost in costs:
        reason = None
        if not cost.complete:
            reason = f"cost incomplete: {cost.unpriced_attempts} unpriced attempts"
        elif cost.skipped_requests:
            reason = f"cost incomplete: {cost.skipped_requests} requests skipped"
        elif span_s <= 0:
            reason = "the recorded span of the traces is 0"
        monthly = None if reason else cost.priced_cost_usd / span_s * MONTH_S
        projections.append(
            SpendProjection(
                group=cost.group,
                arm=cost.arm,
                cost_usd=cost.cost_usd,
                span_s=span_s,
                monthly_usd=monthly,
                reason=reason,
            )
        )
    return projections


def _keys(by: Sequence[str]) -> tuple[list[str], list[str]]:
    by = list(by)
    check_slice_names(by)
    return slice_columns(by), [*by, NO_SLICE] if by else []


# -- repricing (analysis.run.Run.reprice) ---------------------------------------------------

PRICE_COLUMNS: Final = (
    "model VARCHAR, above_tokens BIGINT, input DOUBLE, output DOUBLE, cached_input DOUBLE,"
    " cache_write_input DOUBLE"
)
"""The columns of the ``prices`` table that :data:`REPRICED_COST_SQL` joins (one row per tier)."""

_PROMPT: Final = "coalesce(r.prompt_tokens, 0)"
_CACHED: Final = f"least(coalesce(r.cached_tokens, 0), {_PROMPT})"
_WRITTEN: Final = f"least(coalesce(r.cache_write_tokens, 0), {_PROMPT} - {_CACHED})"
REPRICED_COST_SQL: Final = f"""
    (({_PROMPT} - {_CACHED} - {_WRITTEN}) * p.input
     + {_CACHED} * p.cached_input
     + {_WRITTEN} * p.cache_write_input
     + coalesce(r.completion_tokens, 0) * p.output) / 1e6
"""
"""An attempt's cost from its tokens and its tier's row ``p`` of the prices table, as
:meth:`shadow.replay.pricing.PricingTable.cost` computes it: cached tokens capped at the prompt,
cache writes at the prompt left after them, the rest at the input price. Join with
``ASOF LEFT JOIN prices AS p ON p.model = r.model AND coalesce(r.prompt_tokens, 0) >
p.above_tokens``: the highest tier the prompt is above, the base row's threshold being −1."""


def price_rows(
    table: PricingTable, models: Iterable[str]
) -> tuple[list[tuple[str, int, float, float, float, float]], set[str]]:
    """Rows of the ``prices`` table for ``models`` (every tier, defaults filled), and the
    models that have no price."""
    rows = []
    unknown = set()
    for model in models:
        price = table.price(model)
        if price is None:
            unknown.add(model)
            continue
        for rates in rate_tiers(price):
            above = rates.above_tokens if rates.above_tokens else -1
            rows.append(
                (
                    model,
                    above,
                    rates.input,
                    rates.output,
                    rates.cached_input,
                    rates.cache_write_input,
                )
            )
    return rows, unknown
