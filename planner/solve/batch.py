"""From priced options and a plan's limits to a solver `Problem` (and back to named constraints).

`PlanSpec` holds what a batch plan may be asked for: total spend and energy caps, per-tenant spend and energy
caps, device-seconds per hardware target, a per-query p90 latency (and TTFT) objective, guard rails, and the
objective (max quality, or least cost reaching a mean quality). `build_batch` turns it into:

* a feasibility mask: guard rails (`planner.governance`, the same rules Route enforces; the request's rails
  combined with each query's tenant rails, the stricter wins) and the latency SLO remove options per query
  before solving, so no plan can break them;
* hard constraints as solver resources, each with a public name (as in `planner.v1.ShadowPrice`):
  ``total_spend_usd``, ``total_energy_kwh``, ``tenant:<name>:spend_usd``, ``tenant:<name>:energy_kwh``,
  ``capacity:<target>`` (device-seconds), and ``target_quality`` for the least-cost form.

Caps of 0 mean "no cap" (the API's convention). Tenant caps apply to the plan's own total (a plan is one
batch; periodic pacing is Route's job). Energy constraints are in kWh, so their shadow prices are per kWh.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
import numpy.typing as npt

from planner.errors import FieldViolation, InfeasibleError, InvalidArgumentError
from planner.governance import RAILS, GuardRails, combine, dynamic_masks, empty_reason, static_masks
from planner.options import OptionArrays, OptionSet
from planner.solve.problem import QUALITY, SPEND, Objective, Problem

J_PER_KWH = 3.6e6

TOTAL_SPEND = "total_spend_usd"
TOTAL_ENERGY = "total_energy_kwh"
TARGET_QUALITY = "target_quality"


class ConstraintKind(StrEnum):
    """What a named constraint limits (mirrors `planner.v1.ConstraintKind`)."""

    SPEND = "spend"
    ENERGY = "energy"
    CAPACITY = "capacity"
    QUALITY = "quality"


def tenant_spend(tenant: str) -> str:
    return f"tenant:{tenant}:spend_usd"


def tenant_energy(tenant: str) -> str:
    return f"tenant:{tenant}:energy_kwh"


def capacity(target: str) -> str:
    return f"capacity:{target}"


def kind_of(name: str) -> ConstraintKind:
    """The kind of a public constraint name."""
    if name == TARGET_QUALITY:
        return ConstraintKind.QUALITY
    if name.startswith("capacity:"):
        return ConstraintKind.CAPACITY
    if name == TOTAL_ENERGY or name.endswith(":energy_kwh"):
        return ConstraintKind.ENERGY
    return ConstraintKind.SPEND


@dataclass(frozen=True)
class PlanSpec:
    """Limits and objective of one batch plan (0 = no cap). Validated on construction."""

    objective: Objective = Objective.MAX_VALUE
    target_quality: float | None = None
    total_spend_usd: float = 0.0
    total_energy_kwh: float = 0.0
    tenant_spend_usd: Mapping[str, float] = field(default_factory=dict)
    tenant_energy_kwh: Mapping[str, float] = field(default_factory=dict)
    capacity_device_s: Mapping[str, float] = field(default_factory=dict)
    slo_p90_s: float = 0.0
    slo_p99_s: float = 0.0
    slo_ttft_s: float = 0.0
    rails: GuardRails = field(default_factory=GuardRails)

    def __post_init__(self) -> None:
        bad: list[FieldViolation] = []
        scalars = [("total_spend_usd", self.total_spend_usd), ("total_energy_kwh", self.total_energy_kwh)]
        scalars += [("slo.p90_e2e_s", self.slo_p90_s), ("slo.p99_e2e_s", self.slo_p99_s)]
        scalars += [("slo.ttft_p90_s", self.slo_ttft_s)]
        scalars += [(f"tenant_budgets[{t}].spend_usd", v) for t, v in self.tenant_spend_usd.items()]
        scalars += [(f"tenant_budgets[{t}].energy_kwh", v) for t, v in self.tenant_energy_kwh.items()]
        scalars += [(f"capacity[{t}].device_seconds", v) for t, v in self.capacity_device_s.items()]
        bad += [FieldViolation(f, v, "must be finite and >= 0") for f, v in scalars if not _nonneg(v)]
        t = self.target_quality
        if self.objective is Objective.MIN_COST:
            if t is None or not (np.isfinite(t) and 0.0 <= t <= 1.0):
                bad.append(FieldViolation("target_quality", t, "must be in [0, 1] for MIN_COST_FOR_QUALITY"))
        elif t is not None:
            bad.append(FieldViolation("target_quality", t, "only used with MIN_COST_FOR_QUALITY"))
        if bad:
            raise InvalidArgumentError("invalid plan request", bad)


def _nonneg(v: float) -> bool:
    return bool(np.isfinite(v) and v >= 0)


@dataclass(frozen=True, eq=False)
class Batch:
    """A solver problem with its public constraint names and the masks that shaped it."""

    problem: Problem
    public: Mapping[str, str]
    """solver constraint name -> public name."""
    feasible_options: int
    rails: Mapping[str, GuardRails]
    """tenant -> the rails applied to its queries."""
    tenants: tuple[str, ...]
    """per query."""
    rail_block: npt.NDArray[np.object_]
    """per query: the guard rail (or "slo") that excludes its best-quality option, '' when none does."""

    def public_name(self, solver_name: str) -> str:
        return self.public.get(solver_name, solver_name)


def build_batch(
    options: OptionSet,
    arrays: OptionArrays,
    input_tokens: npt.NDArray[np.floating],
    tenants: Sequence[str],
    spec: PlanSpec,
    tenant_rails: Mapping[str, GuardRails] | None = None,
) -> Batch:
    """The solver problem for `arrays` (n queries x options) under `spec`.

    Raises InvalidArgumentError for a capacity on an unknown target and InfeasibleError (naming the query
    and the rails) when a query has no option left after guard rails and the latency SLO.
    """
    n = arrays.shape[0]
    if len(tenants) != n or len(input_tokens) != n:
        raise InvalidArgumentError.for_field("tenants", len(tenants), f"need one per query ({n})")
    unknown = [t for t in spec.capacity_device_s if t not in options.targets]
    if unknown:
        raise InvalidArgumentError(
            "unknown capacity target",
            [
                FieldViolation(f"capacity[{t}].target", t, f"not a catalog target: {list(options.targets)}")
                for t in unknown
            ],
        )
    tenant_arr = np.asarray(tenants, dtype=object)
    feasible, rails_by_tenant, blocked = _feasibility(
        options, arrays, input_tokens, tenant_arr, spec, tenant_rails or {}
    )
    resources, caps, public = _resources(options, arrays, tenant_arr, spec)
    public[SPEND] = TOTAL_SPEND
    public[QUALITY] = TARGET_QUALITY
    problem = Problem(
        value=arrays.quality,
        cost=arrays.usd,
        budget=spec.total_spend_usd if spec.total_spend_usd > 0 else None,
        resources=resources,
        capacities=caps,
        feasible=feasible,
        objective=spec.objective,
        target_mean_value=spec.target_quality if spec.objective is Objective.MIN_COST else None,
    )
    return Batch(problem, public, int(feasible.sum()), rails_by_tenant, tuple(tenants), blocked)


def _feasibility(
    options: OptionSet,
    arrays: OptionArrays,
    input_tokens: npt.NDArray[np.floating],
    tenants: npt.NDArray[np.object_],
    spec: PlanSpec,
    tenant_rails: Mapping[str, GuardRails],
) -> tuple[npt.NDArray[np.bool_], dict[str, GuardRails], npt.NDArray[np.object_]]:
    n, m = arrays.shape
    blocked = np.full(n, "", dtype=object)
    slo = GuardRails(
        max_latency_s=spec.slo_p90_s, max_latency_p99_s=spec.slo_p99_s, max_ttft_s=spec.slo_ttft_s
    )
    base = spec.rails.stricter(slo)
    feasible = np.ones((n, m), dtype=bool)
    used: dict[str, GuardRails] = {}
    for tenant in dict.fromkeys(tenants.tolist()):
        rows = np.flatnonzero(tenants == tenant)
        rails = base.stricter(tenant_rails[tenant]) if tenant in tenant_rails else base
        used[tenant] = rails
        sub = arrays.take(rows)
        masks = {**static_masks(rails, options), **dynamic_masks(rails, sub, input_tokens[rows])}
        allowed = combine(masks.values(), (len(rows), m))
        empty = np.flatnonzero(~allowed.any(axis=1))
        if empty.size:
            i = int(rows[empty[0]])
            reasons = "; ".join(str(v.field) for v in empty_reason(masks, int(empty[0])))
            raise InfeasibleError(
                f"{empty.size} quer{'y' if empty.size == 1 else 'ies'} of tenant {tenant!r} have no option "
                f"within the guard rails and latency SLO (first: query index {i}; rails {reasons})"
            )
        feasible[rows] = allowed
        blocked[rows] = _blocking(masks, sub.quality)
    return feasible, used, blocked


def _blocking(
    masks: Mapping[str, npt.NDArray[np.bool_]], quality: npt.NDArray[np.floating]
) -> npt.NDArray[np.object_]:
    """Per row, the first rail (in `RAILS` order) that excludes the row's best-quality option."""
    r = np.arange(quality.shape[0])
    best = np.argmax(quality, axis=1)
    out = np.full(quality.shape[0], "", dtype=object)
    for name in reversed(RAILS):  # the first rail in order wins: assign in reverse
        mask = masks.get(name)
        if mask is not None:
            ok = mask[best] if mask.ndim == 1 else mask[r, best]
            out[~ok] = name
    return out


