"""`planner.solve.batch` (options + limits -> Problem) and `planner.solve.explain`, on the default catalog."""

from __future__ import annotations

import numpy as np
import pytest

from models.api import Forecast
from planner.catalog import Strategy, load_catalog
from planner.errors import InfeasibleError, InvalidArgumentError
from planner.governance import GuardRails
from planner.options import OptionArrays, OptionSet
from planner.solve import Objective, solve
from planner.solve.batch import (
    TARGET_QUALITY,
    TOTAL_ENERGY,
    TOTAL_SPEND,
    ConstraintKind,
    PlanSpec,
    build_batch,
    capacity,
    kind_of,
    tenant_spend,
)
from planner.solve.explain import explain
from simulator.costmodel import CostModel

N = 60


def _quality(p: np.ndarray, strategy: Strategy) -> np.ndarray:
    return 1.0 - (1.0 - p) ** strategy.samples


@pytest.fixture(scope="module")
def priced() -> tuple[OptionSet, OptionArrays, np.ndarray]:
    catalog = load_catalog()
    wanted = ("llama-3.1-8b", "llama-3.1-70b", "gpt-4o-mini", "gpt-4o-2024-08-06")
    tiers = tuple(t for t in wanted if t in {x.name for x in catalog.tiers})
    options = OptionSet.build(catalog, CostModel(catalog), tiers, quality_fn=_quality)
    rng = np.random.default_rng(0)
    p50 = rng.uniform(50, 400, (N, len(tiers)))
    forecast = Forecast(tiers, rng.uniform(0.2, 0.95, (N, len(tiers))), p50, 2 * p50, rng.uniform(20, 900, N))
    return options, options.price(forecast), forecast.input_tokens


def _tenants() -> list[str]:
    return ["a" if i % 3 else "b" for i in range(N)]


def test_caps_become_named_constraints(priced: tuple[OptionSet, OptionArrays, np.ndarray]) -> None:
    options, arrays, inp = priced
    target = options.targets[int(options.target_of[0])]
    spec = PlanSpec(
        total_spend_usd=1.0,
        total_energy_kwh=2.0,
        tenant_spend_usd={"a": 0.5, "zzz": 1.0, "b": 0.0},
        capacity_device_s={target: 10.0},
    )
    batch = build_batch(options, arrays, inp, _tenants(), spec)
    names = [batch.public_name(n) for n in batch.problem.constraint_names()]
    assert names == [
        TOTAL_SPEND,
        TOTAL_ENERGY,
        tenant_spend("a"),
        capacity(target),
    ]  # absent / 0 caps skipped
    a_rows = np.array([t == "a" for t in _tenants()])
    np.testing.assert_allclose(batch.problem.resources[tenant_spend("a")][~a_rows], 0.0)
    np.testing.assert_allclose(batch.problem.resources[tenant_spend("a")][a_rows], arrays.usd[a_rows])
    on = options.target_of == options.target_of[0]
    np.testing.assert_allclose(batch.problem.resources[capacity(target)][:, ~on], 0.0)
    np.testing.assert_allclose(batch.problem.resources[TOTAL_ENERGY], arrays.energy_j / 3.6e6)


def test_tenant_cap_holds_in_the_solved_plan(priced: tuple[OptionSet, OptionArrays, np.ndarray]) -> None:
    options, arrays, inp = priced
    free = solve(build_batch(options, arrays, inp, _tenants(), PlanSpec()).problem)
    a_rows = np.array([t == "a" for t in _tenants()])
    spent_a = float(arrays.usd[np.arange(N), free.choice][a_rows].sum())
    batch = build_batch(options, arrays, inp, _tenants(), PlanSpec(tenant_spend_usd={"a": spent_a / 4}))
    s = solve(batch.problem)
    assert float(arrays.usd[np.arange(N), s.choice][a_rows].sum()) <= spent_a / 4
    assert tenant_spend("a") in s.binding


def test_guard_rails_and_slo_mask_options(priced: tuple[OptionSet, OptionArrays, np.ndarray]) -> None:
    options, arrays, inp = priced
    slo = float(np.quantile(arrays.latency_p90_s, 0.6))
    spec = PlanSpec(slo_p90_s=slo, rails=GuardRails(max_samples=3, forbid_high_compute=True))
    batch = build_batch(options, arrays, inp, _tenants(), spec)
    feasible = batch.problem.feasible
    assert feasible is not None
    assert not feasible[:, options.samples > 3].any()
    assert not feasible[:, options.high_compute()].any()
    assert not (feasible & (arrays.latency_p90_s > slo)).any()
    s = solve(batch.problem)
    assert (arrays.latency_p90_s[np.arange(N), s.choice] <= slo).all()
    best = np.argmax(arrays.quality, axis=1)
    blocked = ~feasible[np.arange(N), best]
    assert all(bool(r) for r in batch.rail_block[blocked])
    assert not any(batch.rail_block[~blocked])


