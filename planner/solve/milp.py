"""Exact reference: the allocation problem as a mixed-integer program solved by HiGHS (`scipy.optimize.milp`).

One binary per valid (query, option) entry, one equality per query (exactly one option), one inequality per
hard constraint of the canonical form. Meant for small instances (tests, the `SOLVER_METHOD_MILP` request
option) and as the speed baseline of `bench/solver_scale.py`; the Lagrangian solver serves large plans.
The returned `Solution` has the same meaning as `planner.solve.solve`'s: `bound` is HiGHS's proven dual bound
and `gap` its relative gap (0 when solved to optimality within `mip_rel_gap`). Its shadow prices are the
duals of the LP relaxation (solved once more by HiGHS after the MILP): the prices the Lagrangian solver
reports, since its dual is that relaxation's.
"""

from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp
from scipy.optimize import Bounds, LinearConstraint, linprog, milp

from planner.errors import InfeasibleError, PlannerError
from planner.solve.canonical import canonical, to_dense
from planner.solve.problem import (
    QUALITY,
    SPEND,
    Objective,
    Problem,
    Solution,
    SolveStats,
    binding_constraints,
)

MIP_REL_GAP = 1e-9
"""Relative gap HiGHS must prove before it stops (short of its time limit)."""
Scaled = tuple[sp.csr_array, np.ndarray, np.ndarray]
"""Hard-constraint rows scaled to unit limits, their limits, and the scale of each row."""


def solve_milp(
    problem: Problem, *, time_limit_s: float | None = None, rel_gap: float = MIP_REL_GAP, prices: bool = True
) -> Solution:
    """Solve `problem` exactly with HiGHS branch and bound (or to `rel_gap` / the time limit); `prices=False`
    skips the LP relaxation that prices the constraints (the MILP alone, e.g. as a speed baseline).

    Raises InfeasibleError when no plan meets the hard constraints, PlannerError when HiGHS stops on its time
    limit without any feasible plan.
    """
    t0 = time.perf_counter()
    c = canonical(problem)
    d = to_dense(c)
    rows, cols = np.nonzero(d.valid)
    nvar = rows.size
    obj = d.obj[rows, cols]
    pick = sp.csr_array((np.ones(nvar), (rows, np.arange(nvar))), shape=(c.n, nvar))
    constraints = [LinearConstraint(pick, 1.0, 1.0)]
    scaled: Scaled | None = None
    if c.k:
        # each row scaled to unit right-hand side (or unit largest coefficient): the same constraint, but
        # HiGHS's absolute feasibility tolerance then means the same thing for dollars, joules and seconds
        a = d.A[:, rows, cols]
        scale = np.where(np.abs(c.b) > 0, np.abs(c.b), np.abs(a).max(axis=1, initial=0.0))
        scale = np.where(scale > 0, scale, 1.0)
        scaled = (sp.csr_array(a / scale[:, None]), c.b / scale, scale)
        constraints.append(LinearConstraint(scaled[0], -np.inf, scaled[1]))
    options: dict[str, float | bool] = {"mip_rel_gap": rel_gap, "presolve": True}
    if time_limit_s is not None:
        options["time_limit"] = max(float(time_limit_s), 1e-3)
    res = milp(
        -obj,
        constraints=constraints,
        integrality=np.ones(nvar),
        bounds=Bounds(0.0, 1.0),
        options=options,
    )
    if res.status == 2:
        raise InfeasibleError("no plan meets every hard constraint (MILP proved infeasibility)")
    if res.x is None:
        raise PlannerError(f"MILP stopped without a feasible plan: {res.message}")
    x = res.x > 0.5
    choice = np.empty(c.n, dtype=np.int64)
    choice[rows[x]] = cols[x]
    dual_bound = -float(getattr(res, "mip_dual_bound", -res.fun))
    duals = _lp_prices(obj, pick, scaled, c.names) if scaled is not None and prices else {}
    return _solution(problem, c.names, c.b, choice, dual_bound, res, time.perf_counter() - t0, duals)


def _lp_prices(
    obj: np.ndarray, pick: sp.csr_array, scaled: Scaled, names: tuple[str, ...]
) -> dict[str, float]:
    """Shadow price of each hard constraint (objective units per unit of the constraint): the duals of the LP
    relaxation, undoing the row scaling. Empty when HiGHS does not solve the relaxation."""
    a, b, scale = scaled
    res = linprog(
        -obj, A_ub=a, b_ub=b, A_eq=pick, b_eq=np.ones(pick.shape[0]), bounds=(0.0, 1.0), method="highs"
    )
    if res.status != 0:
        return {}
    marginals = np.asarray(res.ineqlin.marginals, float)  # d(-objective) / d(scaled limit), <= 0
    return {name: max(0.0, -float(marginals[k]) / float(scale[k])) for k, name in enumerate(names)}


def _solution(
    problem: Problem,
    names: tuple[str, ...],
    b: np.ndarray,
    choice: np.ndarray,
    dual_bound: float,
    res: object,
    seconds: float,
    prices: dict[str, float],
) -> Solution:
    """Package a MILP answer as a `Solution` (objective in the problem's own sense; LP-relaxation prices)."""
    r = np.arange(problem.n_queries)
    total_value = float(problem.value[r, choice].sum(dtype=np.float64))
    total_cost = float(problem.cost[r, choice].sum(dtype=np.float64))
    usage: dict[str, float] = {}
    limits: dict[str, float] = {}
    for k, name in enumerate(names):
        if name == QUALITY:
            usage[name], limits[name] = total_value, -float(b[k])
        elif name == SPEND:
            usage[name], limits[name] = total_cost, float(b[k])
        else:
            usage[name] = float(problem.resources[name][r, choice].sum(dtype=np.float64))
            limits[name] = float(b[k])
    if problem.objective is Objective.MIN_COST:
        value, bound = total_cost, -dual_bound
        gap = max(value - bound, 0.0) / max(abs(bound), 1e-12)
    else:
        value, bound = total_value, dual_bound
        gap = max(bound - value, 0.0) / max(abs(bound), 1e-12)
    status = int(getattr(res, "status", 0))
    stats = SolveStats(
        iterations=int(getattr(res, "mip_node_count", 0) or 0),
        seconds=seconds,
        mean_frontier=float(problem.n_options),
        max_frontier=problem.n_options,
        reduced_queries=problem.n_queries,
        timed_out=status == 1,
        method="milp-highs",
    )
    binding = binding_constraints(names, prices, usage, limits)
    return Solution(choice, value, bound, gap, usage, limits, prices, binding, stats, problem.objective)
