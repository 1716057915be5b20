"""Confirm a capacity plan by discrete-event simulation and tighten it until the simulation meets the SLO.

`simulate_fleet` replays the workload through the policy: every request draws its (tier, strategy) from
the routes and its pool from the plan's shares (seeded), and each device pool runs in
`simulator.engine.PoolEngine` (continuous batching, prefill-prioritised, FCFS queue) on the same
`ReplicaService` physics the plan was sized with; per-token pools get their latency from the published
per-user speed. `plan_capacity` loops: solve the MILP, simulate, and where a pool misses the SLO lower its
per-replica capacity (by the factor the miss suggests, at least `min_cut`) and solve again -- until every
pool meets it on every confirmation seed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from planner.errors import InfeasibleError, InvalidArgumentError
from simulator.capacity import (
    ClassSample,
    FleetPlan,
    LoadProfile,
    PoolCapacity,
    Route,
    Slo,
    candidate_pools,
    check_routes,
    class_samples,
    job_params,
    profile_workload,
    solve_fleet,
)
from simulator.capacity_profile import profile_pool
from simulator.costmodel import CostModel
from simulator.engine import Completions, Jobs, PoolConfig, PoolEngine
from simulator.hardware import DeploymentConfig, DeviceSpec, ModelSpec
from simulator.metrics import LogHistogram
from simulator.replica import ReplicaService
from simulator.workload import Workload

MIN_REQUESTS = 30
"""A pool that saw fewer requests than this in a confirmation run is judged on the fleet's figures only."""


@dataclass
class PoolCheck:
    """Simulated figures of one pool (streaming: histograms, counters)."""

    pool: str
    replicas: int
    requests: int = 0
    met: int = 0
    busy_s: float = 0.0
    horizon_s: float = 0.0
    energy_j: float = 0.0
    ttft: LogHistogram = field(default_factory=LogHistogram)
    tpot: LogHistogram = field(default_factory=LogHistogram)
    e2e: LogHistogram = field(default_factory=LogHistogram)

    @property
    def attainment(self) -> float:
        return self.met / self.requests if self.requests else 1.0

    @property
    def utilisation(self) -> float:
        cap = self.horizon_s * max(self.replicas, 1)
        return self.busy_s / cap if cap > 0 else 0.0

    def add(self, ttft: np.ndarray, tpot: np.ndarray, e2e: np.ndarray, slo: Slo) -> None:
        self.requests += len(ttft)
        self.met += int(np.count_nonzero((ttft <= slo.ttft_s) & (tpot <= slo.tpot_s)))
        self.ttft.add(ttft)
        self.tpot.add(tpot)
        self.e2e.add(e2e)

    def to_dict(self) -> dict[str, Any]:
        return {
            "pool": self.pool,
            "replicas": self.replicas,
            "requests": self.requests,
            "attainment": self.attainment,
            "utilisation": self.utilisation,
            "energy_kwh": self.energy_j / 3.6e6,
            "ttft_s": self.ttft.summary(),
            "tpot_s": self.tpot.summary(),
            "e2e_s": self.e2e.summary(),
        }


@dataclass(frozen=True)
class FleetCheck:
    """A confirmation run: per-pool checks and the fleet's attainment."""

    seed: int
    pools: tuple[PoolCheck, ...]

    @property
    def requests(self) -> int:
        return sum(p.requests for p in self.pools)

    @property
    def attainment(self) -> float:
        n = self.requests
        return sum(p.met for p in self.pools) / n if n else 1.0

    def misses(self, slo: Slo) -> dict[str, float]:
        """Pools (with enough requests) whose attainment is below the SLO's."""
        return {
            p.pool: p.attainment
            for p in self.pools
            if p.requests >= MIN_REQUESTS and p.attainment < slo.attainment
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "requests": self.requests,
            "attainment": self.attainment,
            "pools": [p.to_dict() for p in self.pools],
        }


@dataclass(frozen=True)
class CapacityResult:
    """The confirmed (or last) plan, its confirmation runs and the iteration log."""

    plan: FleetPlan
    routes: tuple[Route, ...]
    checks: tuple[FleetCheck, ...]
    confirmed: bool
    iterations: tuple[dict[str, Any], ...]
    analytic_usd_per_hour: float
    single_target_usd_per_hour: Mapping[str, float]
    profile: LoadProfile
    slo: Slo

    def to_dict(self) -> dict[str, Any]:
        best_single = min(self.single_target_usd_per_hour.values(), default=math.nan)
        return {
            "confirmed": self.confirmed,
            "usd_per_hour": self.plan.usd_per_hour,
            "analytic_usd_per_hour": self.analytic_usd_per_hour,
            "single_target_usd_per_hour": dict(self.single_target_usd_per_hour),
            "saving_vs_best_single_target": 1.0 - self.plan.usd_per_hour / best_single
            if best_single and math.isfinite(best_single)
            else None,
            "slo": {"ttft_s": self.slo.ttft_s, "tpot_s": self.slo.tpot_s, "attainment": self.slo.attainment},
            "load": {
                "rate_per_s": self.profile.rate_per_s,
                "requests": self.profile.requests,
                "duration_s": self.profile.duration_s,
                "input_tokens_mean": float(self.profile.input_tokens.mean()),
                "output_tokens_mean": float(self.profile.output_tokens.mean()),
            },
            "plan": self.plan.to_dict(),
            "simulated_attainment": [c.attainment for c in self.checks],
            "checks": [c.to_dict() for c in self.checks],
            "iterations": list(self.iterations),
        }


