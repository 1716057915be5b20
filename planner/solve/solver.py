"""`solve`: frontier pruning, Lagrangian dual, rounding under hard limits, and the gap certificate.

Small instances (rows x options up to `SMALL_ELEMENTS`) are solved on a float64 copy: LP-dominance (one
constraint) or Pareto (several) pruning per row, then the dual over all multipliers >= 0. Large instances are
never copied whole: the dual is first solved on a fixed random sample of rows (budgets scaled), the full
data is screened once down to the options that can be optimal for multipliers in a box around that estimate
(`planner.solve.screen`), and the dual is re-solved exactly on that reduced problem -- re-screening with a
wider box whenever the optimum lands on the box's edge. Either way the reported bound is L(lam) of the full
problem at the final multipliers, a valid upper bound, so the gap is honest even when the deadline cuts the
search short.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np

from planner.errors import InfeasibleError, PlannerError
from planner.solve.canonical import Canon, canonical, to_dense
from planner.solve.dense import F64, I64, Dense, Point, compact, evaluate, lp_frontier, pareto_frontier
from planner.solve.dual import DualResult, minimise
from planner.solve.problem import QUALITY, Objective, Problem, Solution, SolveStats, binding_constraints
from planner.solve.rounding import repair, upgrade
from planner.solve.screen import screen

SMALL_ELEMENTS = 2_000_000
"""Instances with at most this many (row, option) entries are solved on a dense float64 copy."""

SAMPLE_ROWS = 16_384
PARETO_WORK = 40_000_000


@dataclass(frozen=True)
class _Outcome:
    choice: I64
    bound: float
    lam: F64
    iterations: int
    timed_out: bool
    method: str
    mean_frontier: float
    max_frontier: int
    reduced: int


def solve(
    problem: Problem, *, time_limit_s: float | None = None, tol: float = 1e-3, workers: int | None = None
) -> Solution:
    """Best plan found within the time limit, never exceeding a hard limit, with its certified gap.

    `tol` is the relative optimality gap the dual search aims for (it stops earlier when it can certify it).
    `time_limit_s` bounds the dual iterations (pass the request deadline down); one screening pass and the
    rounding always run, so a feasible plan is always returned. `workers` threads scan large instances
    (default: up to 4, bounded by the CPU count). Raises InfeasibleError when no plan meets the limits.
    """
    t0 = time.perf_counter()
    deadline = None if time_limit_s is None else t0 + max(float(time_limit_s), 0.0)
    c = canonical(problem)
    dual_tol = max(min(tol * 1e-2, 1e-6), 1e-12)
    threads = workers if workers is not None else max(1, min(4, os.cpu_count() or 1))
    if c.n * c.m <= SMALL_ELEMENTS:
        out = _solve_small(c, dual_tol, deadline)
    else:
        out = _solve_large(c, dual_tol, deadline, threads)
    return _finish(c, out, t0)


def _scale(d: Dense) -> F64:
    """A typical price per unit of each constraint: objective range over resource range, summed over rows."""
    valid = d.valid
    obj = np.where(valid, d.obj, np.nan)
    span = float(np.nansum(np.nanmax(obj, axis=1) - np.nanmin(obj, axis=1)))
    out = np.empty(d.k)
    for k in range(d.k):
        a = np.where(valid, d.A[k], np.nan)
        rng = float(np.nansum(np.nanmax(a, axis=1) - np.nanmin(a, axis=1)))
        out[k] = span / rng if rng > 0 and span > 0 else 1.0
    return out


def _check_limits(c: Canon, min_usage: F64) -> None:
    for k, name in enumerate(c.names):
        if min_usage[k] > c.b[k] + 1e-12 * abs(c.b[k]) + 1e-300:
            if name == QUALITY:
                raise InfeasibleError(
                    f"target mean value {c.problem.target_mean_value} is above the best achievable mean "
                    f"{-min_usage[k] / c.n:.6g}"
                )
            raise InfeasibleError(
                f"{name}: even the least-consuming option of every query needs {min_usage[k]:.6g}, "
                f"above the limit {c.b[k]:.6g}"
            )


def _start(d: Dense, deadline: float | None) -> F64:
    """Initial multipliers: each constraint's own optimal price, shared among the constraints."""
    scale = _scale(d)
    if d.k == 1:
        return scale
    lam = np.empty(d.k)
    for k in range(d.k):
        single = Dense(d.obj, d.A[k : k + 1], d.b[k : k + 1], d.cols)
        res = minimise(single, np.zeros(1), np.full(1, np.inf), scale[k : k + 1], tol=1e-4, deadline=deadline)
        lam[k] = res.best.lam[0]
    return lam / d.k


