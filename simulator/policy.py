"""Routing policies under test: which (tier, strategy, target, region) option serves each simulated request.

A policy is anything with `options` (a tuple of `OptionKey`) and `assign(chunk, rng) -> Assignment`
(vectorised over a `RequestChunk`). `FixedPolicy` is the scenario file's fixed mix of routes per task; the
planner plugs in its own decisions through the same protocol (the simulator imports nothing of the planner
but the catalog).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from planner.catalog import Catalog
from planner.errors import FieldViolation, InvalidArgumentError
from simulator.scenario import Route
from simulator.workload import RequestChunk, draw


@dataclass(frozen=True)
class OptionKey:
    """One routable option; `region` is where it runs (the target's region when the route gives none)."""

    tier: str
    strategy: str
    target: str
    region: str

    def label(self) -> str:
        return f"{self.tier}/{self.strategy}@{self.target}[{self.region}]"


@dataclass(frozen=True)
class Assignment:
    """Per request of a chunk: index into the policy's options and the expected quality (NaN = unknown)."""

    option: np.ndarray
    quality: np.ndarray


class Policy(Protocol):
    """Routes a chunk of requests to options."""

    @property
    def options(self) -> tuple[OptionKey, ...]: ...

    def assign(self, chunk: RequestChunk, rng: np.random.Generator) -> Assignment: ...


class FixedPolicy:
    """Routes of a scenario: a request of task T picks among the routes naming T (or, when none does, the
    "*" routes) with probability proportional to their weights. `quality_table` fills in the expected
    quality of (tier, strategy) pairs whose route gives none (e.g. from a forecaster's prior accuracy)."""

    def __init__(
        self,
        routes: Sequence[Route],
        catalog: Catalog,
        quality_table: Mapping[tuple[str, str], float] | None = None,
    ) -> None:
        if not routes:
            raise InvalidArgumentError.for_field("routes", [], "a fixed policy needs at least one route")
        _check_routes(routes, catalog)
        keys = [
            OptionKey(r.tier, r.strategy, r.target, r.region or catalog.target(r.target).region)
            for r in routes
        ]
        self._options = tuple(dict.fromkeys(keys))
        self._route_option = np.array([self._options.index(k) for k in keys], np.int64)
        table = quality_table or {}
        self._quality = np.array(
            [r.quality if np.isfinite(r.quality) else table.get((r.tier, r.strategy), np.nan) for r in routes]
        )
        self._weights = np.array([r.weight for r in routes], float)
        self._tasks = [r.task for r in routes]

    @property
    def options(self) -> tuple[OptionKey, ...]:
        return self._options

    def routes_for(self, task: str) -> np.ndarray:
        """Indices of the routes a request of `task` may take."""
        own = [i for i, t in enumerate(self._tasks) if t == task]
        if own:
            return np.array(own)
        star = [i for i, t in enumerate(self._tasks) if t == "*"]
        if not star:
            named = sorted({t for t in self._tasks if t != "*"})
            raise InvalidArgumentError.for_field(
                "routes.task", task, f"no route for this task; routed: {named}"
            )
        return np.array(star)

    def assign(self, chunk: RequestChunk, rng: np.random.Generator) -> Assignment:
        n = len(chunk)
        route = np.empty(n, np.int64)
        task = chunk.task_index
        for t in np.unique(task):
            mask = task == t
            idx = self.routes_for(chunk.tasks[int(t)])
            w = self._weights[idx]
            route[mask] = idx[draw(rng, w / w.sum(), int(mask.sum()))]
        return Assignment(self._route_option[route], self._quality[route])


def _check_routes(routes: Sequence[Route], catalog: Catalog) -> None:
    bad: list[FieldViolation] = []
    tiers = {t.name for t in catalog.tiers}
    strategies = {s.name for s in catalog.strategies}
    targets = {t.name for t in catalog.targets}
    regions = {r.name for r in catalog.regions}
    for i, r in enumerate(routes):
        if r.tier not in tiers:
            bad.append(FieldViolation(f"routes[{i}].tier", r.tier, "unknown tier"))
        if r.strategy not in strategies:
            bad.append(FieldViolation(f"routes[{i}].strategy", r.strategy, "unknown strategy"))
        if r.target not in targets:
            bad.append(FieldViolation(f"routes[{i}].target", r.target, "unknown target"))
        if r.region and regions and r.region not in regions:
            bad.append(
                FieldViolation(f"routes[{i}].region", r.region, f"unknown region; valid: {sorted(regions)}")
            )
        if bad:
            continue
        tier, target = catalog.tier(r.tier), catalog.target(r.target)
        if not catalog.fits(tier, target):
            bad.append(FieldViolation(f"routes[{i}].target", r.target, f"cannot serve tier {r.tier!r}"))
    if bad:
        raise InvalidArgumentError("routes are invalid", bad)
