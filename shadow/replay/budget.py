"""The budget cap (``safety.max_cost_usd``) and what makes it enforceable: a price per model.

A budget counts priced cost, so an attempt on a model without a price would spend money the
cap never sees. Hence, when a budget is set (and ``allow_unpriced`` is not):

- **before a run**, :func:`check_priced` refuses to start when a model an arm will use has no
  price. The model a request will use is :func:`request_model`: the arm's ``model`` override
  (``body_overrides.model``) if it has one, else the ``model`` of the captured JSON body. A
  request that names no model cannot be checked before it is sent; the run-time rule covers it.
- **during a run** (:class:`~shadow.replay.scheduler.FanOut`), a request about to go to an
  unpriced model, or an answer that reports a model with no price (or no model, with tokens),
  makes the budget unenforceable: the run stops sending as it does when the budget is spent,
  its status is ``budget_exhausted``, and the summary says
  ``cannot enforce the budget: model X has no price``.

With ``allow_unpriced`` the run goes on: the budget caps the priced attempts only, and the
unpriced ones are counted per model in the run's stats (and named by the analyzer).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import msgspec

from shadow.config import ArmConfig
from shadow.errors import UsageError
from shadow.replay.pricing import PricingTable
from shadow.trace.record import TraceRecord

__all__ = [
    "NO_MODEL",
    "UnpricedModelsError",
    "check_priced",
    "model_override",
    "planned_models",
    "request_model",
    "unenforceable_reason",
]

NO_MODEL = "(no model reported)"
"""How an answer with tokens but without a model name is named among unpriced models."""


def model_override(arm: ArmConfig) -> str | None:
    """The model ``arm`` asks for in every request (``body_overrides.model``), if it sets one."""
    override = arm.body_overrides.get("model")
    return override if isinstance(override, str) and override else None


def request_model(record: TraceRecord, arm: ArmConfig) -> str | None:
    """The model ``record``'s request will ask ``arm`` for, or None when it names none."""
    override = model_override(arm)
    if override is not None:
        return override
    body = record.request.body_bytes()
    if body[:1] != b"{":
        return None
    try:
        document = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return None
    model = document.get("model") if isinstance(document, dict) else None
    return model if isinstance(model, str) and model else None


def planned_models(
    records: Iterable[TraceRecord], arms: Mapping[str, ArmConfig]
) -> dict[str, dict[str, int]]:
    """Per arm name, the models its requests will ask for and how many requests each."""
    planned: dict[str, dict[str, int]] = {name: {} for name in arms}
    for record in records:
        for name, arm in arms.items():
            model = request_model(record, arm)
            if model is not None:
                counts = planned[name]
                counts[model] = counts.get(model, 0) + 1
    return planned


class UnpricedModelsError(UsageError):
    """A budget is set but models an arm will use have no price (see the module docstring)."""

    def __init__(self, unpriced: Mapping[str, Mapping[str, int]]) -> None:
        self.unpriced = {arm: dict(models) for arm, models in unpriced.items() if models}
        """Per arm, each unpriced model and the number of requests that would use it."""
        first = min(model for models in self.unpriced.values() for model in models)
        super().__init__(
            f"max_cost_usd cannot be enforced: {self.describe()}; add a price for {self.it()} "
            f'([pricing."{first}"] in the config, or a pricing file), or allow_unpriced',
            setting="max_cost_usd",
        )

    def describe(self) -> str:
        """``arm candidate uses model 'm' (3 requests), which has no price`` for every arm."""
        parts = []
        for arm, models in sorted(self.unpriced.items()):
            names = ", ".join(
                f"{model!r} ({n} request{'s' if n != 1 else ''})"
                for model, n in sorted(models.items())
            )
            what = "model" if len(models) == 1 else "models"
            parts.append(f"arm {arm} uses {what} {names}")
        return "; ".join(parts) + (
            ", which has no price" if self._one() else ", which have no price"
        )

    def _one(self) -> bool:
        return len({model for models in self.unpriced.values() for model in models}) == 1

    def it(self) -> str:
        """``it`` or ``them``: the unpriced models as a pronoun, for the advice that follows."""
        return "it" if self._one() else "them"


def check_priced(pricing: PricingTable, planned: Mapping[str, Mapping[str, int]]) -> None:
    """Raise :class:`UnpricedModelsError` when a planned model has no price in ``pricing``."""
    unpriced = {
        arm: {model: n for model, n in models.items() if pricing.price(model) is None}
        for arm, models in planned.items()
    }
    if any(unpriced.values()):
        raise UnpricedModelsError(unpriced)


def unenforceable_reason(model: str) -> str:
    """The summary's line for a budget stopped because ``model`` has no price."""
    return f"cannot enforce the budget: model {model!r} has no price"
