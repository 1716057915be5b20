"""Independent cross-check of a capacity plan with the scenario simulator (`simulator.run.simulate`).

`plan_capacity` confirms a fleet with its own wiring of the discrete-event engine; this module rebuilds the
plan as a scenario -- the fleet's devices pinned to their tiers, the policy as fixed routes
(tier, strategy, target) weighted by route share x pool share, the SLO as TTFT and time-between-tokens
limits -- and runs it through the project's scenario simulator, so a second code path (its own pool
sizing, admission, batching cap and tallies) reports the SLO attainment of the same fleet. The scenario
simulator sizes replicas with the fewest devices that hold a tier, so plans must come from
`plan_capacity(..., min_devices_only=True)`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from planner.errors import InvalidArgumentError
from simulator.capacity_sim import CapacityResult
from simulator.costmodel import CostModel
from simulator.run import simulate
from simulator.scenario import Scenario, scenario_from_dict


def plan_scenario(
    result: CapacityResult,
    cost_model: CostModel,
    workload: Mapping[str, Any],
    *,
    seed: int = 0,
    replicates: int = 1,
    name: str = "capacity-plan",
) -> Scenario:
    """The plan of `result` as a scenario over `workload` (a scenario `[workload]` table)."""
    cat = cost_model.catalog
    fleet: list[dict[str, Any]] = []
    routes: list[dict[str, Any]] = []
    for pool, n, share in result.plan.used():
        if not pool.per_token:
            need = cost_model.deployment(cat.tier(pool.tier), cat.target(pool.target)).n_devices
            if pool.n_devices != need:
                raise InvalidArgumentError.for_field(
                    "plan", pool.key, f"the scenario simulator runs {need}-device replicas of this tier"
                )
            fleet.append({"target": pool.target, "count": n * pool.n_devices, "tier": pool.tier})
        for r in result.routes:
            if r.tier == pool.tier:
                w = r.share * share
                routes.append({"tier": r.tier, "strategy": r.strategy, "target": pool.target, "weight": w})
    slo = result.slo
    return scenario_from_dict(
        {
            "name": name,
            "seed": seed,
            "replicates": replicates,
            "workload": dict(workload),
            "slo": {"ttft_s": slo.ttft_s, "tbt_s": slo.tpot_s},
            "fleet": fleet,
            "routes": routes,
        }
    )


def cross_check(
    result: CapacityResult,
    cost_model: CostModel,
    workload: Mapping[str, Any],
    *,
    seed: int = 0,
    replicates: int = 1,
) -> dict[str, float]:
    """SLO attainment and latency figures of the plan's fleet according to the scenario simulator."""
    scenario = plan_scenario(result, cost_model, workload, seed=seed, replicates=replicates)
    sim = simulate(scenario, catalog=cost_model.catalog, cost_model=cost_model)
    keys = ("slo_attainment", "requests", "rejected", "ttft_s.p99", "tbt_s.p99", "e2e_s.p99", "spend_usd")
    return {k: sim.metric(k) for k in keys}
