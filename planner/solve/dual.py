"""Minimising the Lagrangian dual L(lam) over a box of multipliers.

* One constraint: a safeguarded secant search on the crossing point of usage(lam) with the budget. The two
  tangents at the bracket ends give a lower bound on min L, so the search stops with a certified dual gap;
  at the minimum this is the Sinha-Zoltners LP optimum of the multiple-choice knapsack.
* Several constraints: a trust-region cutting-plane (proximal Kelley) method whose cuts are solved as a tiny
  LP with HiGHS; the model minimum over the whole box is a certified lower bound on min L.

Every L(lam) with lam >= 0 is itself a valid upper bound on the integer optimum, so stopping early (deadline)
costs only bound tightness, never validity.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linprog

from planner.solve.dense import F64, Dense, Point, evaluate

Oracle = Callable[[F64], Point]


@dataclass(frozen=True)
class DualResult:
    """The best point found, a certified lower bound on min L over the box, and the iterations spent."""

    best: Point
    feasible_side: Point | None
    lower: float
    iterations: int
    timed_out: bool


def _expired(deadline: float | None) -> bool:
    return deadline is not None and time.perf_counter() >= deadline


def minimise(
    d: Dense,
    lo: F64,
    hi: F64,
    start: F64,
    *,
    tol: float = 1e-7,
    deadline: float | None = None,
    max_iter: int = 200,
) -> DualResult:
    """Minimise L over lo <= lam <= hi (hi may be inf for one constraint)."""
    if d.k == 1:
        return _secant(d, float(lo[0]), float(hi[0]), float(start[0]), tol, deadline, max_iter)
    return _cutting_plane(d, lo, hi, start, tol, deadline, max_iter)


def _secant(
    d: Dense, lo: float, hi: float, start: float, tol: float, deadline: float | None, max_iter: int
) -> DualResult:
    b = float(d.b[0])
    at = lambda x: evaluate(d, np.array([x]))  # noqa: E731
    p_lo = at(lo)
    its = 1
    if p_lo.usage[0] <= b:  # constraint slack at the lower end: lo is optimal over the box
        return DualResult(p_lo, p_lo, p_lo.L, its, False)
    x = max(start, lo, 1e-12)
    p_hi = at(x)
    its += 1
    while p_hi.usage[0] > b and x < hi:  # grow until the feasible side is bracketed
        p_lo, x = p_hi, min(x * 4.0, hi)
        p_hi = at(x)
        its += 1
        if _expired(deadline) or its > max_iter:
            break
    if p_hi.usage[0] > b:  # minimum lies at or beyond hi
        return DualResult(p_hi, None, p_hi.L, its, _expired(deadline))
    timed_out = False
    while True:
        best = p_lo if p_lo.L < p_hi.L else p_hi
        g_lo, g_hi = b - p_lo.usage[0], b - p_hi.usage[0]  # g_lo < 0 <= g_hi
        x_lo, x_hi = float(p_lo.lam[0]), float(p_hi.lam[0])
        # intersection of the two tangents: lower bound on L over [x_lo, x_hi]
        denom = g_hi - g_lo
        xc = (p_lo.L - p_hi.L - g_lo * x_lo + g_hi * x_hi) / denom if denom > 0 else 0.5 * (x_lo + x_hi)
        xc = min(max(xc, x_lo), x_hi)
        lower = p_lo.L + g_lo * (xc - x_lo)
        if best.L - lower <= tol * max(abs(best.L), 1e-12) or x_hi - x_lo <= 1e-15 * x_hi:
            break
        if its >= max_iter or _expired(deadline):
            timed_out = _expired(deadline)
            break
        w = x_hi - x_lo
        x = min(max(xc, x_lo + 0.05 * w), x_hi - 0.05 * w)  # safeguard against one-sided creeping
        p = at(x)
        its += 1
        if p.usage[0] > b:
            p_lo = p
        else:
            p_hi = p
    return DualResult(best, p_hi, min(lower, best.L), its, timed_out)


def _cutting_plane(
    d: Dense, lo: F64, hi: F64, start: F64, tol: float, deadline: float | None, max_iter: int
) -> DualResult:
    k = d.k
    hi = np.where(np.isfinite(hi), hi, np.maximum(start, 1.0) * 1e6)
    center = np.clip(start, lo, hi)
    best = evaluate(d, center)
    feasible = best if np.all(best.usage <= d.b) else None
    cuts_a: list[F64] = []
    cuts_c: list[float] = []

    def add_cut(p: Point) -> None:
        g = d.b - p.usage  # L(x) >= L(p) + g . (x - lam)  ->  g . x - z <= g . lam - L(p)
        cuts_a.append(np.append(g, -1.0))
        cuts_c.append(float(g @ p.lam - p.L))

    add_cut(best)
    radius = np.maximum(0.5 * np.abs(center), 0.05 * (hi - lo))
    lower, its, timed_out = -np.inf, 1, False
    cost = np.append(np.zeros(k), 1.0)
    while its < max_iter:
        box = [*zip(lo, hi, strict=True), (None, None)]
        res = linprog(cost, A_ub=np.array(cuts_a), b_ub=np.array(cuts_c), bounds=box, method="highs")
        if res.status == 0:
            lower = max(lower, float(res.fun))
        if best.L - lower <= tol * max(abs(best.L), 1e-12):
            break
        if _expired(deadline):
            timed_out = True
            break
        tr = [(max(a, c - r), min(h, c + r)) for a, h, c, r in zip(lo, hi, center, radius, strict=True)]
        res = linprog(
            cost, A_ub=np.array(cuts_a), b_ub=np.array(cuts_c), bounds=[*tr, (None, None)], method="highs"
        )
        if res.status != 0:
            break
        trial = np.clip(res.x[:k], lo, hi)
        predicted = float(res.fun)
        p = evaluate(d, trial)
        its += 1
        add_cut(p)
        if np.all(p.usage <= d.b) and (feasible is None or p.L < feasible.L):
            feasible = p
        if best.L - 0.1 * max(best.L - predicted, 0.0) > p.L:
            step = np.abs(trial - center)
            best, center = p, trial
            radius = np.where(step >= 0.9 * radius, radius * 2.0, radius)
        else:
            radius = radius * 0.5
            if np.all(radius <= 1e-12 * (np.abs(center) + 1e-12)):
                break
    return DualResult(best, feasible, min(lower, best.L), its, timed_out)
