"""The `Plan` RPC of RoutingService: allocate a batch of queries jointly under hard limits, with a gap bound.

Flow: validate every request field at once (InvalidArgumentError lists each bad one) -> forecast with the
active predictor (`state.predictor`; before any is trained, a `models.baseline.PriorForecaster` fitted on the
store's runs) -> price every catalog option with the one cost model (`planner.options.OptionSet`, cached per
catalog version and predictor tiers) -> guard rails, latency SLO and caps into a solver problem
(`planner.solve.batch`) -> `planner.solve.solve` (Lagrangian, the default) or `solve_milp` (exact, small
batches) within the call's deadline -> per-query explanations (`planner.solve.explain`) -> response.

The solver work runs on the worker pool. Its time limit is the smaller of the request's `time_limit` and what
is left of the call's deadline after forecasting and pricing; on the limit it still returns a feasible plan
with its (looser) certified gap and `hit_time_limit` set. No feasible plan -> FAILED_PRECONDITION.
`RoutingServicer.Plan` delegates here.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import numpy as np

from models.api import Forecaster, Query
from planner.catalog import Catalog
from planner.errors import FailedPreconditionError, FieldViolation, InfeasibleError, InvalidArgumentError
from planner.governance import Explanation, GuardRails, combine, static_masks, summarise
from planner.options import OptionArrays, OptionSet, QualityFn
from planner.router import J_PER_KWH
from planner.servicers.plan_promise import plan_optimism, solve_adjusted
from planner.servicers.routing import PERIODS
from planner.servicers.state import ServiceState
from planner.solve import Objective, Problem, Solution, solve, solve_milp
from planner.solve.batch import Batch, ConstraintKind, PlanSpec, build_batch, kind_of
from planner.solve.explain import Explanations, explain
from planner.solve.optimism import Optimism
from planner.store import Database, Ledger, period_key
from planner.v1 import common_pb2, routing_pb2

DEFAULT_GAP = 1e-4
SPENT_CAP = 1e-12
"""The cap left for a tenant whose period budget is spent (a cap of 0 means no cap)."""
MILP_MAX_ENTRIES = 200_000
"""SOLVER_METHOD_MILP is for small batches: at most this many feasible (query, option) pairs."""
MAX_QUERIES = 1_000_000
MAX_ENTRIES = 20_000_000
"""Priced (query, option) pairs one Plan call may hold (about 1.5 GB of float64 option arrays)."""
SOLVE_SHARE = 0.8
"""Share of the time left after pricing that the solver may use (the rest builds the reply)."""

KIND_PB = {
    ConstraintKind.SPEND: routing_pb2.CONSTRAINT_KIND_SPEND,
    ConstraintKind.ENERGY: routing_pb2.CONSTRAINT_KIND_ENERGY,
    ConstraintKind.CAPACITY: routing_pb2.CONSTRAINT_KIND_CAPACITY,
    ConstraintKind.QUALITY: routing_pb2.CONSTRAINT_KIND_QUALITY,
}
RAIL_KIND = {
    "max_latency_s": routing_pb2.CONSTRAINT_KIND_LATENCY,
    "max_latency_p99_s": routing_pb2.CONSTRAINT_KIND_LATENCY,
    "max_ttft_s": routing_pb2.CONSTRAINT_KIND_LATENCY,
}


@dataclass(frozen=True)
class PlanArgs:
    """A validated PlanRequest."""

    queries: tuple[Query, ...]
    spec: PlanSpec
    milp: bool
    gap: float
    time_limit_s: float
    target_adjusted: bool = False
    """MIN_COST: the target holds for the adjusted promise (`planner.servicers.plan_promise`)."""


async def handle_plan(
    state: ServiceState, request: routing_pb2.PlanRequest, context: Any
) -> routing_pb2.PlanResponse:
    """Serve one Plan call (see the module docstring)."""
    args = parse_plan_request(request, state.effective_catalog())  # derived entries may be named too
    if any(b.period in PERIODS for b in request.tenant_budgets.values()):
        if state.db is None:
            raise FailedPreconditionError("a tenant budget with a period needs a store with a ledger")
        now = datetime.now(UTC)
        spec = await state.run_blocking(context, remaining_budgets, state.db, request, args.spec, now)
        args = replace(args, spec=spec)
    limit = state.time_limit(context, args.time_limit_s)
    deadline = time.perf_counter() + limit
    forecaster = await _forecaster(state, context)
    options = await _options(state, context, forecaster)
    return await state.run_blocking(context, _plan, state, args, forecaster, options, deadline)


def remaining_budgets(
    db: Database, request: routing_pb2.PlanRequest, spec: PlanSpec, now: datetime
) -> PlanSpec:
    """Tenant caps with a period (hour/day/week/month) become what is left of them in the current period: the
    tenant's ledger spend (online routing's charges and reported outcomes) is subtracted. A budget already
    spent leaves a cap of `SPENT_CAP` (0 would mean "no cap"), so that tenant's queries cannot be planned."""
    spend, energy = dict(spec.tenant_spend_usd), dict(spec.tenant_energy_kwh)
    ledger = Ledger(db)
    for tenant, budget in request.tenant_budgets.items():
        period = PERIODS.get(budget.period)
        if period is None:
            continue
        spent = ledger.spent(tenant, period_key(now, period))
        if budget.spend_usd > 0:
            spend[tenant] = max(budget.spend_usd - spent.spent_usd, SPENT_CAP)
        if budget.energy_kwh > 0:
            energy[tenant] = max(budget.energy_kwh - spent.energy_j / J_PER_KWH, SPENT_CAP)
    return replace(spec, tenant_spend_usd=spend, tenant_energy_kwh=energy)


