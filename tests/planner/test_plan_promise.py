"""`planner.servicers.plan_promise.solve_adjusted`: a MIN_COST plan re-solved until its promise less its
selection optimism reaches the target, or FAILED_PRECONDITION."""

from __future__ import annotations

import numpy as np
import pytest

from planner.errors import InfeasibleError
from planner.servicers.plan_promise import ADJUST_ROUNDS, solve_adjusted
from planner.solve import Objective, Problem, Solution, solve
from planner.solve.optimism import Optimism


def _problem(target: float) -> Problem:
    n = 100
    value = np.tile([0.6, 0.8, 0.9, 0.97], (n, 1))
    cost = np.tile([1.0, 2.0, 4.0, 8.0], (n, 1))
    return Problem(value=value, cost=cost, objective=Objective.MIN_COST, target_mean_value=target)


def _mean(problem: Problem, solution: Solution) -> float:
    return float(problem.value[np.arange(problem.n_queries), solution.choice].mean())


def test_the_target_is_raised_by_the_optimism_and_met_after_it() -> None:
    problem = _problem(0.8)
    first = solve(problem)
    calls: list[float] = []

    def estimate(p: Problem, s: Solution) -> Optimism:
        calls.append(float(p.target_mean_value or 0))
        return Optimism(0.05, 0.001, 32, 100)

    p, s, o = solve_adjusted(problem, first, estimate(problem, first), solve, estimate)
    assert p.target_mean_value == pytest.approx(0.85)
    assert _mean(p, s) - o.mean >= 0.8 - 1e-9
    assert s.value > first.value  # it costs more
    assert p.objective is Objective.MIN_COST and problem.target_mean_value == 0.8  # the input is untouched


def test_a_plan_already_meeting_it_is_returned_as_is() -> None:
    problem = _problem(0.8)
    first = solve(problem)
    none = Optimism.none()
    p, s, o = solve_adjusted(problem, first, none, solve, lambda p, s: none)
    assert p is problem and s is first and o is none


def test_targets_out_of_reach_are_failed_precondition() -> None:
    problem = _problem(0.95)
    first = solve(problem)
    big = Optimism(0.06, 0.001, 32, 100)  # 0.95 + 0.06 > 1
    with pytest.raises(InfeasibleError, match="above 1"):
        solve_adjusted(problem, first, big, solve, lambda p, s: big)
    growing = iter(np.linspace(0.01, 0.02, ADJUST_ROUNDS + 1))

    def worse(p: Problem, s: Solution) -> Optimism:  # the optimism grows with every raise of the target
        return Optimism(float(next(growing)), 0.0, 32, 100)

    with pytest.raises(InfeasibleError, match="re-solves"):
        solve_adjusted(_problem(0.9), solve(_problem(0.9)), Optimism(0.005, 0.0, 32, 100), solve, worse)
