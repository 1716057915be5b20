"""Minimising the Lagrangian dual L(lam) over a box of multipliers.

* One constraint: a safeguarded secant search on the crossing point of usage(lam) with the budget. The two
  tangents at the bracket ends give a lower bound on min L, so the search stops with a certified dual gap;
  at the minimum this is the Sinha-Zoltners LP optimum of the multiple-choice knapsack.
* Several constraints: a trust-region cutting-plane (proximal Kelley) method whose cuts are solved as a tiny
  LP in one incremental HiGHS model; the model minimum over the whole box is a certified lower bound on min L.

Every L(lam) with lam >= 0 is itself a valid upper bound on the integer optimum, so stopping early (deadline)
costs only bound tightness, never validity.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import highspy
import numpy as np

from planner.solve.dense import F64, Blocks, Dense, Point, evaluate

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
    d: Dense | Blocks,
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
    d: Dense | Blocks, lo: float, hi: float, start: float, tol: float, deadline: float | None, max_iter: int
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


class _Cuts:
    """The cutting-plane model  min z  s.t.  z >= L(p) + g_p . (x - lam_p)  for every evaluated point p,
    kept in one HiGHS instance (cuts are added as rows; each solve only changes the box)."""

    def __init__(self, k: int) -> None:
        self.k = k
        self.h = highspy.Highs()
        self.h.setOptionValue("output_flag", False)
        inf = highspy.kHighsInf
        self.h.addVars(k + 1, np.zeros(k + 1), np.full(k + 1, inf))
        self.h.changeColBounds(k, -inf, inf)
        self.h.changeColsCost(k + 1, np.arange(k + 1, dtype=np.int32), np.append(np.zeros(k), 1.0))
        self.idx = np.arange(k + 1, dtype=np.int32)

    def add(self, p: Point, b: F64) -> None:
        g = b - p.usage  # L(x) >= L(p) + g . (x - lam)  ->  g . x - z <= g . lam - L(p)
        self.h.addRow(-highspy.kHighsInf, float(g @ p.lam - p.L), self.k + 1, self.idx, np.append(g, -1.0))

    def solve(self, lo: F64, hi: F64) -> tuple[F64, float] | None:
        """(argmin x, model value) over the box, or None when HiGHS does not report an optimum."""
        self.h.changeColsBounds(self.k, self.idx[:-1], lo.astype(np.float64), hi.astype(np.float64))
        self.h.run()
        if self.h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
            return None
        x = np.asarray(self.h.getSolution().col_value, dtype=np.float64)
        return x[: self.k], float(self.h.getInfo().objective_function_value)


def _cutting_plane(
    d: Dense | Blocks, lo: F64, hi: F64, start: F64, tol: float, deadline: float | None, max_iter: int
) -> DualResult:
    hi = np.where(np.isfinite(hi), hi, np.maximum(start, 1.0) * 1e6)
    center = np.clip(start, lo, hi)
    best = evaluate(d, center)
    feasible = best if np.all(best.usage <= d.b) else None
    cuts = _Cuts(d.k)
    cuts.add(best, d.b)
    radius = np.maximum(0.5 * np.abs(center), 0.05 * (hi - lo))
    lower, its, timed_out = -np.inf, 1, False
    while its < max_iter:
        whole = cuts.solve(lo, hi)
        if whole is not None:
            lower = max(lower, whole[1])
        if best.L - lower <= tol * max(abs(best.L), 1e-12):
            break
        if _expired(deadline):
            timed_out = True
            break
        trust = cuts.solve(np.maximum(lo, center - radius), np.minimum(hi, center + radius))
        if trust is None:
            break
        trial, predicted = np.clip(trust[0], lo, hi), trust[1]
        p = evaluate(d, trial)
        its += 1
        cuts.add(p, d.b)
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