# ---- validation -------------------------------------------------------------------------------------------
def parse_plan_request(request: routing_pb2.PlanRequest, catalog: Catalog) -> PlanArgs:
    """Validate every field of `request` at once; InvalidArgumentError lists each bad one."""
    bad: list[FieldViolation] = []
    queries = _queries(request.queries, catalog, bad)
    rails = _rails(request.guard_rails, catalog, bad)
    objective = _objective(request, bad)
    caps: dict[str, float] = {}
    targets = {t.name for t in catalog.targets}
    for i, cap in enumerate(request.capacity):
        if cap.target not in targets:
            bad.append(FieldViolation(f"capacity[{i}].target", cap.target, "not a catalog target"))
        elif cap.target in caps:
            bad.append(FieldViolation(f"capacity[{i}].target", cap.target, "listed twice"))
        caps[cap.target] = cap.device_seconds
    gap = request.gap_tolerance or DEFAULT_GAP
    if not (math.isfinite(gap) and 0 < gap < 1):
        bad.append(FieldViolation("gap_tolerance", request.gap_tolerance, "must be in [0, 1)"))
    tl = request.time_limit
    if tl.seconds < 0 or tl.nanos < 0 or tl.nanos >= 1_000_000_000:
        bad.append(
            FieldViolation("time_limit", f"{tl.seconds}s {tl.nanos}ns", "must be a non-negative duration")
        )
    if request.target_adjusted_quality and objective is not Objective.MIN_COST:
        bad.append(
            FieldViolation(
                "target_adjusted_quality", True, "only used with PLAN_OBJECTIVE_MIN_COST_FOR_QUALITY"
            )
        )
    if request.method not in routing_pb2.SolverMethod.values():
        bad.append(
            FieldViolation("method", request.method, f"not one of {list(routing_pb2.SolverMethod.keys())}")
        )
    spec = None
    try:
        spec = PlanSpec(
            objective=objective,
            target_quality=request.target_quality if objective is Objective.MIN_COST else None,
            total_spend_usd=request.total_spend_usd,
            total_energy_kwh=request.total_energy_kwh,
            tenant_spend_usd={t: b.spend_usd for t, b in request.tenant_budgets.items()},
            tenant_energy_kwh={t: b.energy_kwh for t, b in request.tenant_budgets.items()},
            capacity_device_s=caps,
            slo_p90_s=request.slo.p90_e2e_s,
            slo_p99_s=request.slo.p99_e2e_s,
            slo_ttft_s=request.slo.ttft_p90_s,
            rails=rails or GuardRails(),
        )
    except InvalidArgumentError as exc:
        bad.extend(exc.violations)
    if bad or spec is None:
        raise InvalidArgumentError("bad PlanRequest", bad)
    return PlanArgs(
        queries=tuple(queries),
        spec=spec,
        milp=request.method == routing_pb2.SOLVER_METHOD_MILP,
        gap=float(gap),
        time_limit_s=tl.seconds + tl.nanos * 1e-9,
        target_adjusted=request.target_adjusted_quality,
    )


