"""Mapping a `Problem` onto the solver's canonical maximisation form, with value checks done in row blocks.

MAX_VALUE: maximise sum value  s.t. sum cost <= budget, sum resource_k <= capacity_k.
MIN_COST:  maximise sum -cost  s.t. sum -value <= -target x n, (sum cost <= budget), sum resource_k <= cap_k.

The caller's arrays are referenced, never copied; signs are applied per block. An option is *valid* when the
caller's `feasible` mask allows it and its value is finite (``-inf`` value = infeasible).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from planner.errors import FieldViolation, InfeasibleError, InvalidArgumentError
from planner.solve.dense import F64, Dense
from planner.solve.problem import QUALITY, SPEND, Objective, Problem

Arr = npt.NDArray[np.floating]

QUALITY_RTOL = 1e-12
"""Relative slack on a MIN_COST quality target, so a target equal to an achievable mean is not lost to
rounding (the total is summed in a different order than n x target)."""


@dataclass(frozen=True, eq=False)
class Canon:
    """Canonical view of a problem: objective and constraint arrays with signs, limits and names."""

    problem: Problem
    obj: Arr
    obj_sign: float
    arrays: tuple[Arr, ...]
    signs: F64
    b: F64
    names: tuple[str, ...]
    fields: tuple[str, ...]

    @property
    def n(self) -> int:
        return self.problem.n_queries

    @property
    def m(self) -> int:
        return self.problem.n_options

    @property
    def k(self) -> int:
        return len(self.arrays)

    def valid(self, start: int, stop: int) -> npt.NDArray[np.bool_]:
        ok = np.isfinite(self.problem.value[start:stop])
        if self.problem.feasible is not None:
            ok &= self.problem.feasible[start:stop]
        return ok

    def block(
        self, start: int, stop: int, dtype: type = np.float64
    ) -> tuple[Arr, Arr, npt.NDArray[np.bool_]]:
        """(obj, A (k, rows, m), valid) for rows [start, stop), checked; infeasible entries neutralised."""
        valid = self.valid(start, stop)
        check_block(self, start, stop, valid)
        obj = np.where(valid, self.obj[start:stop].astype(dtype, copy=False) * self.obj_sign, -np.inf)
        a: Arr = np.empty((self.k, stop - start, self.m), dtype=dtype)
        for i, (arr, sign) in enumerate(zip(self.arrays, self.signs, strict=True)):
            a[i] = np.where(valid, arr[start:stop] * float(sign), 0.0)
        return obj.astype(dtype, copy=False), a, valid

    def views(
        self, start: int, stop: int, dtype: type
    ) -> tuple[Arr, list[Arr], npt.NDArray[np.bool_] | None]:
        """Like `block`, without copies when every option of the rows is valid: (obj, one (rows, m)
        array per constraint, None); else (obj, arrays, valid), infeasible entries neutralised as `block`."""
        p = self.problem
        if p.feasible is None and _all_nonneg_finite(self, start, stop):
            obj = p.value[start:stop] if self.obj_sign > 0 else -p.cost[start:stop]
            arrays = [
                arr[start:stop] if sign > 0 else -arr[start:stop]
                for arr, sign in zip(self.arrays, self.signs, strict=True)
            ]
            return obj.astype(dtype, copy=False), [a.astype(dtype, copy=False) for a in arrays], None
        obj, a, valid = self.block(start, stop, dtype)
        return obj, list(a), valid


def _all_nonneg_finite(c: Canon, start: int, stop: int) -> bool:
    """Fast check (reductions only) that values are finite and costs / resources finite and >= 0."""
    p = c.problem
    value = p.value[start:stop]
    if not np.isfinite(value.sum(dtype=np.float64)):
        return False
    for arr in (p.cost, *p.resources.values()):
        blk = arr[start:stop]
        if not (blk.min() >= 0 and np.isfinite(blk.max())):
            return False
    return True


def canonical(p: Problem) -> Canon:
    arrays: list[Arr] = []
    signs: list[float] = []
    b: list[float] = []
    names: list[str] = []
    fields: list[str] = []
    if p.objective is Objective.MIN_COST:
        assert p.target_mean_value is not None
        arrays.append(p.value)
        signs.append(-1.0)
        floor = float(p.target_mean_value) * p.n_queries
        b.append(-floor + QUALITY_RTOL * max(abs(floor), 1.0))  # a target met up to float rounding counts
        names.append(QUALITY)
        fields.append("value")
    if p.budget is not None:
        arrays.append(p.cost)
        signs.append(1.0)
        b.append(float(p.budget))
        names.append(SPEND)
        fields.append("cost")
    for name, arr in p.resources.items():
        arrays.append(arr)
        signs.append(1.0)
        b.append(float(p.capacities[name]))
        names.append(name)
        fields.append(f"resources[{name}]")
    if p.objective is Objective.MIN_COST:
        obj, sign = p.cost, -1.0
    else:
        obj, sign = p.value, 1.0
    return Canon(p, obj, sign, tuple(arrays), np.array(signs), np.array(b), tuple(names), tuple(fields))


def check_block(c: Canon, start: int, stop: int, valid: npt.NDArray[np.bool_]) -> None:
    """Reject non-finite or negative cost/resources on valid entries and rows with no valid option."""
    empty = np.flatnonzero(~valid.any(axis=1))
    if empty.size:
        idx = (empty[:10] + start).tolist()
        raise InfeasibleError(
            f"{empty.size} quer{'y has' if empty.size == 1 else 'ies have'} no feasible option "
            f"(latency SLO / guard rails exclude all), e.g. query index {idx}"
        )
    checks = [("cost", c.problem.cost)] + [(f"resources[{k}]", v) for k, v in c.problem.resources.items()]
    for name, arr in checks:
        blk = arr[start:stop]
        bad = valid & ~(np.isfinite(blk) & (blk >= 0))
        if bad.any():
            i, j = np.argwhere(bad)[0]
            raise InvalidArgumentError(
                "invalid allocation problem",
                [FieldViolation(f"{name}[{i + start}, {j}]", float(blk[i, j]), "must be finite and >= 0")],
            )


def to_dense(c: Canon, rows: npt.NDArray[np.int64] | None = None, block: int = 8192) -> Dense:
    """A float64 Dense copy of all rows (or of `rows`, for samples)."""
    if rows is None:
        parts = [c.block(s, min(s + block, c.n)) for s in range(0, c.n, block)]
        obj = np.concatenate([p[0] for p in parts])
        a = np.concatenate([p[1] for p in parts], axis=1)
    else:
        sub = _subproblem(c, rows)
        obj, a, _ = sub.block(0, len(rows))
    cols = np.broadcast_to(np.arange(c.m, dtype=np.int64), obj.shape)
    return Dense(obj, a, c.b.copy(), cols)


def _subproblem(c: Canon, rows: npt.NDArray[np.int64]) -> Canon:
    p = c.problem
    sub = Problem(
        value=p.value[rows],
        cost=p.cost[rows],
        feasible=None if p.feasible is None else p.feasible[rows],
        resources={k: v[rows] for k, v in p.resources.items()},
        capacities=dict(p.capacities),
        budget=p.budget,
    )
    arrays = tuple(a[rows] for a in c.arrays)
    return Canon(sub, c.obj[rows], c.obj_sign, arrays, c.signs, c.b, c.names, c.fields)