# ---- one confirmation run --------------------------------------------------------------------------------
def simulate_fleet(
    cost_model: CostModel,
    plan: FleetPlan,
    workload: Workload,
    routes: Sequence[Route],
    slo: Slo,
    seed: int = 0,
) -> FleetCheck:
    """Run the workload through the policy on the planned fleet; per-pool SLO attainment and latencies."""
    cat = cost_model.catalog
    routes = check_routes(cat, routes)
    used = [(p, n, y) for p, n, y in plan.used() if p.per_token or n > 0]
    checks = [PoolCheck(p.key, n) for p, n, _ in used]
    engines: list[PoolEngine | None] = []
    for (p, n, _), check in zip(used, checks, strict=True):
        engines.append(None if p.per_token else _engine(cost_model, p, n, check, slo))
    by_tier: dict[str, tuple[list[int], np.ndarray]] = {}
    for tier in {r.tier for r in routes}:
        idx = [i for i, (p, _, _) in enumerate(used) if p.tier == tier]
        if not idx:
            raise InvalidArgumentError.for_field("plan", tier, "serves no share of this tier")
        w = np.array([used[i][2] for i in idx])
        by_tier[tier] = (idx, w / w.sum())
    params = [job_params(cat, r.strategy) for r in routes]
    rng = np.random.default_rng([seed, 23])
    for chunk in workload.chunks(seed):
        pick = rng.choice(len(routes), size=len(chunk), p=[r.share for r in routes])
        pool_of = np.empty(len(chunk), int)
        for tier, (idx, w) in by_tier.items():
            mask = np.isin(pick, [i for i, r in enumerate(routes) if r.tier == tier])
            pool_of[mask] = np.asarray(idx)[rng.choice(len(idx), size=int(mask.sum()), p=w)]
        slots = np.array([params[k][0] for k in pick], float)
        rounds = np.array([params[k][1] for k in pick], float)
        work = np.maximum(np.round(chunk.output_tokens * np.array([params[k][2] for k in pick])), 1.0)
        for i, (pool, _, _) in enumerate(used):
            m = pool_of == i
            if not m.any():
                continue
            tin, arr = np.asarray(chunk.input_tokens, float)[m], np.asarray(chunk.arrival_s, float)[m]
            engine = engines[i]
            if engine is None:
                _per_token(cost_model, pool, checks[i], tin, work[m], rounds[m], slo)
                continue
            z = np.zeros(int(m.sum()))
            engine.feed(
                Jobs(arr, tin, work[m], slots[m], rounds[m], z.astype(np.int64), z.astype(np.int64), z)
            )
    for engine, check in zip(engines, checks, strict=True):
        if engine is not None:
            stats = engine.finish()
            check.busy_s, check.horizon_s, check.energy_j = stats.busy_s, stats.horizon_s, stats.energy_j
    return FleetCheck(seed, tuple(checks))


def _engine(
    cost_model: CostModel, pool: PoolCapacity, replicas: int, check: PoolCheck, slo: Slo
) -> PoolEngine:
    cat = cost_model.catalog
    tier, target = cat.tier(pool.tier), cat.target(pool.target)
    config = DeploymentConfig(
        ModelSpec.from_tier(tier), DeviceSpec.from_target(target), pool.n_devices, 1.0, pool.context_tokens
    )
    service = ReplicaService(config, cost_model.efficiency)

    def sink(done: Completions) -> None:
        ttft = done.first_token_s - done.arrival_s
        tpot = (done.done_s - done.first_token_s) / np.maximum(done.tokens - 1.0, 1.0)
        check.add(ttft, tpot, done.done_s - done.arrival_s, slo)

    return PoolEngine(PoolConfig(replicas, pool.max_batch), service, sink)


def _per_token(
    cost_model: CostModel,
    pool: PoolCapacity,
    check: PoolCheck,
    tin: np.ndarray,
    work: np.ndarray,
    rounds: np.ndarray,
    slo: Slo,
) -> None:
    cat = cost_model.catalog
    unit = cost_model.unit_cost(cat.tier(pool.tier), cat.target(pool.target))
    ttft = unit.ttft_base_s + tin * unit.ttft_s_per_input_token
    per_round = ttft + work * unit.s_per_output_token
    e2e = rounds * per_round + (rounds - 1) * work * unit.ttft_s_per_input_token
    check.add(ttft, np.full(len(tin), unit.s_per_output_token), e2e, slo)


