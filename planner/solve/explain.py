"""Per-query explanations of a solved plan, computed from the solution's shadow prices (vectorised).

For every query:

* `binding`: the constraint that kept the query off its best-quality option -- the one whose shadow price
  weighs most on the difference between that option and the chosen one (``lam_k * (A_k[best] -
  A_k[chosen])``; with MIN_COST the quality target prices the quality given up) -- or -1 when the query got
  its best option (nothing binds it). When every multiplier is zero but the query
  still did not get its best option (rounding had to leave it below), the constraint with the least relative
  slack that the better option would use more of is named.
* `runner_up`: the option with the next-best Lagrangian score (objective less priced resource use) -- what
  the query would get if the chosen one were removed; -1 when the query has a single feasible option.
* `gain_per_usd`: the steepest expected-quality gain per extra dollar among the feasible options that cost
  more and bring more (the next step up the query's quality/cost frontier); 0 at the top of the frontier.

Arrays are computed in row blocks so large plans need no (n, m) temporaries beyond one block.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from planner.solve.canonical import Canon, canonical
from planner.solve.problem import QUALITY, Problem, Solution

BLOCK_ROWS = 8192


@dataclass(frozen=True, eq=False)
class Explanations:
    """Per-query explanation arrays, shape (n,); constraint indices refer to `names`."""

    names: tuple[str, ...]
    binding: npt.NDArray[np.int64]
    shadow_price: npt.NDArray[np.float64]
    runner_up: npt.NDArray[np.int64]
    runner_up_value: npt.NDArray[np.float64]
    runner_up_cost: npt.NDArray[np.float64]
    gain_per_usd: npt.NDArray[np.float64]
    best_value_option: npt.NDArray[np.int64]

    def binding_name(self, i: int) -> str:
        """Name of query i's binding constraint ('' when none binds it)."""
        k = int(self.binding[i])
        return self.names[k] if k >= 0 else ""


def explain(problem: Problem, solution: Solution) -> Explanations:
    """Explanations for every query of `solution` (a solution of `problem`)."""
    c = canonical(problem)
    lam = np.array([solution.multipliers.get(name, 0.0) for name in c.names], dtype=np.float64)
    usage = np.array([solution.usage[name] for name in c.names], dtype=np.float64)
    limits = np.array([solution.limits[name] for name in c.names], dtype=np.float64)
    rel_slack = np.abs(limits - usage) / np.maximum(np.abs(limits), 1e-12)
    parts = [
        _block(c, s, min(s + BLOCK_ROWS, c.n), solution.choice, lam, rel_slack)
        for s in range(0, c.n, BLOCK_ROWS)
    ]
    cat = [np.concatenate([p[i] for p in parts]) for i in range(6)]
    binding = cat[0].astype(np.int64)
    price = np.where(binding >= 0, lam[np.maximum(binding, 0)] if c.k else 0.0, 0.0)
    return Explanations(
        names=c.names,
        binding=binding,
        shadow_price=np.asarray(price, dtype=np.float64),
        runner_up=cat[1].astype(np.int64),
        runner_up_value=cat[2],
        runner_up_cost=cat[3],
        gain_per_usd=cat[4],
        best_value_option=cat[5].astype(np.int64),
    )


F64 = npt.NDArray[np.float64]


def _block(
    c: Canon, start: int, stop: int, choice: npt.NDArray[np.integer], lam: F64, slack: F64
) -> tuple[F64, ...]:
    p = c.problem
    obj, a, valid = c.block(start, stop)
    r = np.arange(stop - start)
    ch = np.asarray(choice[start:stop], dtype=np.int64)
    value = np.where(valid, p.value[start:stop], -np.inf).astype(np.float64)
    cost = p.cost[start:stop].astype(np.float64)
    # runner-up: next best Lagrangian score
    score = obj - np.tensordot(lam, a, axes=1) if c.k else obj.copy()
    score[r, ch] = -np.inf
    runner = np.argmax(score, axis=1)
    has_runner = np.isfinite(score[r, runner])
    runner = np.where(has_runner, runner, -1)
    ru = np.maximum(runner, 0)
    # best-quality option and the constraint that kept the query off it
    best = np.argmax(value, axis=1)
    off_best = value[r, best] > value[r, ch]
    binding = np.full(stop - start, -1, dtype=np.int64)
    if c.k:
        diff = a[:, r, best] - a[:, r, ch]  # (k, rows): extra use of each constraint by the best option
        if QUALITY in c.names:  # MIN_COST: the quality target prices the quality the query goes without
            q = c.names.index(QUALITY)
            diff[q] = -diff[q]
        weight = lam[:, None] * diff
        priced = weight.max(axis=0) > 0
        fallback = np.where(diff > 0, -slack[:, None], -np.inf)  # least slack among those it uses more of
        pick = np.where(priced, weight.argmax(axis=0), fallback.argmax(axis=0))
        any_more = priced | np.isfinite(fallback.max(axis=0))
        binding = np.where(off_best & any_more, pick, -1)
    # steepest quality gain per extra dollar
    dv = value - value[r, ch][:, None]
    dc = cost - cost[r, ch][:, None]
    up = valid & (dv > 0) & (dc > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(up, dv / np.where(up, dc, 1.0), 0.0)
    gain = ratio.max(axis=1, initial=0.0)
    return (
        binding.astype(np.float64),
        runner.astype(np.float64),
        np.where(has_runner, value[r, ru], np.nan),
        np.where(has_runner, cost[r, ru], np.nan),
        gain,
        best.astype(np.float64),
    )