def _resources(
    options: OptionSet, arrays: OptionArrays, tenants: npt.NDArray[np.object_], spec: PlanSpec
) -> tuple[dict[str, npt.NDArray[np.floating]], dict[str, float], dict[str, str]]:
    resources: dict[str, npt.NDArray[np.floating]] = {}
    caps: dict[str, float] = {}
    public: dict[str, str] = {}

    def add(name: str, arr: npt.NDArray[np.floating], cap: float) -> None:
        resources[name], caps[name], public[name] = arr, float(cap), name

    energy_kwh = arrays.energy_j / J_PER_KWH
    if spec.total_energy_kwh > 0:
        add(TOTAL_ENERGY, energy_kwh, spec.total_energy_kwh)
    present = set(tenants.tolist())
    for tenant, cap in spec.tenant_spend_usd.items():
        if cap > 0 and tenant in present:
            add(tenant_spend(tenant), np.where((tenants == tenant)[:, None], arrays.usd, 0.0), cap)
    for tenant, cap in spec.tenant_energy_kwh.items():
        if cap > 0 and tenant in present:
            add(tenant_energy(tenant), np.where((tenants == tenant)[:, None], energy_kwh, 0.0), cap)
    for target, cap in spec.capacity_device_s.items():
        if cap <= 0:
            continue
        on_target = options.target_of == options.targets.index(target)
        add(capacity(target), np.where(on_target[None, :], arrays.device_s, 0.0), cap)
    return resources, caps, public