def _objective(request: routing_pb2.PlanRequest, bad: list[FieldViolation]) -> Objective:
    if request.objective == routing_pb2.PLAN_OBJECTIVE_MIN_COST_FOR_QUALITY:
        return Objective.MIN_COST
    if request.objective not in (
        routing_pb2.PLAN_OBJECTIVE_UNSPECIFIED,
        routing_pb2.PLAN_OBJECTIVE_MAX_QUALITY,
    ):
        bad.append(
            FieldViolation(
                "objective", request.objective, f"not one of {list(routing_pb2.PlanObjective.keys())}"
            )
        )
    elif request.target_quality != 0:
        bad.append(
            FieldViolation("target_quality", request.target_quality, "only used with MIN_COST_FOR_QUALITY")
        )
    return Objective.MAX_VALUE


def _queries(
    items: Sequence[common_pb2.QueryInput], catalog: Catalog, bad: list[FieldViolation]
) -> list[Query]:
    if not items:
        bad.append(FieldViolation("queries", 0, "at least one query is required"))
    if len(items) > MAX_QUERIES:
        bad.append(FieldViolation("queries", len(items), f"at most {MAX_QUERIES} per Plan call"))
    tenants = {t.name for t in catalog.tenants}
    out: list[Query] = []
    for i, q in enumerate(items):
        tenant = q.tenant or "default"
        if tenant not in tenants:
            bad.append(
                FieldViolation(f"queries[{i}].tenant", q.tenant, f"unknown tenant; known: {sorted(tenants)}")
            )
        if q.prompt_tokens < 0:
            bad.append(FieldViolation(f"queries[{i}].prompt_tokens", q.prompt_tokens, "must be >= 0"))
        feats = dict(q.features)
        for name, v in feats.items():
            if not math.isfinite(v):
                bad.append(FieldViolation(f"queries[{i}].features[{name}]", v, "must be finite"))
        out.append(
            Query(
                query_id=q.query_id,
                prompt=q.prompt,
                task=q.task or "default",
                tags=tuple(q.tags),
                tenant=tenant,
                prompt_tokens=int(q.prompt_tokens),
                features=feats,
            )
        )
    return out


def _rails(r: common_pb2.GuardRails, catalog: Catalog, bad: list[FieldViolation]) -> GuardRails | None:
    tiers = {t.name for t in catalog.tiers}
    targets = {t.name for t in catalog.targets}
    unknown = [("allowed_tiers", n) for n in r.allowed_tiers if n not in tiers]
    unknown += [("allowed_targets", n) for n in r.allowed_targets if n not in targets]
    bad.extend(FieldViolation(f"guard_rails.{f}", n, "not in the catalog") for f, n in unknown)
    try:
        return GuardRails(
            max_tokens=int(r.max_tokens_per_query),
            max_samples=int(r.max_samples_per_query),
            max_spend_usd=float(r.max_spend_per_query_usd),
            max_latency_s=float(r.max_latency_s),
            allowed_tiers=frozenset(r.allowed_tiers) if r.allowed_tiers else None,
            allowed_targets=frozenset(r.allowed_targets) if r.allowed_targets else None,
            forbid_high_compute=r.forbid_high_compute,
        )
    except InvalidArgumentError as exc:
        bad.extend(exc.violations)
        return None


