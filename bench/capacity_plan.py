"""Capacity plan for the Azure conv trace under a mixed policy, confirmed by simulation.

Load: the Azure LLM conv trace (19,366 requests in ~58 min, ~5.5 req/s), replayed at `--time-scale` x its
rate. Policy (fixed shares): 60% llama-3.1-70b single pass, 30% llama-3.1-8b chain of thought, 10%
llama-3.1-8b majority vote over 5. SLO: TTFT <= 2 s and time per output token <= 0.1 s for >= 95% of
requests. Targets: the four GPU types of the default catalog (A100, H100, H200, B200).

Prints, in one run, for each capacity headroom (1.0 = plan on the measured capacity itself, 0.9 = keep 10%
spare):
- the cheapest fleet found by the MILP over simulation-measured pool capacities (lazy profiling), its cost,
  and its SLO attainment in the confirmation simulations (one per seed; the whole trace each);
- the MILP's first plan on analytic capacities alone (before simulation) and whether it met the SLO;
- the cheapest single-GPU-type fleets (Melange's comparison), and the saving of the mixed fleet;
- tightness: the plan with one replica fewer in any one pool, simulated (does it still meet the SLO?);
- an independent cross-check: the same planner restricted to minimum-device replicas, its fleet run through
  the project's scenario simulator (`simulator.run.simulate`, a second code path), SLO attainment reported.

Usage: python bench/capacity_plan.py [--trace PATH] [--time-scale X] [--seeds N] [--headroom 1.0,0.9] [--json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from planner.catalog import load_catalog
from simulator.capacity import (
    FleetPlan,
    Route,
    Slo,
    candidate_pools,
    class_samples,
    profile_workload,
    solve_fleet,
)
from simulator.capacity_check import cross_check
from simulator.capacity_sim import CapacityResult, plan_capacity, simulate_fleet
from simulator.costmodel import CostModel
from simulator.workload import TraceWorkload

TRACE = Path(__file__).resolve().parents[2] / "shared" / "data" / "traces" / "azure_llm_2023_conv.csv"
GPUS = ["A100-SXM4-80GB", "H100-SXM5-80GB", "H200-SXM-141GB", "B200-HGX-192GB"]
ROUTES = [
    Route("llama-3.1-70b", "single", 0.6),
    Route("llama-3.1-8b", "cot", 0.3),
    Route("llama-3.1-8b", "vote5", 0.1),
]


def analytic_only(cm: CostModel, wl: TraceWorkload, slo: Slo, seeds: tuple[int, ...]) -> dict[str, Any]:
    """The MILP on analytic capacities, simulated as is (no profiling, no iteration)."""
    load = profile_workload(wl, seeds[0])
    samples = class_samples(cm.catalog, load, ROUTES, seeds[0])
    demand = {t: load.rate_per_s * c.share for t, c in samples.items()}
    plan: FleetPlan = solve_fleet(candidate_pools(cm, samples, slo, GPUS), demand)
    checks = [simulate_fleet(cm, plan, wl, ROUTES, slo, s) for s in seeds]
    return {
        "usd_per_hour": plan.usd_per_hour,
        "fleet": plan.to_dict()["pools"],
        "attainment": [c.attainment for c in checks],
        "meets_slo": all(not c.misses(slo) for c in checks),
    }


def minus_one(cm: CostModel, plan: FleetPlan, wl: TraceWorkload, slo: Slo) -> list[dict[str, Any]]:
    """Tightness: the plan with one replica fewer in one pool (load re-split by remaining capacity),
    simulated on seed 0."""
    out = []
    for i, (pool, n) in enumerate(zip(plan.pools, plan.replicas, strict=True)):
        if n < 1 or pool.per_token:
            continue
        reps = list(plan.replicas)
        reps[i] -= 1
        shares = []
        for p, m in zip(plan.pools, reps, strict=True):
            tier_cap = sum(q.cap_rps * k for q, k in zip(plan.pools, reps, strict=True) if q.tier == p.tier)
            shares.append(m * p.cap_rps / tier_cap if tier_cap > 0 else 0.0)
        if any(
            sum(y for q, y in zip(plan.pools, shares, strict=True) if q.tier == t) == 0
            for t in {p.tier for p, m, _ in plan.used()}
        ):
            out.append({"removed": pool.key, "attainment": 0.0, "meets_slo": False, "note": "tier unserved"})
            continue
        trial = FleetPlan(plan.pools, tuple(reps), tuple(shares), plan.usd_per_hour - pool.usd_per_hour)
        check = simulate_fleet(cm, trial, wl, ROUTES, slo, 0)
        out.append(
            {"removed": pool.key, "usd_per_hour": trial.usd_per_hour, "attainment": check.attainment,
             "meets_slo": not check.misses(slo), "pool_misses": check.misses(slo)}
        )  # fmt: skip
    return out


def summarise(
    result: CapacityResult, cm: CostModel, wl: TraceWorkload, slo: Slo, wall: float
) -> dict[str, Any]:
    out = result.to_dict()
    best = min(out["single_target_usd_per_hour"].items(), key=lambda kv: kv[1])
    return {
        "usd_per_hour": result.plan.usd_per_hour,
        "fleet": [
            {k: p[k] for k in ("pool", "replicas", "share", "cap_rps_per_replica", "usd_per_hour")}
            for p in out["plan"]["pools"]
        ],
        "devices": out["plan"]["devices"],
        "confirmed": result.confirmed,
        "simulated_attainment": out["simulated_attainment"],
        "pool_attainment": [
            {p["pool"]: round(p["attainment"], 4) for p in c["pools"]} for c in out["checks"]
        ],
        "ttft_p99_s": [max(p["ttft_s"]["p99"] for p in c["pools"]) for c in out["checks"]],
        "tpot_p99_s": [max(p["tpot_s"]["p99"] for p in c["pools"]) for c in out["checks"]],
        "iterations": len(out["iterations"]),
        "single_target_usd_per_hour": out["single_target_usd_per_hour"],
        "best_single_target": {"target": best[0], "usd_per_hour": best[1]},
        "saving_vs_best_single_target": 1.0 - result.plan.usd_per_hour / best[1],
        "minus_one_replica": minus_one(cm, result.plan, wl, slo),
        "wall_s": wall,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trace", default=str(TRACE))
    ap.add_argument("--time-scale", type=float, default=1.0)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--headroom", default="1.0,0.9", help="comma-separated capacity headrooms to plan with")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    cm = CostModel(load_catalog())
    wl = TraceWorkload(args.trace, time_scale=args.time_scale)
    slo = Slo(ttft_s=2.0, tpot_s=0.1, attainment=0.95)
    seeds = tuple(range(args.seeds))
    plans: dict[str, Any] = {}
    load: dict[str, Any] = {}
    for h in (float(x) for x in args.headroom.split(",")):
        t0 = time.perf_counter()
        result = plan_capacity(cm, wl, ROUTES, slo, targets=GPUS, seeds=seeds, headroom=h)
        plans[f"headroom {h:g}"] = summarise(result, cm, wl, slo, time.perf_counter() - t0)
        load = result.to_dict()["load"]
    first = analytic_only(cm, wl, slo, seeds)
    t1 = time.perf_counter()
    minimal = plan_capacity(
        cm, wl, ROUTES, slo, targets=GPUS, seeds=seeds, min_devices_only=True, headroom=1.0
    )
    workload = {"kind": "trace", "trace": args.trace, "time_scale": args.time_scale}
    other = cross_check(minimal, cm, workload, replicates=args.seeds)
    report = {
        "trace": args.trace,
        "time_scale": args.time_scale,
        "load": load,
        "slo": {"ttft_s": slo.ttft_s, "tpot_s": slo.tpot_s, "attainment": slo.attainment},
        "policy": [{"tier": r.tier, "strategy": r.strategy, "share": r.share} for r in ROUTES],
        "plans": plans,
        "analytic_first_plan": first,
        "cross_check_min_devices": {
            "usd_per_hour": minimal.plan.usd_per_hour,
            "fleet": [(p.key, n) for p, n, _ in minimal.plan.used()],
            "confirmed_by_planner_simulation": minimal.confirmed,
            "planner_simulated_attainment": [c.attainment for c in minimal.checks],
            "scenario_simulator": other,
            "wall_s": time.perf_counter() - t1,
        },
    }
    print(json.dumps(report, default=float, indent=None if args.json else 1))


if __name__ == "__main__":
    main()