# ---- the loop --------------------------------------------------------------------------------------------
def plan_capacity(
    cost_model: CostModel,
    workload: Workload,
    routes: Sequence[Route],
    slo: Slo,
    *,
    targets: Iterable[str] | None = None,
    available: Mapping[str, int] | None = None,
    seeds: Sequence[int] = (0,),
    headroom: float = 0.9,
    max_iterations: int = 8,
    min_cut: float = 0.1,
    min_devices_only: bool = False,
    profile: bool = True,
    profile_requests: int = 20_000,
) -> CapacityResult:
    """Cheapest fleet meeting `slo` for `workload` under `routes`, confirmed by simulation on every seed.

    Pool capacities: analytic (`simulator.capacity`), then -- with `profile` -- measured by simulating one
    replica on the tier's share of the workload (`simulator.capacity_profile`). Then solve, simulate the
    whole fleet on every seed, and where a pool misses, cap its per-replica capacity below the load it was
    given (by the miss, at least `min_cut`) and solve again."""
    if not 0 < headroom <= 1:
        raise InvalidArgumentError.for_field("headroom", headroom, "must be in (0, 1]")
    if max_iterations < 1:
        raise InvalidArgumentError.for_field("max_iterations", max_iterations, "must be >= 1")
    if not seeds:
        raise InvalidArgumentError.for_field("seeds", list(seeds), "need at least one seed")
    routes = check_routes(cost_model.catalog, routes)
    load = profile_workload(workload, seeds[0])
    samples: dict[str, ClassSample] = class_samples(cost_model.catalog, load, routes, seeds[0])
    demand = {t: load.rate_per_s * c.share for t, c in samples.items()}
    found = candidate_pools(cost_model, samples, slo, targets, headroom, min_devices_only)
    analytic = solve_fleet(found, demand, available).usd_per_hour
    pools = {p.key: p for p in found}
    measured: set[str] = set()

    def measure(keys: list[str]) -> None:
        for key in keys:
            upper = replace(pools[key], cap_rps=pools[key].cap_rps / headroom)
            got = profile_pool(
                cost_model, upper, routes, workload, load.rate_per_s, slo,
                seed=seeds[0], max_requests=profile_requests,
            )  # fmt: skip
            pools[key] = replace(got, cap_rps=got.cap_rps * headroom)
            measured.add(key)

    def solve(subset: Callable[[PoolCapacity], bool], limit: Mapping[str, int] | None) -> FleetPlan:
        while True:  # lazy profiling: measured caps <= analytic caps, so this ends at the true optimum
            plan = solve_fleet([p for p in pools.values() if subset(p)], demand, limit)
            todo = [p.key for p, n, _ in plan.used() if n > 0 and p.key not in measured]
            if not profile or not todo:
                return plan
            measure(todo)

    baselines = {}
    for target in sorted({p.target for p in found if not p.per_token and p.feasible}):
        try:
            baselines[target] = solve(_on_target(target), None).usd_per_hour
        except InfeasibleError:
            continue
    plan = solve(lambda p: True, available)
    log: list[dict[str, Any]] = []
    checks: tuple[FleetCheck, ...] = ()
    for it in range(max_iterations):
        checks = tuple(simulate_fleet(cost_model, plan, workload, routes, slo, s) for s in seeds)
        misses: dict[str, float] = {}
        for check in checks:
            for key, att in check.misses(slo).items():
                misses[key] = min(att, misses.get(key, 1.0))
        log.append(
            {
                "iteration": it,
                "usd_per_hour": plan.usd_per_hour,
                "attainment": [c.attainment for c in checks],
                "missed_pools": misses,
            }
        )
        if not misses:
            return CapacityResult(plan, routes, checks, True, tuple(log), analytic, baselines, load, slo)
        for key, att in misses.items():
            pools[key] = _tightened(pools[key], plan, demand, att, slo, min_cut)
        if it + 1 < max_iterations:
            plan = solve(lambda p: True, available)
    return CapacityResult(plan, routes, checks, False, tuple(log), analytic, baselines, load, slo)


def _on_target(target: str) -> Callable[[PoolCapacity], bool]:
    return lambda p: p.target == target


def _tightened(
    pool: PoolCapacity, plan: FleetPlan, demand: Mapping[str, float], att: float, slo: Slo, min_cut: float
) -> PoolCapacity:
    """Per-replica capacity below what the missed pool was given, so the next solve adds capacity there or
    moves the load elsewhere."""
    given = pool.cap_rps
    for p, n, y in plan.used():
        if p.key == pool.key and n > 0:
            given = min(given, demand[p.tier] * y / n)
    cut = min(max(min_cut, (slo.attainment - att) / max(slo.attainment, 1e-9)), 0.5)
    return replace(pool, cap_rps=given * (1.0 - cut))