# ---- predictor and options --------------------------------------------------------------------------------
async def _forecaster(state: ServiceState, context: Any) -> Forecaster:
    if state.predictor is not None:
        return state.predictor  # type: ignore[no-any-return]
    cached = state.extras.get("planning.prior")
    if cached is not None and cached[0] == state.catalog_version:
        return cached[1]  # type: ignore[no-any-return]
    if state.db is None:
        raise FailedPreconditionError("no predictor is active and no store is configured to fit a prior")
    prior = await state.run_blocking(context, _fit_prior, state)
    state.extras["planning.prior"] = (state.catalog_version, prior)
    return prior


def _fit_prior(state: ServiceState) -> Forecaster:
    from models.baseline import PriorForecaster
    from planner.store import RunStore

    frame = RunStore(state.db).load_frame()
    if len(frame) == 0:
        raise FailedPreconditionError("no predictor is active and the store holds no runs to fit a prior on")
    return PriorForecaster(run_name_map=state.catalog.run_name_map()).fit(frame)


async def _options(state: ServiceState, context: Any, forecaster: Forecaster) -> OptionSet:
    tiers = tuple(forecaster.tiers)
    router_options = getattr(state.router, "options", None)
    if isinstance(router_options, OptionSet) and router_options.forecast_tiers == tiers:
        return router_options
    key = (state.catalog_version, tiers, state.predictor_version)
    cached = state.extras.get("planning.options")
    if cached is not None and cached[0] == key:
        return cached[1]  # type: ignore[no-any-return]
    # A DifficultyPredictor's strategy response (fitted sample correlation and strategy offsets); the closed
    # forms of models.strategies for forecasters without one.
    quality_fn = getattr(forecaster, "quality_fn", None)
    options = await state.run_blocking(context, _build_options, state, tiers, quality_fn)
    state.extras["planning.options"] = (key, options)
    return options


def _build_options(state: ServiceState, tiers: tuple[str, ...], quality_fn: QualityFn | None) -> OptionSet:
    from simulator.costmodel import CostModel

    catalog = state.catalog_for(tiers)  # run models the catalog lacks get derived tiers
    return OptionSet.build(catalog, CostModel(catalog), tiers, quality_fn=quality_fn)


# ---- solving (worker thread) ------------------------------------------------------------------------------
def _restrict(options: OptionSet, rails: GuardRails) -> OptionSet:
    """Drop the options the request's option-level rails (tiers, targets, samples, high-compute) exclude for
    every query, before anything is priced; InfeasibleError when none is left."""
    masks = static_masks(rails, options)
    if not masks:
        return options
    keep = np.flatnonzero(combine(masks.values(), (1, len(options)))[0])
    if keep.size == 0:
        raise InfeasibleError(f"guard rails {sorted(masks)} exclude every option of the catalog")
    return options if keep.size == len(options) else options.restrict(keep.tolist())