def _round(d: Dense, res: DualResult, deadline: float | None, safe: bool = True) -> I64:
    start = (res.feasible_side or res.best).choice
    choice = repair(d, start, deadline, safe=safe)
    if choice is None:  # fall back to each row's least-consuming option (relative to the limits)
        weight = 1.0 / np.maximum(np.abs(d.b), 1e-300)
        frugal = np.argmin(np.where(d.valid, np.tensordot(weight, d.A, axes=1), np.inf), axis=1)
        choice = repair(d, frugal, deadline, safe=safe)
    if choice is None:
        raise InfeasibleError(
            f"no plan found that meets every limit together (limits {np.round(d.b, 9).tolist()})"
        )
    return _upgrade_near_ties(d, choice, res.best.lam, deadline, safe)


UPGRADE_ROWS = 4096
"""Upgrading (spending what rounding left) looks at this many rows, at most 1% more on large instances."""


def _upgrade_near_ties(d: Dense, choice: I64, lam: F64, deadline: float | None, safe: bool) -> I64:
    """`upgrade` restricted to the rows whose best and second-best Lagrangian scores at `lam` are closest:
    only near-ties can gain much per unit of the little slack rounding leaves, and the pass stays cheap."""
    limit = max(UPGRADE_ROWS, d.n // 100)
    if d.n <= limit or d.obj.shape[1] < 2:
        return upgrade(d, choice, deadline, safe=safe)
    score = d.obj - np.tensordot(lam, d.A, axes=1) if d.k else d.obj
    top = np.partition(score, -2, axis=1)[:, -2:]
    with np.errstate(invalid="ignore"):
        gap = np.where(np.isfinite(top[:, 0]), top[:, 1] - top[:, 0], np.inf)
    rows = np.sort(np.argpartition(gap, limit)[:limit])
    others = np.ones(d.n, dtype=bool)
    others[rows] = False
    r = np.flatnonzero(others)
    used = np.array([d.A[k, r, choice[r]].sum() for k in range(d.k)], dtype=np.float64)
    sub = Dense(d.obj[rows], d.A[:, rows], d.b - used, d.cols[rows])
    out = choice.copy()
    out[rows] = upgrade(sub, choice[rows], deadline, safe=True)
    return out


def _solve_small(c: Canon, tol: float, deadline: float | None) -> _Outcome:
    d = to_dense(c)
    if c.k == 0:
        p = evaluate(d, np.zeros(0))
        counts = d.valid.sum(axis=1)
        return _Outcome(
            p.choice, p.L, np.zeros(0), 1, False, "argmax", float(counts.mean()), int(counts.max()), c.n
        )
    valid = d.valid
    _check_limits(c, np.where(valid[None], d.A, np.inf).min(axis=2).sum(axis=1))
    pareto = pareto_frontier(d.obj, d.A, valid) if c.n * c.m * c.m * c.k <= PARETO_WORK else valid
    hull = lp_frontier(d.obj, d.A[0], valid) if c.k == 1 else pareto
    dd = compact(d, hull)
    res = minimise(dd, np.zeros(c.k), np.full(c.k, np.inf), _start(dd, deadline), tol=tol, deadline=deadline)
    rows = np.arange(c.n)
    rounding = Dense(np.where(pareto, d.obj, -np.inf), d.A, d.b, d.cols)
    start = DualResult(
        _map(res.best, dd, rows),
        _map(res.feasible_side, dd, rows) if res.feasible_side else None,
        0.0,
        0,
        False,
    )
    choice = _round(rounding, start, deadline, safe=False)
    counts = hull.sum(axis=1)
    method = "lp-exact" if c.k == 1 else "lagrangian-cutting-plane"
    return _Outcome(
        choice, res.best.L, res.best.lam, res.iterations, res.timed_out, method,
        float(counts.mean()), int(counts.max()), c.n,
    )  # fmt: skip


def _map(p: Point, d: Dense, rows: I64) -> Point:
    """The same point with its choice mapped from compacted columns back to option indices."""
    return Point(p.lam, p.L, d.cols[rows, p.choice], p.usage, p.objective)


def _box(lam: F64, rho: float, floor: F64) -> tuple[F64, F64]:
    half = rho * np.maximum(lam, floor)
    return np.maximum(lam - half, 0.0), lam + half


def _solve_large(c: Canon, tol: float, deadline: float | None, workers: int) -> _Outcome:
    rng = np.random.default_rng(20261123)
    rows = np.sort(rng.choice(c.n, size=min(SAMPLE_ROWS, c.n), replace=False))
    sample = to_dense(c, rows)
    if c.k == 0:
        return _screened_argmax(c, workers)
    sample = sample.with_budget(c.b * (len(rows) / c.n))
    floor = 0.05 * _scale(sample)
    now = time.perf_counter()
    sample_deadline = None if deadline is None else now + 0.3 * max(deadline - now, 0.0)
    sd = compact(sample, lp_frontier(sample.obj, sample.A[0], sample.valid)) if c.k == 1 else sample
    res = minimise(sd, np.zeros(c.k), np.full(c.k, np.inf), _start(sd, sample_deadline), tol=1e-6,
                   deadline=sample_deadline)  # fmt: skip
    lam0, rho, its = res.best.lam, 0.15, res.iterations
    for attempt in range(6):
        lo, hi = _box(lam0, rho, floor)
        scr = screen(c, lam0, lo, hi, workers)
        if attempt == 0:
            _check_limits(c, scr.min_usage)
        res = minimise(scr.blocks(), lo, hi, lam0, tol=tol, deadline=deadline)
        its += res.iterations
        lam = res.best.lam
        at_face = np.any(lam >= hi * (1 - 1e-9)) or np.any((lo > 0) & (lam <= lo * (1 + 1e-9)))
        if not at_face or res.timed_out or attempt == 5:
            break
        lam0, rho = lam, rho * 3.0
    choice_red = _round(scr.dense, res, deadline)
    choice = scr.fixed_choice.astype(np.int64)
    choice[scr.rows] = scr.dense.cols[np.arange(len(scr.rows)), choice_red]
    mean_f, max_f = scr.sizes
    return _Outcome(
        choice, scr.fixed_obj + res.best.L, lam, its, res.timed_out, "screened-lagrangian",
        mean_f, max_f, len(scr.rows),
    )  # fmt: skip


def _screened_argmax(c: Canon, workers: int) -> _Outcome:
    z = np.zeros(0)
    scr = screen(c, z, z, z, workers)
    choice = scr.fixed_choice.astype(np.int64)
    red = evaluate(scr.dense, z)
    choice[scr.rows] = scr.dense.cols[np.arange(len(scr.rows)), red.choice]
    return _Outcome(choice, scr.fixed_obj + red.L, z, 1, False, "argmax", 1.0, 1, len(scr.rows))


def _finish(c: Canon, out: _Outcome, t0: float) -> Solution:
    p = c.problem
    rows = np.arange(c.n)
    choice = out.choice
    if p.feasible is not None and not p.feasible[rows, choice].all():
        raise PlannerError("internal error: solver chose an infeasible option")
    total_value = float(p.value[rows, choice].sum(dtype=np.float64))
    total_cost = float(p.cost[rows, choice].sum(dtype=np.float64))
    usage: dict[str, float] = {}
    limits: dict[str, float] = {}
    for k, (name, arr) in enumerate(zip(c.names, c.arrays, strict=True)):
        if name == QUALITY:
            usage[name], limits[name] = total_value, -float(c.b[k])
            ok = total_value >= limits[name]
        else:
            usage[name] = float(arr[rows, choice].sum(dtype=np.float64))
            limits[name] = float(c.b[k])
            ok = usage[name] <= limits[name]
        if not ok:
            raise PlannerError(
                f"internal error: plan breaks {name}: {usage[name]!r} vs limit {limits[name]!r}"
            )
    if p.objective is Objective.MIN_COST:
        value, bound = total_cost, -out.bound
        gap = max(value - bound, 0.0) / max(abs(bound), 1e-12)
    else:
        value, bound = total_value, out.bound
        gap = max(bound - value, 0.0) / max(abs(bound), 1e-12)
    multipliers = {name: float(out.lam[k]) for k, name in enumerate(c.names)}
    binding = binding_constraints(c.names, multipliers, usage, limits)
    stats = SolveStats(
        iterations=out.iterations,
        seconds=time.perf_counter() - t0,
        mean_frontier=out.mean_frontier,
        max_frontier=out.max_frontier,
        reduced_queries=out.reduced,
        timed_out=out.timed_out,
        method=out.method,
    )
    return Solution(choice, value, bound, gap, usage, limits, multipliers, binding, stats, p.objective)
