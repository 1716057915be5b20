"""What a Plan promises after selection: its selection optimism, and the least-cost plan whose *adjusted*
promise reaches a quality target.

`plan_optimism` prices the winner's curse of a plan (`planner.solve.optimism`) from the forecast's tier
level errors; `Plan` reports it with the adjusted mean quality. With `target_adjusted_quality`, a
MIN_COST_FOR_QUALITY plan is re-solved with its required mean raised by its own estimated optimism until
its adjusted promise reaches the target (up to twice the estimate's Monte Carlo error), at most
`ADJUST_ROUNDS` times.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from models.api import Forecast
from planner.errors import InfeasibleError
from planner.options import OptionSet
from planner.solve import QUALITY, Problem, Solution
from planner.solve.optimism import Optimism, selection_optimism

ADJUST_ROUNDS = 4
"""Re-solves at most, each with the optimism of the previous plan."""


def plan_optimism(options: OptionSet, forecast: Forecast, problem: Problem, solution: Solution) -> Optimism:
    """The plan's selection optimism; none when the forecast carries no level errors."""
    levels = options.level_errors(forecast)
    if levels is None or not len(forecast.input_tokens):
        return Optimism.none()
    return selection_optimism(problem, solution, *levels)


def solve_adjusted(
    problem: Problem,
    solution: Solution,
    optimism: Optimism,
    resolve: Callable[[Problem], Solution],
    estimate: Callable[[Problem, Solution], Optimism],
) -> tuple[Problem, Solution, Optimism]:
    """The MIN_COST `problem` re-solved (`resolve`) until its plan's mean expected quality less its optimism
    (`estimate`) reaches the problem's target; FAILED_PRECONDITION when the mean that needs exceeds 1 or what
    any plan reaches (the solver's own InfeasibleError), or the rounds run out short of it."""
    target = float(problem.target_mean_value or 0.0)
    n = problem.n_queries
    for _ in range(ADJUST_ROUNDS):
        mean = solution.usage[QUALITY] / n
        if mean - optimism.mean >= target - 2.0 * optimism.mc_se - 1e-9:  # met up to Monte Carlo error
            return problem, solution, optimism
        required = max(target + optimism.mean, mean + 1e-9)
        if required > 1.0:
            raise InfeasibleError(
                f"target_quality {target} with the selection optimism {optimism.mean:.4f} of its plan "
                f"needs a mean expected quality of {required:.4f}, above 1"
            )
        problem = replace(problem, target_mean_value=required)
        solution = resolve(problem)
        optimism = estimate(problem, solution)
    mean = solution.usage[QUALITY] / n
    if mean - optimism.mean < target - 2.0 * optimism.mc_se - 1e-9:
        raise InfeasibleError(
            f"target_quality {target}: after {ADJUST_ROUNDS} re-solves the plan's adjusted promise is "
            f"{mean - optimism.mean:.4f} (its selection optimism keeps growing with the target)"
        )
    return problem, solution, optimism