def _plan(
    state: ServiceState, args: PlanArgs, forecaster: Forecaster, options: OptionSet, deadline: float
) -> routing_pb2.PlanResponse:
    queries = list(args.queries)
    if len(queries) * len(options) > MAX_ENTRIES:  # price only what the rails allow (explanations then
        options = _restrict(options, args.spec.rails)  # cannot name these rails as binding)
    if len(queries) * len(options) > MAX_ENTRIES:
        raise InvalidArgumentError.for_field(
            "queries",
            len(queries),
            f"{len(queries)} queries x {len(options)} options is above {MAX_ENTRIES:,} (query, option) "
            "pairs per Plan call: split the batch or narrow guard_rails.allowed_tiers/targets",
        )
    forecast = forecaster.forecast(queries)
    arrays = options.price(forecast)
    tenant_rails = {t.name: GuardRails.from_tenant(t).without_escalation() for t in state.catalog.tenants}
    batch = build_batch(
        options, arrays, forecast.input_tokens, [q.tenant for q in queries], args.spec, tenant_rails
    )
    if args.milp and batch.feasible_options > MILP_MAX_ENTRIES:
        raise InvalidArgumentError.for_field(
            "method",
            "SOLVER_METHOD_MILP",
            f"{batch.feasible_options} feasible (query, option) pairs; the exact "
            f"solver takes at most {MILP_MAX_ENTRIES} (use SOLVER_METHOD_LAGRANGIAN)",
        )
    solution = _solve(args, batch, deadline)
    optimism = plan_optimism(options, forecast, batch.problem, solution)
    if args.target_adjusted:

        def resolve(problem: Problem) -> Solution:
            return _solve(args, replace(batch, problem=problem), deadline)

        def estimate(problem: Problem, sol: Solution) -> Optimism:
            return plan_optimism(options, forecast, problem, sol)

        problem, solution, optimism = solve_adjusted(batch.problem, solution, optimism, resolve, estimate)
        batch = replace(batch, problem=problem)
    why = explain(batch.problem, solution)
    reply = _response(args, options, arrays, batch, solution, why)
    reply.totals.selection_optimism = optimism.mean
    reply.totals.adjusted_mean_quality = reply.totals.mean_quality - optimism.mean
    return reply


def _solve(args: PlanArgs, batch: Batch, deadline: float) -> Solution:
    left = max(deadline - time.perf_counter(), 0.0) * SOLVE_SHARE
    if args.milp:
        return solve_milp(batch.problem, time_limit_s=left)
    return solve(batch.problem, time_limit_s=left, tol=args.gap)


def _response(
    args: PlanArgs, options: OptionSet, arrays: OptionArrays, batch: Batch, sol: Solution, why: Explanations
) -> routing_pb2.PlanResponse:
    n = len(args.queries)
    r, ch = np.arange(n), sol.choice
    quality, usd, energy = arrays.quality[r, ch], arrays.usd[r, ch], arrays.energy_j[r, ch]
    reply = routing_pb2.PlanResponse(
        plan_id=uuid.uuid4().hex,
        objective_value=sol.value,
        bound=sol.bound,
        gap=sol.gap,
        stats=routing_pb2.SolverStats(
            method=routing_pb2.SOLVER_METHOD_MILP if args.milp else routing_pb2.SOLVER_METHOD_LAGRANGIAN,
            iterations=sol.stats.iterations,
            wall_s=sol.stats.seconds,
            options=batch.feasible_options,
            frontier_options=round(sol.stats.mean_frontier * n),
            hit_time_limit=sol.stats.timed_out,
        ),
    )
    _totals(reply.totals, options, arrays, batch, ch, quality, usd, energy)
    for name in batch.problem.constraint_names():
        public = batch.public_name(name)
        use, cap = sol.usage[name], sol.limits[name]
        slack = use - cap if kind_of(public) is ConstraintKind.QUALITY else cap - use
        price = sol.multipliers.get(name, 0.0)
        reply.shadow_prices.add(
            constraint=public,
            kind=KIND_PB[kind_of(public)],
            price=price,
            slack=slack,
            binding=name in sol.binding,
        )
    labels = options.options
    for i, q in enumerate(args.queries):
        o = labels[int(ch[i])]
        a = reply.assignments.add(
            query_id=q.query_id,
            option=common_pb2.OptionRef(tier=o.tier, strategy=o.strategy, target=o.target),
            expected_quality=float(quality[i]),
            cost_usd=common_pb2.Estimate(mean=float(usd[i]), p90=float(arrays.usd_p90[i, ch[i]])),
            latency_s=common_pb2.Estimate(
                mean=float(arrays.latency_s[i, ch[i]]), p90=float(arrays.latency_p90_s[i, ch[i]])
            ),
            energy_j=common_pb2.Estimate(mean=float(energy[i])),
            device_seconds=float(arrays.device_s[i, ch[i]]),
        )
        a.explanation.CopyFrom(explanation_message(i, options, arrays, batch, sol, why))
    return reply


