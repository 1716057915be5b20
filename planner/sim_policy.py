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
from dataclasses import dataclass, replace

import numpy as np

from models.api import Forecaster, Query
from planner.catalog import Catalog, PriceModel
from planner.errors import CatalogError, FailedPreconditionError
from planner.options import OptionSet
from simulator.costmodel import CostModel
from simulator.policy import Assignment, OptionKey
from simulator.workload import RequestChunk

BATCH = 1024
"""Requests priced at once (the option arrays are requests x options)."""
TIE_BREAK = 1e-9
"""Quality per USD always charged, so equal-quality options resolve to the cheaper one."""


@dataclass(frozen=True)
class _Priced:
    """The option figures the policy scores: (requests, options) arrays."""

    quality: np.ndarray
    usd: np.ndarray
    latency_p90_s: np.ndarray


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
        allowed = tuple(
            t for t in catalog.targets if t.price_model is PriceModel.PER_TOKEN or t.name in fleet_targets
        )
        try:
            self.option_set = OptionSet.build(
                replace(catalog, targets=allowed),
                cost_model,
                forecaster.tiers,
                quality_fn=getattr(forecaster, "quality_fn", None),
            )
        except (FailedPreconditionError, CatalogError) as exc:
            where = f"this fleet ({list(fleet_targets)}) or a per-token service"
            raise FailedPreconditionError(f"the planner has no option on {where}: {exc}") from None
        self._options = tuple(
            OptionKey(o.tier, o.strategy, o.target, catalog.target(o.target).region)
            for o in self.option_set.options
        )
        self.budget = float(budget_usd_per_request)
        self.slo = float(latency_slo_s)
        self.lam: float | None = None

    @property
    def options(self) -> tuple[OptionKey, ...]:
        return self._options

    def _arrays(self, chunk: RequestChunk) -> _Priced:
        """Priced options for every request of a chunk, in batches of `BATCH` (bounded memory)."""
        parts = []
        for lo in range(0, len(chunk), BATCH):
            sl = slice(lo, lo + BATCH)
            queries = [
                Query(prompt_tokens=int(n), task=chunk.tasks[int(t)], tenant=chunk.tenants[int(g)])
                for n, t, g in zip(
                    chunk.input_tokens[sl], chunk.task_index[sl], chunk.tenant[sl], strict=True
                )
            ]
            a = self.option_set.price(self.forecaster.forecast(queries))
            parts.append((a.quality, a.usd, a.latency_p90_s))
        return _Priced(*(np.concatenate([p[i] for p in parts]) for i in range(3)))

    def _choose(self, a: _Priced, lam: float) -> np.ndarray:
        score = a.quality - (lam + TIE_BREAK) * a.usd
        if self.slo > 0:
            late = a.latency_p90_s > self.slo
            score = np.where(late & ~late.all(axis=1, keepdims=True), -np.inf, score)
        return np.asarray(np.argmax(score, axis=1), np.int64)

    def _price(self, a: _Priced) -> float:
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
            first = min(len(chunk), BATCH)
            self.lam = self._price(_Priced(a.quality[:first], a.usd[:first], a.latency_p90_s[:first]))
        choice = self._choose(a, self.lam)
        return Assignment(choice, a.quality[np.arange(len(choice)), choice])
