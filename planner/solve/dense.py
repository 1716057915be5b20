"""The solver's canonical dense form and the Lagrangian oracle over it.

Canonical form: maximise sum_i obj[i, x_i] subject to sum_i A[k, i, x_i] <= b[k] for every constraint k.
Infeasible (or padding) entries carry ``obj = -inf`` and ``A = 0``. `cols` maps each column back to the
caller's option index (columns are compacted frontiers, so column j of row i need not be option j).

For multipliers lam >= 0 the Lagrangian L(lam) = sum_i max_j (obj - lam . A)[i, j] + lam . b is an upper bound
on the integer optimum and its minimum over lam equals the LP-relaxation optimum (each query's choice
polytope is a simplex, so the relaxation is tight on it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]


@dataclass(frozen=True, eq=False)
class Dense:
    """A (rows, cols) canonical instance; `A` has shape (k, rows, cols)."""

    obj: F64
    A: F64
    b: F64
    cols: I64

    @property
    def n(self) -> int:
        return int(self.obj.shape[0])

    @property
    def k(self) -> int:
        return int(self.A.shape[0])

    @property
    def valid(self) -> Bools:
        return np.isfinite(self.obj)

    def with_budget(self, b: F64) -> Dense:
        return Dense(self.obj, self.A, np.asarray(b, dtype=np.float64), self.cols)


@dataclass(frozen=True, eq=False)
class Point:
    """The Lagrangian at one multiplier vector: value, the argmax choice (column per row) and its totals."""

    lam: F64
    L: float
    choice: I64
    usage: F64
    objective: float

    @property
    def subgradient(self) -> F64:
        """b - usage; a subgradient of L at lam (with b folded in by the caller)."""
        return self.usage


@dataclass(frozen=True, eq=False)
class Blocks:
    """Consecutive row blocks of one Dense whose rows are sorted by candidate count, each cut to its own
    width, so the Lagrangian oracle does no work on padding. Choices index the rows in block order."""

    parts: tuple[Dense, ...]
    b: F64

    @property
    def n(self) -> int:
        return sum(p.n for p in self.parts)

    @property
    def k(self) -> int:
        return int(self.b.shape[0])


def split_by_width(d: Dense) -> Blocks:
    """Blocks of `d` (rows sorted by ascending candidate count) of widths 1, 2, 3, 4, 6, 8, 12, 16, ..."""
    count = d.valid.sum(axis=1)
    if count.size and np.any(np.diff(count) < 0):
        raise ValueError("rows must be sorted by candidate count")
    parts: list[Dense] = []
    start, width = 0, 1
    while start < d.n:
        stop = int(np.searchsorted(count, width, side="right"))
        if stop > start:
            parts.append(
                Dense(
                    np.ascontiguousarray(d.obj[start:stop, :width]),
                    np.ascontiguousarray(d.A[:, start:stop, :width]),
                    d.b,
                    np.ascontiguousarray(d.cols[start:stop, :width]),
                )
            )
            start = stop
        width = width + 1 if width < 4 else width + width // 2
    return Blocks(tuple(parts), d.b)


def evaluate(d: Dense | Blocks, lam: F64) -> Point:
    """L(lam), the per-row argmax and the totals of that argmax (ties go to the lowest column)."""
    lam = np.asarray(lam, dtype=np.float64)
    parts = d.parts if isinstance(d, Blocks) else (d,)
    best_sum, objective = 0.0, 0.0
    usage = np.zeros(d.k)
    choices: list[I64] = []
    for part in parts:
        score = part.obj.copy() if part.k == 0 else part.obj - np.tensordot(lam, part.A, axes=1)
        choice = np.argmax(score, axis=1)
        rows = np.arange(part.n)
        best_sum += float(score[rows, choice].sum())
        if part.k:
            usage += part.A[:, rows, choice].sum(axis=1)
        objective += float(part.obj[rows, choice].sum())
        choices.append(choice)
    choice_all = (
        choices[0] if len(choices) == 1 else np.concatenate(choices) if choices else np.zeros(0, np.int64)
    )
    return Point(lam, best_sum + float(lam @ d.b), choice_all, usage, objective)


def totals(d: Dense, choice: I64) -> tuple[float, F64]:
    """Objective and constraint totals of a choice (column per row)."""
    rows = np.arange(d.n)
    # one 1-D (pairwise) sum per constraint: the same order the final feasibility check uses
    usage = np.array([d.A[k, rows, choice].sum() for k in range(d.k)], dtype=np.float64)
    return float(d.obj[rows, choice].sum()), usage


def compact(d: Dense, keep: Bools) -> Dense:
    """Drop the columns not in `keep` (per row), packing the rest to the left; width = max kept per row."""
    keep = keep & d.valid
    width = max(int(keep.sum(axis=1).max()), 1)
    order = np.argsort(~keep, axis=1, kind="stable")[:, :width]
    rows = np.arange(d.n)[:, None]
    kept = keep[rows, order]
    obj = np.where(kept, d.obj[rows, order], -np.inf)
    A = np.where(kept[None], d.A[:, rows, order], 0.0)
    return Dense(obj, A, d.b, np.where(kept, d.cols[rows, order], -1))


def lp_frontier(value: F64, resource: F64, valid: Bools) -> Bools:
    """Options on each row's upper-left convex hull in (resource, value): the LP-undominated options.

    An option is dropped when another has no more resource and at least as much value (dominance), or when it
    lies on or below the chord between two others (LP dominance: a mix of them is never worse for any price).
    Vectorised over rows: sort once, then peel non-concave points until none is left.
    """
    n, m = value.shape
    res = np.where(valid, resource, np.inf)
    order = np.lexsort((-np.where(valid, value, -np.inf), res), axis=1)
    rows = np.arange(n)[:, None]
    r, v, ok = res[rows, order], value[rows, order], valid[rows, order]
    vv = np.where(ok, v, -np.inf)
    prev_max = np.maximum.accumulate(np.concatenate([np.full((n, 1), -np.inf), vv[:, :-1]], axis=1), axis=1)
    keep = ok & (vv > prev_max)
    cols = np.arange(m)
    for _ in range(m):
        prev_i = np.maximum.accumulate(np.where(keep, cols, -1), axis=1)
        prev_i = np.concatenate([np.full((n, 1), -1), prev_i[:, :-1]], axis=1)
        next_i = np.minimum.accumulate(np.where(keep, cols, m)[:, ::-1], axis=1)[:, ::-1]
        next_i = np.concatenate([next_i[:, 1:], np.full((n, 1), m)], axis=1)
        inner = keep & (prev_i >= 0) & (next_i < m)
        pa, na = np.clip(prev_i, 0, m - 1), np.clip(next_i, 0, m - 1)
        ra, va, rc, vc = r[rows, pa], v[rows, pa], r[rows, na], v[rows, na]
        with np.errstate(invalid="ignore"):
            # b is not a hull vertex when (vb - va) * (rc - rb) <= (vc - vb) * (rb - ra)
            below = (v - va) * (rc - r) <= (vc - v) * (r - ra)
        drop = inner & below
        if not drop.any():
            break
        keep &= ~drop
    out = np.zeros_like(keep)
    out[rows, order] = keep
    return out


def pareto_frontier(value: F64, resources: F64, valid: Bools, block: int = 4096) -> Bools:
    """Options that no other option of the same row dominates (>= value, <= every resource, one strictly).

    Exact ties keep the lowest column. O(rows x cols^2 x k) work, done in row blocks.
    """
    n, m = value.shape
    keep = np.zeros((n, m), dtype=bool)
    cols = np.arange(m)
    for s in range(0, n, block):
        v = np.where(valid[s : s + block], value[s : s + block], -np.inf)
        a = resources[:, s : s + block]
        ge = v[:, :, None] >= v[:, None, :]  # [i, j, l]: j has >= value than l
        le = np.all(a[:, :, :, None] <= a[:, :, None, :], axis=0)
        weak = ge & le & np.isfinite(v)[:, :, None]
        strict = (v[:, :, None] > v[:, None, :]) | np.any(a[:, :, :, None] < a[:, :, None, :], axis=0)
        earlier = cols[:, None] < cols[None, :]
        dominated = (weak & (strict | earlier[None])).any(axis=1)
        keep[s : s + block] = np.isfinite(v) & ~dominated
    return keep
