"""Selection optimism of a plan's promise (`planner.solve.optimism`): zero without noise, none when one
option dominates, and on simulated runs it matches the optimism a plan picked on noisy levels really has."""

from __future__ import annotations

import numpy as np
import pytest

from planner.solve import Objective, Problem, solve
from planner.solve.optimism import Optimism, selection_optimism


def _equal_tiers(n: int = 300, k: int = 6, p: float = 0.8) -> Problem:
    return Problem(value=np.full((n, k), p), cost=np.ones((n, k)))


def level_arrays(
    tier_col: np.ndarray, level_se: np.ndarray, level_group: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(se, level) of each (query, option) from per-tier errors and each query's group, as
    `planner.options.OptionSet.level_errors` builds them from a forecast."""
    n_tiers = level_se.shape[1]
    return level_se[:, tier_col], level_group[:, None] * n_tiers + tier_col[None, :]


def _one_level_per_tier(n: int, k: int, se: float) -> tuple[np.ndarray, np.ndarray]:
    return level_arrays(np.arange(k), np.full((n, k), se), np.zeros(n, dtype=int))


def test_no_level_error_means_no_optimism() -> None:
    problem = _equal_tiers()
    sol = solve(problem)
    se, level = _one_level_per_tier(300, 6, 0.0)
    assert selection_optimism(problem, sol, se, level) == Optimism(0.0, 0.0, 32, 300)


def test_near_equal_tiers_are_optimistic_by_about_the_expected_maximum() -> None:
    n, k, p, se_logit = 300, 6, 0.8, 0.2
    problem = _equal_tiers(n, k, p)
    se, level = _one_level_per_tier(n, k, se_logit)
    got = selection_optimism(problem, solve(problem), se, level, draws=400)
    expected_max_of_6 = 1.2672  # E[max of 6 standard normals]
    assert got.mean == pytest.approx(expected_max_of_6 * p * (1 - p) * se_logit, rel=0.08)
    assert got.mc_se < 0.05 * got.mean


def test_a_dominant_option_leaves_nothing_to_correct() -> None:
    value = np.tile([0.95, 0.5, 0.4], (200, 1))
    problem = Problem(value=value, cost=np.ones_like(value))
    se, level = _one_level_per_tier(200, 3, 0.1)
    assert abs(selection_optimism(problem, solve(problem), se, level).mean) < 2e-3


def test_shared_levels_move_together_and_groups_apart() -> None:
    # two groups of queries with their own levels (two tasks, or two folds' forecasters) -- same per-query
    # optimism as one group; but one level shared by every option of a query cannot flatter a choice
    n, k = 400, 4
    problem = _equal_tiers(n, k)
    sol = solve(problem)
    one = selection_optimism(problem, sol, *_one_level_per_tier(n, k, 0.3), draws=200)
    grouped = level_arrays(np.arange(k), np.full((n, k), 0.3), np.arange(n) % 2)
    two = selection_optimism(problem, sol, *grouped, draws=200)
    assert two.mean == pytest.approx(one.mean, rel=0.15)
    shared = level_arrays(np.zeros(k, dtype=np.intp), np.full((n, 1), 0.3), np.zeros(n, dtype=int))
    common = selection_optimism(problem, sol, *shared, draws=200)
    assert abs(common.mean) < 3 * common.mc_se  # zero in expectation: only Monte Carlo noise


def test_matches_the_true_optimism_of_plans_picked_on_noisy_levels() -> None:
    """Simulate the situation it corrects: true tier levels, estimates off by their standard error, a
    budgeted plan on the estimates. Over repetitions, the promise's mean excess over the truth of the picked
    options is what the estimate says (the estimate plays the estimated values as the truth)."""
    rng = np.random.default_rng(1)
    n, k, se_logit = 400, 5, 0.25
    true_level = np.array([0.0, 0.1, 0.2, 1.0, 1.1])  # logit; cheap tiers 0-2 near-equal, 3-4 better
    ease = rng.normal(1.0, 1.0, n)
    cost = np.tile([1.0, 1.1, 1.2, 3.0, 3.2], (n, 1))
    se, level = _one_level_per_tier(n, k, se_logit)
    actual, estimated = [], []
    for _ in range(60):
        est_level = true_level + rng.normal(0.0, se_logit, k)
        truth = 1 / (1 + np.exp(-(ease[:, None] + true_level[None, :])))
        value = 1 / (1 + np.exp(-(ease[:, None] + est_level[None, :])))
        problem = Problem(value=value, cost=cost, budget=1.8 * n)
        sol = solve(problem)
        rows = np.arange(n)
        actual.append(float((value[rows, sol.choice] - truth[rows, sol.choice]).mean()))
        seed = int(rng.integers(1 << 30))
        estimated.append(selection_optimism(problem, sol, se, level, draws=64, seed=seed).mean)
    assert np.mean(actual) > 0.005  # the promise really is optimistic here
    assert np.mean(estimated) == pytest.approx(np.mean(actual), rel=0.35)


def test_min_cost_plans_and_masks_are_priced_as_in_the_plan() -> None:
    n, k = 200, 4
    value = np.tile([0.6, 0.62, 0.9, 0.91], (n, 1))
    cost = np.tile([1.0, 1.0, 5.0, 5.0], (n, 1))
    feasible = np.ones((n, k), dtype=bool)
    feasible[:, 3] = False
    problem = Problem(
        value=value, cost=cost, feasible=feasible, objective=Objective.MIN_COST, target_mean_value=0.75
    )
    sol = solve(problem)
    got = selection_optimism(problem, sol, *_one_level_per_tier(n, k, 0.2), draws=100)
    assert got.mean > 0  # near-equal cheap tiers 0 and 1 compete; masked tier 3 never counts
    assert got.rows == n and got.draws == 100


def test_large_batches_use_a_seeded_subset_and_bad_shapes_are_rejected() -> None:
    problem = _equal_tiers(5000, 3)
    sol = solve(problem)
    se, level = _one_level_per_tier(5000, 3, 0.2)
    a = selection_optimism(problem, sol, se, level, max_rows=1000, seed=3)
    b = selection_optimism(problem, sol, se, level, max_rows=1000, seed=3)
    assert a == b and a.rows == 1000
    with pytest.raises(ValueError, match="problem's shape"):
        selection_optimism(problem, sol, se[:10], level[:10])
    with pytest.raises(ValueError, match="draws"):
        selection_optimism(problem, sol, se, level, draws=0)
