"""Selection optimism of a plan's promise (the winner's curse), estimated by a parametric bootstrap.

A plan picks for each query the option whose *estimated* value is best for its cost. Estimates carry error,
and among near-equal options the one picked is more often the one whose error is positive, so the plan's mean
estimated value overstates what it will deliver even when every single estimate is unbiased. The largest such
error is shared: a tier's level (its mean score, `models.level`) is learned from a finite number of runs and
enters every forecast of that tier on a task, so a flattered tier is picked on many queries at once.

The estimate (Efron's bootstrap estimate of optimism, drawn parametrically):
1. draw one error per shared level, `delta_g ~ N(0, se_g^2)` on the logit scale, and perturb every option's
   value with its level's draw, linearised so that the perturbed value is unbiased on the probability
   scale (as a mean score is): `v_b = v + v (1 - v) delta` (strategy options of a tier move with the
   tier: an approximation of moving their single-sample probability);
2. re-pick each query's option with the perturbed values at the plan's own shadow prices (the Lagrangian
   choice of `solution.multipliers`, so every budget, capacity and quality constraint prices options as in
   the plan; rounding is ignored);
3. the optimism is the mean over draws of `mean_i v_b[i, pick] - v[i, pick]`: how much a plan picked on
   noisy values overstates itself when `v` plays the truth.

The adjusted promise is the plan's mean value minus this optimism. Only the shared level errors are drawn:
per-(query, option) errors are not identified from the runs, and drawing them as independent noise
overcorrects (measured on GSM8K; see bench/RESULTS.md), so the adjustment is conservative in that sense.
Large batches are estimated on a seeded random subset of `max_rows` queries (the optimism is a per-query
mean). Pure numpy; deterministic for a given seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from planner.solve.canonical import canonical
from planner.solve.problem import QUALITY, Objective, Problem, Solution

DRAWS = 32
"""Bootstrap draws; the Monte Carlo error of the estimate is reported with it."""
MAX_ROWS = 4096
"""Queries the estimate uses at most (a seeded random subset of larger batches)."""


@dataclass(frozen=True)
class Optimism:
    """Estimated selection optimism of a plan, per query on the value scale (>= 0 in expectation)."""

    mean: float
    """Mean per-query optimism: subtract from the plan's mean value for an adjusted promise."""
    mc_se: float
    """Monte Carlo standard error of `mean` over the draws."""
    draws: int
    rows: int
    """Queries the estimate used."""

    @classmethod
    def none(cls) -> Optimism:
        """No level errors known: no adjustment."""
        return cls(0.0, 0.0, 0, 0)


def selection_optimism(
    problem: Problem,
    solution: Solution,
    se: npt.NDArray[np.floating],
    level: npt.NDArray[np.integer],
    draws: int = DRAWS,
    seed: int = 0,
    max_rows: int = MAX_ROWS,
) -> Optimism:
    """The plan's selection optimism (see the module docstring); `se` and `level` have the problem's
    (queries, options) shape: each option's logit standard error and the id of the level it shares."""
    n, m = problem.n_queries, problem.n_options
    if se.shape != (n, m) or level.shape != (n, m):
        raise ValueError(f"se {se.shape} and level {level.shape} must have the problem's shape {(n, m)}")
    if draws < 1 or max_rows < 1:
        raise ValueError(f"draws {draws} and max_rows {max_rows} must be >= 1")
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(n, size=max_rows, replace=False)) if n > max_rows else np.arange(n)
    value = np.asarray(problem.value[rows], dtype=float)
    valid = np.isfinite(value)
    if problem.feasible is not None:
        valid &= problem.feasible[rows]
    sd = np.where(valid, np.asarray(se[rows], dtype=float), 0.0)
    if not np.any(sd > 0):
        return Optimism(0.0, 0.0, draws, len(rows))
    ids, inverse = np.unique(level[rows], return_inverse=True)
    inverse = inverse.reshape(len(rows), m)
    slope = np.where(valid, np.clip(value, 0.0, 1.0) * (1.0 - np.clip(value, 0.0, 1.0)), 0.0) * sd
    weight, penalty = _prices(problem, solution, rows, valid)
    base = np.where(valid, weight * value - penalty, -np.inf)  # the plan's Lagrangian score per option
    step = weight * slope  # its change per unit draw of the option's level
    take = np.arange(len(rows))
    out = np.empty(draws)
    for b in range(draws):
        shift = rng.standard_normal(len(ids))[inverse]
        pick = np.argmax(base + step * shift, axis=1)  # exact ties pick options of equal perturbed value
        out[b] = float(np.mean(slope[take, pick] * shift[take, pick]))
    return Optimism(
        float(out.mean()), float(out.std(ddof=1) / np.sqrt(draws)) if draws > 1 else 0.0, draws, len(rows)
    )


def _prices(
    problem: Problem, solution: Solution, rows: npt.NDArray[np.intp], valid: npt.NDArray[np.bool_]
) -> tuple[float, npt.NDArray[np.float64]]:
    """(weight of value, per-option penalty) of the plan's Lagrangian: a query picks the valid option
    maximising `weight x value - penalty` (canonical form: constraints priced at the plan's multipliers)."""
    canon = canonical(problem)
    weight = 1.0
    penalty = np.zeros((len(rows), problem.n_options))
    if problem.objective is Objective.MIN_COST:
        weight = float(solution.multipliers.get(QUALITY, 0.0))
        penalty += np.asarray(problem.cost[rows], dtype=float)
    for name, arr, sign in zip(canon.names, canon.arrays, canon.signs, strict=True):
        if name == QUALITY:
            continue
        lam = float(solution.multipliers.get(name, 0.0))
        if lam:
            penalty += lam * float(sign) * np.asarray(arr[rows], dtype=float)
    return weight, np.where(valid, penalty, 0.0)
