"""Invariants of the solver on random small instances (hypothesis), checked against the exact HiGHS MILP:

* no plan ever exceeds a hard budget or capacity (or misses a MIN_COST quality target);
* the reported bound is valid, so the reported gap is never below the true gap to the MILP optimum.
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from planner.errors import InfeasibleError
from planner.solve import Objective, Problem, solve, solve_milp

RTOL = 1e-7
"""HiGHS meets constraints to its feasibility tolerance, so its optimum may sit a hair above the true one."""


@st.composite
def instances(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    n = draw(st.integers(1, 12))
    m = draw(st.integers(1, 6))

    # values on a grid: HiGHS meets constraints only to an absolute tolerance (1e-6), so entries like 1e-15
    # would let the reference "fit" plans that are in truth over a limit
    def grid(top: int, scale: float) -> np.ndarray:
        ints = draw(hnp.arrays(np.int64, (n, m), elements=st.integers(0, top)))
        return ints.astype(np.float64) * scale

    quality, cost, energy, device = grid(1000, 1e-3), grid(1000, 1e-2), grid(100, 1.0), grid(50, 0.1)
    mask = draw(hnp.arrays(np.bool_, (n, m)))
    mask[np.arange(n), draw(hnp.arrays(np.int64, n, elements=st.integers(0, m - 1)))] = True
    return quality, cost, energy, device, mask


def _cap(a: np.ndarray, mask: np.ndarray, frac: float) -> float:
    lo = float(np.where(mask, a, np.inf).min(axis=1).sum())
    hi = float(np.where(mask, a, -np.inf).max(axis=1).sum())
    return lo + frac * (hi - lo)


def _check_feasible(p: Problem, choice: np.ndarray) -> None:
    r = np.arange(p.n_queries), choice
    assert p.feasible is None or p.feasible[r].all()
    if p.budget is not None:
        assert float(p.cost[r].sum()) <= p.budget
    for name, arr in p.resources.items():
        assert float(arr[r].sum()) <= p.capacities[name]
    if p.objective is Objective.MIN_COST:
        floor = p.target_mean_value * p.n_queries  # type: ignore[operator]
        assert float(p.value[r].sum()) >= floor - 1e-12 * max(abs(floor), 1.0)  # QUALITY_RTOL


@settings(max_examples=200, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(instances(), st.floats(0.0, 1.2), st.floats(0.0, 1.2), st.integers(0, 3))
def test_max_value_never_exceeds_a_limit_and_gap_is_certified(
    inst: tuple[np.ndarray, ...], spend_frac: float, energy_frac: float, n_resources: int
) -> None:
    quality, cost, energy, device, mask = inst
    names = ["energy", "device:a", "device:b"][:n_resources]
    arrays = {"energy": energy, "device:a": device, "device:b": device[:, ::-1].copy()}
    resources = {k: arrays[k] for k in names}
    caps = {k: _cap(arrays[k], mask, energy_frac) for k in names}
    p = Problem(
        quality,
        cost,
        budget=_cap(cost, mask, spend_frac),
        resources=resources,
        capacities=caps,
        feasible=mask,
    )
    try:
        exact = solve_milp(p)
    except InfeasibleError:
        exact = None
    try:
        s = solve(p)
    except InfeasibleError:
        assert exact is None, "the solver missed a plan that meets every limit"
        return
    _check_feasible(p, s.choice)
    assert exact is not None, "solver found a plan the MILP calls infeasible"
    assert s.value <= exact.value + RTOL * max(1.0, abs(exact.value))
    assert s.bound >= exact.value - RTOL * max(1.0, abs(exact.value))
    true_gap = max(exact.value - s.value, 0.0) / max(abs(s.bound), 1e-12)
    assert s.gap >= true_gap - 1e-9


@settings(max_examples=120, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(instances(), st.floats(0.0, 1.0))
def test_min_cost_meets_the_target_and_bound_is_below_the_optimum(
    inst: tuple[np.ndarray, ...], frac: float
) -> None:
    quality, cost, _, _, mask = inst
    lo = float(np.where(mask, quality, np.inf).min(axis=1).mean())
    hi = float(np.where(mask, quality, -np.inf).max(axis=1).mean())
    p = Problem(
        quality, cost, feasible=mask, objective=Objective.MIN_COST, target_mean_value=lo + frac * (hi - lo)
    )
    s = solve(p)
    _check_feasible(p, s.choice)
    exact = solve_milp(p)
    assert s.value >= exact.value - RTOL * max(1.0, abs(exact.value))
    assert s.bound <= exact.value + RTOL * max(1.0, abs(exact.value))
    true_gap = max(s.value - exact.value, 0.0) / max(abs(s.bound), 1e-12)
    assert s.gap >= true_gap - 1e-9
