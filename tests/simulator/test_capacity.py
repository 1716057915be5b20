"""Capacity planning: the MILP against brute force, per-replica capacity at the SLO, and plans confirmed (or
refuted) by the discrete-event simulation."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from planner.catalog import load_catalog
from planner.errors import InfeasibleError, InvalidArgumentError
from simulator.capacity import (
    FleetPlan,
    PoolCapacity,
    Route,
    Slo,
    candidate_pools,
    check_routes,
    class_samples,
    profile_workload,
    solve_fleet,
)
from simulator.capacity_check import cross_check
from simulator.capacity_sim import plan_capacity, simulate_fleet
from simulator.costmodel import CostModel
from simulator.workload import PoissonWorkload, TokenDist

GPUS = ["A100-SXM4-80GB", "H100-SXM5-80GB", "H200-SXM-141GB", "B200-HGX-192GB"]


@pytest.fixture(scope="module")
def cost_model() -> CostModel:
    return CostModel(load_catalog())


def small_load(rate: float = 3.0, duration: float = 300.0) -> PoissonWorkload:
    return PoissonWorkload(
        input_tokens=TokenDist(600.0, 0.7),
        output_tokens=TokenDist(120.0, 0.7),
        duration_s=duration,
        rate_per_s=rate,
    )


def pool(tier: str, target: str, cap: float, usd: float, n_devices: int = 1) -> PoolCapacity:
    return PoolCapacity(tier, target, n_devices, 64, cap, usd)


# ---- the integer program ---------------------------------------------------------------------------------
def test_milp_finds_the_cheapest_mix() -> None:
    # 10 req/s: A (4 req/s, 3 $/h), B (3 req/s, 2 $/h): 1 A + 2 B = 7 $/h beats 3 A (9) and 4 B (8).
    plan = solve_fleet([pool("t", "A", 4.0, 3.0), pool("t", "B", 3.0, 2.0)], {"t": 10.0})
    assert plan.usd_per_hour == pytest.approx(7.0)
    assert sorted(plan.replicas) == [1, 2]
    assert sum(plan.shares) == pytest.approx(1.0)


def test_milp_respects_available_devices() -> None:
    pools = [pool("t", "A", 4.0, 3.0), pool("t", "B", 3.0, 2.0)]
    plan = solve_fleet(pools, {"t": 10.0}, available={"B": 1})
    assert plan.devices.get("B", 0) <= 1
    assert plan.usd_per_hour == pytest.approx(3.0 * 2 + 2.0)  # 2 A + 1 B
    with pytest.raises(InfeasibleError):
        solve_fleet(pools, {"t": 10.0}, available={"A": 0, "B": 1})


def test_milp_names_a_tier_no_pool_can_serve() -> None:
    with pytest.raises(InfeasibleError, match="other"):
        solve_fleet([pool("t", "A", 4.0, 3.0)], {"t": 1.0, "other": 1.0})


@settings(max_examples=40, deadline=None)
@given(
    demand=st.floats(0.5, 20.0),
    caps=st.lists(st.tuples(st.floats(0.5, 8.0), st.floats(0.5, 10.0)), min_size=1, max_size=3),
)
def test_milp_matches_brute_force(demand: float, caps: list[tuple[float, float]]) -> None:
    pools = [pool("t", f"g{i}", c, u) for i, (c, u) in enumerate(caps)]
    plan = solve_fleet(pools, {"t": demand})
    served = sum(n * p.cap_rps for p, n in zip(plan.pools, plan.replicas, strict=True))
    assert served >= demand * (1 - 1e-6)
    bounds = [range(math.ceil(demand / c) + 2) for c, _ in caps]
    best = min(
        sum(n * u for n, (_, u) in zip(ns, caps, strict=True))
        for ns in itertools.product(*bounds)
        # the same relative tolerance the MILP's feasibility check allows (a 1e-16 shortfall is no shortfall)
        if sum(n * c for n, (c, _) in zip(ns, caps, strict=True)) >= demand * (1 - 1e-9)
    )
    assert plan.usd_per_hour == pytest.approx(best, rel=1e-6, abs=1e-6)


# ---- per-replica capacity --------------------------------------------------------------------------------
def test_capacity_grows_with_a_looser_slo_and_vanishes_when_unreachable(cost_model: CostModel) -> None:
    prof = profile_workload(small_load(), seed=0)
    samples = class_samples(cost_model.catalog, prof, [Route("llama-3.1-8b", "single", 1.0)])
    tight = {
        p.key: p for p in candidate_pools(cost_model, samples, Slo(1.0, 0.03), GPUS, min_devices_only=True)
    }
    loose = {
        p.key: p for p in candidate_pools(cost_model, samples, Slo(5.0, 0.2), GPUS, min_devices_only=True)
    }
    assert tight.keys() == loose.keys()
    assert all(loose[k].cap_rps >= tight[k].cap_rps for k in tight)
    assert any(p.cap_rps > 0 for p in loose.values())
    never = candidate_pools(cost_model, samples, Slo(1e-4, 1e-4), GPUS, min_devices_only=True)
    assert all(p.cap_rps == 0 and "misses the SLO" in p.reason for p in never)


def test_parallel_samples_cost_capacity(cost_model: CostModel) -> None:
    prof = profile_workload(small_load(), seed=0)
    cat = cost_model.catalog
    one = class_samples(cat, prof, [Route("llama-3.1-8b", "single", 1.0)])
    five = class_samples(cat, prof, [Route("llama-3.1-8b", "vote5", 1.0)])
    slo = Slo(3.0, 0.2)
    cap1 = {p.key: p.cap_rps for p in candidate_pools(cost_model, one, slo, ["H100-SXM5-80GB"])}
    cap5 = {p.key: p.cap_rps for p in candidate_pools(cost_model, five, slo, ["H100-SXM5-80GB"])}
    assert all(cap5[k] < cap1[k] for k in cap1)


def test_bad_policy_and_slo_name_the_field(cost_model: CostModel) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        check_routes(cost_model.catalog, [Route("nope", "single", 1.0), Route("llama-3.1-8b", "x", -1)])
    fields = {v.field for v in info.value.violations}
    assert fields == {"routes[0].tier", "routes[1].strategy", "routes[1].share"}
    with pytest.raises(InvalidArgumentError) as info:
        Slo(ttft_s=-1.0, attainment=1.5)
    assert {v.field for v in info.value.violations} == {"slo.ttft_s", "slo.attainment"}


# ---- simulation confirms the plan ------------------------------------------------------------------------
def test_plan_is_confirmed_by_simulation(cost_model: CostModel) -> None:
    routes = [Route("llama-3.1-8b", "single", 0.7), Route("llama-3.1-8b", "cot", 0.3)]
    slo = Slo(ttft_s=1.5, tpot_s=0.05, attainment=0.95)
    result = plan_capacity(
        cost_model, small_load(rate=8.0), routes, slo, targets=GPUS, seeds=(0, 1), min_devices_only=True
    )
    assert result.confirmed
    assert all(c.attainment >= slo.attainment for c in result.checks)
    assert all(p.attainment >= slo.attainment for c in result.checks for p in c.pools if p.requests >= 30)
    assert result.plan.usd_per_hour > 0
    assert min(result.single_target_usd_per_hour.values()) >= result.analytic_usd_per_hour - 1e-9
    out = result.to_dict()
    assert out["confirmed"] and out["plan"]["pools"]
    # measured capacities never exceed the analytic ones, so the measured plan costs at least as much
    assert result.plan.usd_per_hour >= result.analytic_usd_per_hour - 1e-9
    # the scenario simulator (a second code path) agrees that the fleet meets the SLO
    workload = {
        "kind": "poisson",
        "rate_per_s": 8.0,
        "duration_s": 300.0,
        "input_tokens": {"median": 600.0, "sigma": 0.7},
        "output_tokens": {"median": 120.0, "sigma": 0.7},
    }
    other = cross_check(result, cost_model, workload)
    assert other["slo_attainment"] >= slo.attainment


def test_an_undersized_fleet_misses_the_slo_in_simulation(cost_model: CostModel) -> None:
    routes = [Route("llama-3.1-8b", "single", 1.0)]
    slo = Slo(ttft_s=1.5, tpot_s=0.05, attainment=0.95)
    load = small_load(rate=8.0)
    result = plan_capacity(cost_model, load, routes, slo, targets=["H100-SXM5-80GB"], seeds=(0,))
    assert result.confirmed
    p, n, _ = result.plan.used()[0]
    same_fleet = FleetPlan((p,), (n,), (1.0,), n * p.usd_per_hour)
    check = simulate_fleet(cost_model, same_fleet, small_load(rate=8.0 * 3), routes, slo, seed=0)
    assert check.attainment < slo.attainment
    assert check.misses(slo)


def test_profile_reads_the_rate_of_the_workload() -> None:
    prof = profile_workload(small_load(rate=5.0, duration=400.0), seed=3)
    assert prof.rate_per_s == pytest.approx(5.0, rel=0.15)
    assert np.all(prof.input_tokens >= 1)


def test_cli_capacity_plan_prints_one_json_object() -> None:
    from typer.testing import CliRunner

    from planner.cli import app

    args = ["capacity", "plan", "--route", "llama-3.1-8b:single:1", "--rate", "4", "--duration", "200",
            "--target", "H100-SXM5-80GB", "--seeds", "1", "--json"]  # fmt: skip
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["confirmed"] and out["plan"]["devices"]["H100-SXM5-80GB"] >= 1
    bad = CliRunner().invoke(app, ["capacity", "plan", "--route", "nope:single:1", "--json"])
    assert bad.exit_code == 2 and json.loads(bad.stdout)["error"] == "InvalidArgumentError"


def test_per_token_services_are_priced_per_request_and_need_no_replicas(cost_model: CostModel) -> None:
    routes = [Route("llama-3.1-70b", "single", 1.0)]
    targets = ["H100-SXM5-80GB", "cerebras-wse3"]
    result = plan_capacity(
        cost_model, small_load(rate=2.0, duration=120.0), routes, Slo(2.0, 0.1), targets=targets
    )
    assert result.confirmed
    out = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    pools = out["plan"]["pools"]
    assert sum(p["usd_per_hour"] for p in pools) == pytest.approx(out["usd_per_hour"])
    for p in pools:
        assert (p["replicas"] == 0) == p["per_token"]
