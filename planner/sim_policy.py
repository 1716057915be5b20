"""The planner's decisions as a routing policy for the serving simulator (`simulator.policy.Policy`).

Each simulated request becomes a `models.api.Query` (prompt tokens, task, tenant); the forecaster and the
one cost model price every feasible option (`planner.options.OptionSet`), and the request goes to the
option with the best ``quality - lambda * usd`` among those the scenario can serve (device targets present in
the fleet, per-token services) and, when an SLO is given, whose p90 latency meets it. `lambda` is a static
shadow price: 0 without a budget (best quality, ties to the cheaper option), else the smallest price whose
mean planned spend per request on the workload's first chunk fits the budget per request (bisection) -- the
offline analogue of the router's pacing. The simulated tokens stay the workload's own; the forecast only
guides the decision, as in production.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from models.api import Forecaster, Query
from planner.catalog import Catalog, PriceModel
from planner.errors import FailedPreconditionError
from planner.options import OptionArrays, OptionSet
from simulator.costmodel import CostModel
from simulator.policy import Assignment, OptionKey
from simulator.workload import RequestChunk

TIE_BREAK = 1e-9
"""Quality per USD always charged, so equal-quality options resolve to the cheaper one."""


class PlannerSimPolicy:
    """Route simulated requests with the planner's scoring (see the module docstring)."""

    def __init__(
        self,
        catalog: Catalog,
        cost_model: CostModel,
        forecaster: Forecaster,
        fleet_targets: Sequence[str],
        *,
        budget_usd_per_request: float = 0.0,
        latency_slo_s: float = 0.0,
    ) -> None:
        self.forecaster = forecaster
        full = OptionSet.build(catalog, cost_model, forecaster.tiers)
        keep = [
            i
            for i, o in enumerate(full.options)
            if catalog.target(o.target).price_model is PriceModel.PER_TOKEN or o.target in fleet_targets
        ]
        if not keep:
            raise FailedPreconditionError(
                f"the planner has no option on this fleet ({list(fleet_targets)}) or on a per-token service"
            )
        self.option_set = full
        self.keep = np.asarray(keep, np.intp)
        self._options = tuple(
            OptionKey(o.tier, o.strategy, o.target, catalog.target(o.target).region)
            for o in (full.options[i] for i in keep)
        )
        self.budget = float(budget_usd_per_request)
        self.slo = float(latency_slo_s)
        self.lam: float | None = None

    @property
    def options(self) -> tuple[OptionKey, ...]:
        return self._options

    def _arrays(self, chunk: RequestChunk) -> OptionArrays:
        queries = [
            Query(prompt_tokens=int(n), task=chunk.tasks[int(t)], tenant=chunk.tenants[int(g)])
            for n, t, g in zip(chunk.input_tokens, chunk.task_index, chunk.tenant, strict=True)
        ]
        arrays = self.option_set.price(self.forecaster.forecast(queries))
        return OptionArrays(**{k: getattr(arrays, k)[:, self.keep] for k in arrays.__dataclass_fields__})

    def _choose(self, a: OptionArrays, lam: float) -> np.ndarray:
        score = a.quality - (lam + TIE_BREAK) * a.usd
        if self.slo > 0:
            late = a.latency_p90_s > self.slo
            score = np.where(late & ~late.all(axis=1, keepdims=True), -np.inf, score)
        return np.asarray(np.argmax(score, axis=1), np.int64)

    def _price(self, a: OptionArrays) -> float:
        if self.budget <= 0:
            return 0.0
        rows = np.arange(a.usd.shape[0])

        def spend(lam: float) -> float:
            return float(a.usd[rows, self._choose(a, lam)].mean())

        if spend(0.0) <= self.budget:
            return 0.0
        lo, hi = 0.0, 1.0
        while spend(hi) > self.budget and hi < 1e12:
            hi *= 10.0
        for _ in range(50):
            mid = 0.5 * (lo + hi)
            lo, hi = (lo, mid) if spend(mid) <= self.budget else (mid, hi)
        return hi

    def assign(self, chunk: RequestChunk, rng: np.random.Generator) -> Assignment:
        a = self._arrays(chunk)
        if self.lam is None:
            self.lam = self._price(a)
        choice = self._choose(a, self.lam)
        return Assignment(choice, a.quality[np.arange(len(choice)), choice])
