"""Per-pool throughput at the SLO measured by simulation (Melange profiles each GPU type; we simulate it).

The analytic capacity of `simulator.capacity.replica_capacity` is exact for constant token counts but
optimistic for heavy-tailed real traffic (a long prompt's prefill stalls every sequence of its replica and
short answers then miss their time-per-token objective). `plan_capacity` therefore measures the capacity
of the pools the ILP picks (`profile_pool`): one replica is fed the tier's share of the actual workload,
time-scaled to a trial rate, and a bisection over the rate (between 0 and the analytic capacity) finds the
highest rate at which the simulated SLO attainment still meets the target. Measured capacities never exceed
the analytic ones, so re-solving until every picked pool is measured ends at the optimum over measured
capacities (lazy profiling: only the pools that could be in the optimum are simulated).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

import numpy as np

from simulator.capacity import FleetPlan, PoolCapacity, Route, Slo
from simulator.costmodel import CostModel
from simulator.workload import RequestChunk, Workload


@dataclass(frozen=True)
class ScaledWorkload:
    """`base` with arrival times divided by `factor` (factor 2 = twice the rate), stopped after
    `max_requests` requests."""

    base: Workload
    factor: float
    max_requests: int | None = None

    def chunks(self, seed: int) -> Iterator[RequestChunk]:
        left = self.max_requests
        for chunk in self.base.chunks(seed):
            if left is not None:
                if left <= 0:
                    return
                chunk = chunk.take(np.arange(len(chunk)) < left)
                left -= len(chunk)
            yield RequestChunk(
                np.asarray(chunk.arrival_s, float) / self.factor,
                chunk.input_tokens,
                chunk.output_tokens,
                chunk.tenant,
                chunk.tenants,
            )


def measure(
    cost_model: CostModel,
    pool: PoolCapacity,
    routes: Sequence[Route],
    workload: Workload,
    base_rate: float,
    rate: float,
    slo: Slo,
    seed: int,
    max_requests: int,
) -> float:
    """Simulated SLO attainment of ONE replica of `pool` serving `routes` (one tier) at `rate` req/s."""
    from simulator.capacity_sim import simulate_fleet

    plan = FleetPlan((pool,), (1,), (1.0,), pool.usd_per_hour)
    scaled = ScaledWorkload(workload, rate / base_rate, max_requests)
    return simulate_fleet(cost_model, plan, scaled, routes, slo, seed).attainment


def profile_pool(
    cost_model: CostModel,
    pool: PoolCapacity,
    routes: Sequence[Route],
    workload: Workload,
    base_rate: float,
    slo: Slo,
    *,
    seed: int = 0,
    steps: int = 7,
    max_requests: int = 4000,
) -> PoolCapacity:
    """The pool with `cap_rps` set to the highest simulated rate (bisection on (0, analytic cap]) whose
    attainment meets the SLO (0 with a reason when even cap / 2**steps misses)."""
    if pool.per_token or not pool.feasible:
        return pool
    tier_routes = [r for r in routes if r.tier == pool.tier]
    total = sum(r.share for r in tier_routes)
    tier_routes = [Route(r.tier, r.strategy, r.share / total) for r in tier_routes]
    hi = pool.cap_rps
    if (
        measure(cost_model, pool, tier_routes, workload, base_rate, hi, slo, seed, max_requests)
        >= slo.attainment
    ):
        return pool
    lo = 0.0
    for _ in range(steps):
        mid = (lo + hi) / 2
        att = measure(cost_model, pool, tier_routes, workload, base_rate, mid, slo, seed, max_requests)
        lo, hi = (mid, hi) if att >= slo.attainment else (lo, mid)
    if lo <= 0:
        return replace(pool, cap_rps=0.0, reason="simulated attainment misses the SLO at every trial rate")
    return replace(pool, cap_rps=lo)
