"""`planner.solve.solve`: budgets met, gap certified against the exact MILP, both objectives and paths."""

from __future__ import annotations

import numpy as np
import pytest
from solve_instances import between, make_instance

from planner.errors import InfeasibleError, InvalidArgumentError
from planner.solve import SPEND, Objective, Problem, solve, solve_milp
from planner.solve import solver as solver_module
from planner.solve.dense import Dense, evaluate, split_by_width


def _rows(p: Problem, choice: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.arange(p.n_queries), choice


def test_no_constraint_picks_each_rows_best() -> None:
    q, c, _ = make_instance(50, 6, seed=1)
    s = solve(Problem(q, c))
    assert np.array_equal(s.choice, q.argmax(axis=1))
    assert s.gap == 0.0
    assert s.binding == ()


def test_spend_budget_is_met_and_gap_certified() -> None:
    q, c, _ = make_instance(300, 10, seed=2)
    budget = between(c, 0.2)
    p = Problem(q, c, budget=budget)
    s = solve(p)
    assert s.usage[SPEND] <= budget
    assert float(c[_rows(p, s.choice)].sum()) <= budget
    exact = solve_milp(p)
    assert s.value <= exact.value + 1e-9
    assert s.bound >= exact.value - 1e-6 * exact.value
    assert s.gap >= (exact.value - s.value) / s.bound - 1e-12
    assert SPEND in s.binding and s.multipliers[SPEND] > 0
    assert s.stats.method == "lp-exact"


def test_milp_reports_the_lp_relaxation_prices() -> None:
    q, c, e = make_instance(300, 10, seed=2)
    one = Problem(q, c, budget=between(c, 0.2))
    exact, lag = solve_milp(one), solve(one)
    assert exact.multipliers[SPEND] == pytest.approx(lag.multipliers[SPEND], rel=1e-9)
    assert exact.binding == (SPEND,)
    target = float(q.min(axis=1).mean() * 0.3 + q.max(axis=1).mean() * 0.7)
    cheap = Problem(q, c, objective=Objective.MIN_COST, target_mean_value=target)
    assert solve_milp(cheap).multipliers == pytest.approx(solve(cheap).multipliers, rel=1e-9)
    two = Problem(
        q, c, budget=between(c, 0.5), resources={"energy": e}, capacities={"energy": between(e, 0.1)}
    )
    prices = solve_milp(two).multipliers  # the Lagrangian's cutting planes get within a few percent of these
    assert prices[SPEND] == 0.0 and prices["energy"] == pytest.approx(
        solve(two).multipliers["energy"], rel=0.02
    )


def test_spend_and_energy_budgets() -> None:
    q, c, e = make_instance(200, 8, seed=4)
    p = Problem(q, c, budget=between(c, 0.5), resources={"energy": e}, capacities={"energy": between(e, 0.1)})
    s = solve(p)
    r = _rows(p, s.choice)
    assert float(c[r].sum()) <= p.budget  # type: ignore[operator]
    assert float(e[r].sum()) <= p.capacities["energy"]
    exact = solve_milp(p)
    assert exact.value - 1e-6 <= s.bound
    assert s.value <= exact.value + 1e-9
    assert "energy" in s.binding


def test_min_cost_reaches_target_quality() -> None:
    q, c, _ = make_instance(150, 7, seed=5)
    target = float(q.min(axis=1).mean() * 0.3 + q.max(axis=1).mean() * 0.7)
    p = Problem(q, c, objective=Objective.MIN_COST, target_mean_value=target)
    s = solve(p)
    assert float(q[_rows(p, s.choice)].mean()) >= target - 1e-12
    exact = solve_milp(p)
    assert s.bound <= exact.value * (1 + 1e-6)  # a lower bound on the least cost
    assert s.value >= exact.value * (1 - 1e-9)
    assert s.gap >= 0


def test_feasible_mask_is_respected() -> None:
    q, c, _ = make_instance(100, 6, seed=6)
    mask = np.ones_like(q, dtype=bool)
    best = q.argmax(axis=1)
    mask[np.arange(100), best] = False
    s = solve(Problem(q, c, feasible=mask, budget=between(c, 0.9)))
    assert mask[np.arange(100), s.choice].all()


def test_minus_inf_value_marks_an_option_infeasible() -> None:
    q, c, _ = make_instance(20, 4, seed=7)
    q = q.copy()
    q[:, 0] = -np.inf
    s = solve(Problem(q, c))
    assert (s.choice != 0).all()


def test_budget_below_cheapest_plan_is_infeasible() -> None:
    q, c, _ = make_instance(30, 5, seed=8)
    with pytest.raises(InfeasibleError, match="spend"):
        solve(Problem(q, c, budget=float(c.min(axis=1).sum()) * 0.99))


def test_unreachable_quality_target_is_infeasible() -> None:
    q, c, _ = make_instance(30, 5, seed=8)
    with pytest.raises(InfeasibleError, match="target mean value"):
        solve(
            Problem(q, c, objective=Objective.MIN_COST, target_mean_value=float(q.max(axis=1).mean()) + 0.01)
        )


def test_query_with_no_feasible_option_is_infeasible() -> None:
    q, c, _ = make_instance(10, 3, seed=9)
    mask = np.ones_like(q, dtype=bool)
    mask[4] = False
    with pytest.raises(InfeasibleError, match=r"\[4\]"):
        solve(Problem(q, c, feasible=mask))


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"budget": -1.0}, "budget"),
        ({"budget": float("nan")}, "budget"),
        ({"resources": {"energy": np.ones((3, 2))}}, "capacities[energy]"),
        ({"resources": {"spend": np.ones((3, 2))}, "capacities": {"spend": 1.0}}, "resources[spend]"),
        ({"objective": Objective.MIN_COST}, "target_mean_value"),
        ({"target_mean_value": 0.5}, "target_mean_value"),
        ({"feasible": np.ones((3, 2), dtype=np.int8)}, "feasible.dtype"),
    ],
)
def test_problem_rejects_bad_fields(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidArgumentError) as err:
        Problem(np.ones((3, 2)), np.ones((3, 2)), **kwargs)  # type: ignore[arg-type]
    assert field in [v.field for v in err.value.violations]


