"""The allocation problem and its solution, as frozen dataclasses over numpy arrays.

A `Problem` is a multiple-choice knapsack with side constraints: each of `n` queries picks exactly one of `m`
options; option (i, j) brings `value[i, j]` (expected quality), spends `cost[i, j]` and consumes
`resources[name][i, j]` of every other resource (energy, device-seconds per target, one tenant's spend...).

* `Objective.MAX_VALUE`: maximise total value subject to total cost <= `budget` (when given) and every
  resource total <= its capacity.
* `Objective.MIN_COST`: minimise total cost subject to mean value >= `target_mean_value` and the capacities
  (a `budget` is then one more hard cap on spend).

Per-query rules (latency SLO p90, guard rails on tokens / samples / spend) are applied by the caller through
the `feasible` mask (or by putting ``-inf`` in `value`). Every query needs at least one feasible option; a
caller that wants queries to be skippable adds an explicit no-op option (value 0, cost 0) -- the solver
never invents one.

Arrays are used as given (no copy): float32 is fine and halves memory on large instances.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
import numpy.typing as npt

from planner.errors import FieldViolation, InvalidArgumentError

FloatArray = npt.NDArray[np.floating]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.integer]

SPEND = "spend"
"""Name of the spend constraint (total `cost` <= `budget`) in `Solution.usage`, `.multipliers`, `.binding`."""

QUALITY = "quality"
"""Name of the quality constraint (total value >= n x `target_mean_value`) in MIN_COST mode."""


class Objective(StrEnum):
    """What the solver optimises."""

    MAX_VALUE = "max_value"
    MIN_COST = "min_cost"


@dataclass(frozen=True, eq=False)
class Problem:
    """One allocation instance. See the module docstring for the semantics of each field."""

    value: FloatArray
    cost: FloatArray
    budget: float | None = None
    resources: Mapping[str, FloatArray] = field(default_factory=dict)
    capacities: Mapping[str, float] = field(default_factory=dict)
    feasible: BoolArray | None = None
    objective: Objective = Objective.MAX_VALUE
    target_mean_value: float | None = None

    def __post_init__(self) -> None:
        violations = _violations(self)
        if violations:
            raise InvalidArgumentError("invalid allocation problem", violations)

    @property
    def n_queries(self) -> int:
        return int(self.value.shape[0])

    @property
    def n_options(self) -> int:
        return int(self.value.shape[1])

    def constraint_names(self) -> tuple[str, ...]:
        """Hard constraints in solver order: quality (MIN_COST), spend (when budgeted), then resources."""
        names: list[str] = []
        if self.objective is Objective.MIN_COST:
            names.append(QUALITY)
        if self.budget is not None:
            names.append(SPEND)
        names.extend(self.resources)
        return tuple(names)


@dataclass(frozen=True)
class SolveStats:
    """How the solve went: dual iterations, wall time, frontier (candidate) sizes, stopping reason."""

    iterations: int
    seconds: float
    mean_frontier: float
    max_frontier: int
    reduced_queries: int
    timed_out: bool
    method: str


@dataclass(frozen=True, eq=False)
class Solution:
    """A plan that meets every hard constraint, with a certificate of how far from optimal it can be.

    `value` is the plan's objective in the problem's own sense: total quality (MAX_VALUE) or total cost
    (MIN_COST). `bound` is the Lagrangian dual (= LP relaxation) bound in the same sense: an upper bound on
    the best achievable total quality, or a lower bound on the least achievable cost. `gap` = |bound -
    value| / max(|bound|, eps) is therefore never smaller than the true optimality gap. `usage` / `limits`
    give each hard constraint's total and cap (for the MIN_COST quality constraint: total value and its
    required floor); `multipliers` are the shadow prices (objective units per unit of the constraint);
    `binding` the constraints whose multiplier is positive.
    """

    choice: IntArray
    value: float
    bound: float
    gap: float
    usage: dict[str, float]
    limits: dict[str, float]
    multipliers: dict[str, float]
    binding: tuple[str, ...]
    stats: SolveStats
    objective: Objective = Objective.MAX_VALUE

    @property
    def upper_bound(self) -> float:
        """The dual bound: upper bound on total value (MAX_VALUE), lower bound on cost (MIN_COST)."""
        return self.bound

    @property
    def mean_value(self) -> float:
        return self.value / max(len(self.choice), 1)


def binding_constraints(
    names: Sequence[str],
    multipliers: Mapping[str, float],
    usage: Mapping[str, float],
    limits: Mapping[str, float],
) -> tuple[str, ...]:
    """The constraints with a positive shadow price, or used up to their limit (relative 1e-6)."""
    return tuple(
        name
        for name in names
        if multipliers.get(name, 0.0) > 0
        or abs(limits[name] - usage[name]) <= 1e-6 * max(abs(limits[name]), 1e-12)
    )


def _violations(p: Problem) -> list[FieldViolation]:
    out: list[FieldViolation] = []
    value, cost = p.value, p.cost
    if not isinstance(value, np.ndarray) or value.ndim != 2:
        return [
            FieldViolation("value", getattr(value, "shape", value), "must be a 2-D array (queries, options)")
        ]
    shape = value.shape
    if shape[0] < 1 or shape[1] < 1:
        return [FieldViolation("value", shape, "needs at least one query and one option")]
    if not np.issubdtype(value.dtype, np.floating):
        out.append(FieldViolation("value.dtype", str(value.dtype), "must be a floating dtype"))
    out += _check_array("cost", cost, shape)
    if p.feasible is not None and (not isinstance(p.feasible, np.ndarray) or p.feasible.shape != shape):
        out.append(
            FieldViolation("feasible", getattr(p.feasible, "shape", p.feasible), f"must have shape {shape}")
        )
    elif p.feasible is not None and p.feasible.dtype != np.bool_:
        out.append(FieldViolation("feasible.dtype", str(p.feasible.dtype), "must be bool"))
    for name, arr in p.resources.items():
        out += _check_array(f"resources[{name}]", arr, shape)
        if name in (SPEND, QUALITY):
            out.append(FieldViolation(f"resources[{name}]", name, "name is reserved"))
        if name not in p.capacities:
            out.append(FieldViolation(f"capacities[{name}]", None, "missing capacity for resource"))
    for name, cap in p.capacities.items():
        if name not in p.resources:
            out.append(FieldViolation(f"capacities[{name}]", cap, "no resource of that name"))
        elif not np.isfinite(cap) or cap < 0:
            out.append(FieldViolation(f"capacities[{name}]", cap, "must be finite and >= 0"))
    if p.budget is not None and (not np.isfinite(p.budget) or p.budget < 0):
        out.append(FieldViolation("budget", p.budget, "must be finite and >= 0"))
    if not isinstance(p.objective, Objective):
        out.append(FieldViolation("objective", p.objective, f"must be one of {[o.value for o in Objective]}"))
    elif p.objective is Objective.MIN_COST:
        t = p.target_mean_value
        if t is None or not np.isfinite(t):
            out.append(FieldViolation("target_mean_value", t, "MIN_COST needs a finite target mean value"))
    elif p.target_mean_value is not None:
        out.append(FieldViolation("target_mean_value", p.target_mean_value, "only used with MIN_COST"))
    return out


def _check_array(name: str, arr: object, shape: tuple[int, ...]) -> list[FieldViolation]:
    if not isinstance(arr, np.ndarray) or arr.shape != shape:
        return [FieldViolation(name, getattr(arr, "shape", arr), f"must be an array of shape {shape}")]
    if not np.issubdtype(arr.dtype, np.floating):
        return [FieldViolation(f"{name}.dtype", str(arr.dtype), "must be a floating dtype")]
    return []