def _totals(
    totals: routing_pb2.PlanTotals,
    options: OptionSet,
    arrays: OptionArrays,
    batch: Batch,
    ch: np.ndarray,
    quality: np.ndarray,
    usd: np.ndarray,
    energy: np.ndarray,
) -> None:
    n = len(ch)
    totals.spend_usd = float(usd.sum())
    totals.energy_kwh = float(energy.sum()) / 3.6e6
    totals.expected_quality = float(quality.sum())
    totals.mean_quality = float(quality.mean()) if n else 0.0
    device = arrays.device_s[np.arange(n), ch]
    per_target = np.bincount(options.target_of[ch], weights=device, minlength=len(options.targets))
    for t, v in zip(options.targets, per_target, strict=True):
        if v > 0:
            totals.device_seconds[t] = float(v)
    tenants = np.asarray(batch.tenants, dtype=object)
    for t in dict.fromkeys(batch.tenants):
        totals.spend_by_tenant_usd[t] = float(usd[tenants == t].sum())


def explanation(
    i: int, options: OptionSet, arrays: OptionArrays, batch: Batch, sol: Solution, why: Explanations
) -> Explanation:
    """Query i's explanation as the governance layer's `Explanation` (binding constraint or rail, shadow
    price, quality per extra USD, runner-up, high-compute flag, deadline fallback, summary)."""
    c = int(sol.choice[i])
    opt = options.options[c]
    name, kind, price = "", "none", 0.0
    if why.binding[i] >= 0:
        public = batch.public_name(why.binding_name(i))
        name, kind, price = public, kind_of(public).value, float(why.shadow_price[i])
    elif batch.rail_block[i]:
        name, kind = f"guard_rails.{batch.rail_block[i]}", "guard_rail"
    ru = int(why.runner_up[i])
    runner = options.options[ru] if ru >= 0 else None
    exp = Explanation(
        binding_constraint=name,
        binding_kind=kind,
        shadow_price=price,
        quality_gain_per_usd=float(why.gain_per_usd[i]),
        runner_up=(runner.tier, runner.strategy, runner.target) if runner is not None else None,
        runner_up_quality=float(why.runner_up_value[i]) if runner is not None else 0.0,
        runner_up_cost_usd=float(why.runner_up_cost[i]) if runner is not None else 0.0,
        high_compute=opt.high_compute,
        deadline_fallback=sol.stats.timed_out,
    )
    summary = summarise(opt.label(), float(arrays.quality[i, c]), float(arrays.usd[i, c]), exp)
    return Explanation(**{**exp.to_dict(), "summary": summary})


def explanation_message(
    i: int, options: OptionSet, arrays: OptionArrays, batch: Batch, sol: Solution, why: Explanations
) -> routing_pb2.Explanation:
    """Query i's explanation as a `planner.v1.Explanation` message."""
    exp = explanation(i, options, arrays, batch, sol, why)
    kind = routing_pb2.CONSTRAINT_KIND_NONE
    if exp.binding_kind == "guard_rail":
        kind = RAIL_KIND.get(
            exp.binding_constraint.removeprefix("guard_rails."), routing_pb2.CONSTRAINT_KIND_GUARD_RAIL
        )
    elif exp.binding_kind != "none":
        kind = KIND_PB[ConstraintKind(exp.binding_kind)]
    msg = routing_pb2.Explanation(
        binding_constraint=exp.binding_constraint,
        binding_kind=kind,
        shadow_price=exp.shadow_price,
        quality_gain_per_usd=exp.quality_gain_per_usd,
        runner_up_quality=exp.runner_up_quality,
        runner_up_cost_usd=exp.runner_up_cost_usd,
        high_compute=exp.high_compute,
        deadline_fallback=exp.deadline_fallback,
        summary=exp.summary,
    )
    if exp.runner_up is not None:
        msg.runner_up.CopyFrom(
            common_pb2.OptionRef(tier=exp.runner_up[0], strategy=exp.runner_up[1], target=exp.runner_up[2])
        )
    return msg