def test_negative_cost_is_rejected_with_its_index() -> None:
    c = np.ones((3, 2))
    c[1, 1] = -0.5
    with pytest.raises(InvalidArgumentError) as err:
        solve(Problem(np.ones((3, 2)), c, budget=10.0))
    assert err.value.violations[0].field == "cost[1, 1]"
    assert err.value.violations[0].value == -0.5


def test_large_path_screens_and_matches_the_small_path(monkeypatch: pytest.MonkeyPatch) -> None:
    q, c, e = make_instance(6000, 20, seed=10, dtype=np.float32)
    p = Problem(q, c, budget=between(c, 0.3), resources={"energy": e}, capacities={"energy": between(e, 0.2)})
    small = solve(p)
    monkeypatch.setattr(solver_module, "SMALL_ELEMENTS", 1000)
    monkeypatch.setattr(solver_module, "SAMPLE_ROWS", 1500)
    monkeypatch.setattr(solver_module, "UPGRADE_ROWS", 50)  # exercise the near-tie upgrade
    large = solve(p, workers=2)
    assert large.stats.method == "screened-lagrangian"
    r = np.arange(6000), large.choice
    assert float(c[r].sum(dtype=np.float64)) <= p.budget  # type: ignore[operator]
    assert float(e[r].sum(dtype=np.float64)) <= p.capacities["energy"]
    assert large.gap < 1e-3
    # both bounds are valid, so each plan is below the other's bound
    assert large.value <= small.bound * (1 + 1e-6)
    assert small.value <= large.bound * (1 + 1e-6)


def test_time_limit_still_returns_a_feasible_plan() -> None:
    q, c, e = make_instance(500, 10, seed=11)
    p = Problem(q, c, budget=between(c, 0.3), resources={"energy": e}, capacities={"energy": between(e, 0.2)})
    s = solve(p, time_limit_s=0.0)
    r = np.arange(500), s.choice
    assert float(c[r].sum()) <= p.budget  # type: ignore[operator]
    assert float(e[r].sum()) <= p.capacities["energy"]
    assert s.bound >= s.value


def test_blocks_oracle_equals_the_dense_one() -> None:
    rng = np.random.default_rng(12)
    n, m = 300, 9
    obj = rng.uniform(0, 1, (n, m))
    width = np.sort(rng.integers(1, m + 1, n))
    obj[np.arange(m)[None, :] >= width[:, None]] = -np.inf
    a = np.where(np.isfinite(obj)[None], rng.uniform(0, 1, (2, n, m)), 0.0)
    d = Dense(obj, a, np.array([50.0, 60.0]), np.broadcast_to(np.arange(m), (n, m)))
    blocks = split_by_width(d)
    assert sum(p.n for p in blocks.parts) == n and len(blocks.parts) > 1
    for lam in (np.zeros(2), np.array([0.3, 0.1]), np.array([2.0, 5.0])):
        one, many = evaluate(d, lam), evaluate(blocks, lam)
        assert abs(one.L - many.L) <= 1e-9 * abs(one.L)
        assert np.array_equal(one.choice, many.choice)
        np.testing.assert_allclose(one.usage, many.usage)


def test_large_path_min_cost(monkeypatch: pytest.MonkeyPatch) -> None:
    q, c, _ = make_instance(5000, 16, seed=13, dtype=np.float32)
    target = float(q.min(axis=1).mean() * 0.4 + q.max(axis=1).mean() * 0.6)
    p = Problem(q, c, objective=Objective.MIN_COST, target_mean_value=target)
    small = solve(p)
    monkeypatch.setattr(solver_module, "SMALL_ELEMENTS", 1000)
    monkeypatch.setattr(solver_module, "SAMPLE_ROWS", 1200)
    large = solve(p, workers=2)
    assert large.stats.method == "screened-lagrangian"
    assert float(q[np.arange(5000), large.choice].sum(dtype=np.float64)) >= target * 5000 * (1 - 1e-12)
    assert large.gap < 1e-3
    assert large.bound <= small.value * (1 + 1e-6) and small.bound <= large.value * (1 + 1e-6)
