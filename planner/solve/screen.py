"""Screening large instances down to the options that can matter near the optimal multipliers.

Given a box lo <= lam <= hi of multipliers, option j of row i can be the Lagrangian argmax somewhere in the
box only if  max over the box of [score_j(lam) - score_b(lam)] >= 0,  where b is the row's argmax at the box
centre:

    (obj_j - obj_b) - sum_k ( lo_k * max(d_k, 0) + hi_k * min(d_k, 0) ) >= 0,   d_k = A_kj - A_kb.

This is exact (a small slack absorbs float32 rounding), so for every lam in the box the reduced problem's
Lagrangian equals the full one: the reduced dual bound is a valid bound for the full problem. Rows left with
one candidate are fixed and folded into constants; the others become a compact Dense of their frontier
within the box. One pass over the data, in row blocks small enough to stay in cache, spread over worker
threads (numpy releases the GIL).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from planner.solve.canonical import Canon
from planner.solve.dense import F64, I64, Blocks, Dense, split_by_width

BLOCK_ROWS = 2048


@dataclass(frozen=True, eq=False)
class Screened:
    """Fixed rows (one candidate in the box) folded into constants, the rest as a compact Dense."""

    fixed_choice: npt.NDArray[np.int32]  # (n,) option of every row at the box centre
    fixed_obj: float
    fixed_usage: F64
    rows: I64  # rows of the reduced Dense (sorted by candidate count)
    dense: Dense
    min_usage: F64  # sum over rows of each constraint's least use (necessary feasibility test)

    def blocks(self) -> Blocks:
        """The reduced Dense as width-trimmed row blocks (same row order) for the dual."""
        return split_by_width(self.dense)

    @property
    def sizes(self) -> tuple[float, int]:
        counts = np.isfinite(self.dense.obj).sum(axis=1)
        n = len(self.fixed_choice)
        total = counts.sum() + (n - len(self.rows))
        return float(total / max(n, 1)), int(counts.max(initial=1))


@dataclass(frozen=True, eq=False)
class _Part:
    best: npt.NDArray[np.int32]
    fixed_obj: float
    fixed_usage: F64
    rows: I64
    cols: I64
    obj: F64
    A: F64
    min_usage: F64


def screen(c: Canon, centre: F64, lo: F64, hi: F64, workers: int) -> Screened:
    starts = range(0, c.n, BLOCK_ROWS)
    job = lambda s: _block(c, s, min(s + BLOCK_ROWS, c.n), centre, lo, hi)  # noqa: E731
    if workers > 1:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            parts = list(pool.map(job, starts))
    else:
        parts = [job(s) for s in starts]
    width = max((p.cols.shape[1] for p in parts if p.rows.size), default=1)
    rows = np.concatenate([p.rows for p in parts])
    cols = np.concatenate([_pad(p.cols, width, -1) for p in parts])
    obj = np.concatenate([_pad(p.obj, width, -np.inf) for p in parts])
    a = np.concatenate([_pad3(p.A, width) for p in parts], axis=1)
    fixed_usage = np.sum([p.fixed_usage for p in parts], axis=0)
    order = np.argsort(np.isfinite(obj).sum(axis=1), kind="stable")  # by candidate count, for `blocks`
    rows, cols, obj, a = rows[order], cols[order], obj[order], a[:, order]
    dense = Dense(obj, a, c.b - fixed_usage, cols)
    return Screened(
        np.concatenate([p.best for p in parts]),
        float(sum(p.fixed_obj for p in parts)),
        fixed_usage,
        rows,
        dense,
        np.sum([p.min_usage for p in parts], axis=0),
    )


def _pad(x: npt.NDArray[np.generic], width: int, fill: float) -> npt.NDArray[np.generic]:
    if x.shape[1] == width:
        return x
    out = np.full((x.shape[0], width), fill, dtype=x.dtype)
    out[:, : x.shape[1]] = x
    return out


def _pad3(x: F64, width: int) -> F64:
    if x.shape[2] == width:
        return x
    out = np.zeros((x.shape[0], x.shape[1], width))
    out[:, :, : x.shape[2]] = x
    return out


def _block(c: Canon, start: int, stop: int, centre: F64, lo: F64, hi: F64) -> _Part:
    dtype = np.float32 if c.obj.dtype == np.float32 else np.float64
    obj, arrays, valid = c.views(start, stop, dtype)
    r = np.arange(stop - start)
    tmp = np.empty_like(obj)
    score = obj.copy()
    for k, a in enumerate(arrays):
        np.multiply(a, dtype(centre[k]), out=tmp)
        score -= tmp
    best = np.argmax(score, axis=1)
    ob = obj[r, best]
    margin = np.subtract(obj, ob[:, None], out=score)  # score is not needed any more
    slack = np.abs(ob).astype(np.float64)
    low = np.empty_like(obj)
    for k, a in enumerate(arrays):
        ab = a[r, best]
        np.subtract(a, ab[:, None], out=tmp)  # d_k
        np.minimum(tmp, 0, out=low)
        tmp *= dtype(lo[k])
        margin -= tmp
        low *= dtype(hi[k] - lo[k])
        margin -= low
        slack += hi[k] * np.abs(ab)
    keep = margin >= -(1e-5 * slack + 1e-12).astype(dtype)[:, None]
    if valid is not None:
        keep &= valid
    keep[r, best] = True
    count = keep.sum(axis=1)
    single = count == 1
    fixed_obj = float(ob[single].sum(dtype=np.float64))
    fixed_usage = np.array([a[r, best][single].sum(dtype=np.float64) for a in arrays])
    if valid is None:
        min_usage = np.array([a.min(axis=1).sum(dtype=np.float64) for a in arrays])
    else:
        min_usage = np.array([np.where(valid, a, np.inf).min(axis=1).sum(dtype=np.float64) for a in arrays])
    multi = np.flatnonzero(~single)
    width = int(count[multi].max(initial=1))
    order = np.argsort(~keep[multi], axis=1, kind="stable")[:, :width]
    kept = keep[multi[:, None], order]
    cols = np.where(kept, order, -1).astype(np.int64)
    sel_obj = np.where(kept, obj[multi[:, None], order], -np.inf).astype(np.float64)
    sel_a = (
        np.stack([np.where(kept, a[multi[:, None], order], 0.0) for a in arrays])
        if arrays
        else np.zeros((0, multi.size, width))
    )
    return _Part(
        best.astype(np.int32),
        fixed_obj,
        fixed_usage,
        multi + start,
        cols,
        sel_obj,
        sel_a.astype(np.float64),
        min_usage,
    )