def test_tenant_rails_are_combined(priced: tuple[OptionSet, OptionArrays, np.ndarray]) -> None:
    options, arrays, inp = priced
    batch = build_batch(options, arrays, inp, _tenants(), PlanSpec(), {"b": GuardRails(max_samples=1)})
    b_rows = np.array([t == "b" for t in _tenants()])
    feasible = batch.problem.feasible
    assert feasible is not None
    assert not feasible[np.ix_(b_rows, options.samples > 1)].any()
    assert feasible[np.ix_(~b_rows, options.samples > 1)].any()


def test_rails_leaving_nothing_are_infeasible(priced: tuple[OptionSet, OptionArrays, np.ndarray]) -> None:
    options, arrays, inp = priced
    with pytest.raises(InfeasibleError, match="max_latency_s"):
        build_batch(options, arrays, inp, _tenants(), PlanSpec(slo_p90_s=1e-9))


def test_unknown_capacity_target_is_rejected(priced: tuple[OptionSet, OptionArrays, np.ndarray]) -> None:
    options, arrays, inp = priced
    with pytest.raises(InvalidArgumentError) as err:
        build_batch(options, arrays, inp, _tenants(), PlanSpec(capacity_device_s={"nope": 1.0}))
    assert err.value.violations[0].field == "capacity[nope].target"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"total_spend_usd": -1.0}, "total_spend_usd"),
        ({"slo_p90_s": float("inf")}, "slo.p90_e2e_s"),
        ({"tenant_energy_kwh": {"a": -1.0}}, "tenant_budgets[a].energy_kwh"),
        ({"objective": Objective.MIN_COST}, "target_quality"),
        ({"objective": Objective.MIN_COST, "target_quality": 1.2}, "target_quality"),
        ({"target_quality": 0.5}, "target_quality"),
    ],
)
def test_plan_spec_rejects_bad_values(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidArgumentError) as err:
        PlanSpec(**kwargs)  # type: ignore[arg-type]
    assert field in [v.field for v in err.value.violations]


def test_kinds() -> None:
    assert kind_of(TOTAL_SPEND) is ConstraintKind.SPEND
    assert kind_of(tenant_spend("x")) is ConstraintKind.SPEND
    assert kind_of(TOTAL_ENERGY) is ConstraintKind.ENERGY
    assert kind_of("tenant:x:energy_kwh") is ConstraintKind.ENERGY
    assert kind_of(capacity("h100")) is ConstraintKind.CAPACITY
    assert kind_of(TARGET_QUALITY) is ConstraintKind.QUALITY


def test_explanations(priced: tuple[OptionSet, OptionArrays, np.ndarray]) -> None:
    options, arrays, inp = priced
    free = solve(build_batch(options, arrays, inp, _tenants(), PlanSpec()).problem)
    full = float(arrays.usd[np.arange(N), free.choice].sum())
    batch = build_batch(options, arrays, inp, _tenants(), PlanSpec(total_spend_usd=full * 0.2))
    s = solve(batch.problem)
    why = explain(batch.problem, s)
    r = np.arange(N)
    off_best = arrays.quality[r, s.choice] < arrays.quality.max(axis=1)
    assert (why.binding[off_best] == 0).all()  # the only constraint: total spend
    assert (why.binding[~off_best] == -1).all()
    np.testing.assert_allclose(why.shadow_price[off_best], s.multipliers["spend"])
    assert (why.runner_up != s.choice).all() and (why.runner_up >= 0).all()
    np.testing.assert_allclose(why.runner_up_value, arrays.quality[r, why.runner_up])
    assert (why.gain_per_usd[off_best] > 0).all()
    # the gain per USD is the steepest step up: no option beats it
    for i in np.flatnonzero(off_best)[:5]:
        c = s.choice[i]
        up = (arrays.quality[i] > arrays.quality[i, c]) & (arrays.usd[i] > arrays.usd[i, c])
        ratios = (arrays.quality[i, up] - arrays.quality[i, c]) / (arrays.usd[i, up] - arrays.usd[i, c])
        assert why.gain_per_usd[i] == pytest.approx(ratios.max())


def test_min_cost_explanations_name_the_quality_target(
    priced: tuple[OptionSet, OptionArrays, np.ndarray],
) -> None:
    options, arrays, inp = priced
    target = float(arrays.quality.max(axis=1).mean()) * 0.95
    spec = PlanSpec(objective=Objective.MIN_COST, target_quality=target)
    batch = build_batch(options, arrays, inp, _tenants(), spec)
    s = solve(batch.problem)
    why = explain(batch.problem, s)
    named = {batch.public_name(why.binding_name(i)) for i in range(N) if why.binding[i] >= 0}
    assert named == {TARGET_QUALITY}
