"""RoutingService: Route and RouteBatch (online decisions with pacing, guard rails and audit), Plan (delegated
to `planner.servicers.planning.handle_plan`, the batch solver's handler), ReportOutcomes (actual costs move
the ledger: `planner.store.outcomes`).

The per-server `OnlineRouter` is built on first use and rebuilt in the background when the catalog or the
active predictor changes (the current one answers meanwhile): forecaster = the active predictor
(`state.predictor`), else a `models.baseline.PriorForecaster` fitted on the stored runs; ledger =
`planner.store.Ledger` on the server's database (shared by replicas), or an in-process ledger without one;
audit = `AuditWriter` over `planner.store.AuditLog`.

Concurrent Route calls that arrive together are decided as one vectorised batch
(`planner.servicers.coalesce.Coalescer`); a batch that fails is re-decided query by query so each call gets
its own answer or error.
"""

from __future__ import annotations

import asyncio
import inspect
import math
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, TypeAlias

import grpc
import structlog

from models.api import Query
from planner.decision import Decision
from planner.errors import FailedPreconditionError, FieldViolation, InvalidArgumentError
from planner.governance import AuditWriter, GuardRails
from planner.online import CallOptions, OnlineRouter
from planner.pacing import Budget
from planner.servicers.coalesce import Coalescer
from planner.servicers.state import ServiceState
from planner.servicers.unbuilt import not_built
from planner.store import AuditLog, Outcome, record_outcomes
from planner.v1 import common_pb2, routing_pb2, routing_pb2_grpc

log = structlog.get_logger(__name__)
SERVICE = routing_pb2.DESCRIPTOR.services_by_name["RoutingService"].full_name
Ctx: TypeAlias = grpc.aio.ServicerContext

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MIN_DECIDE_S = 0.002
"""Below this much time left in the call, deadline handling applies (fail, or cheapest-option fallback)."""
MAX_BATCH = 100_000
REBUILD_RETRY_S = 5.0
"""After a failed background router rebuild, the current router serves this long before the next try."""

PERIODS = {
    common_pb2.BUDGET_PERIOD_HOUR: "hour",
    common_pb2.BUDGET_PERIOD_DAY: "day",
    common_pb2.BUDGET_PERIOD_WEEK: "week",
    common_pb2.BUDGET_PERIOD_MONTH: "month",
}
"""API budget periods -> `planner.pacing` period names (also read by Plan's period budgets)."""
_KINDS = {
    "none": routing_pb2.CONSTRAINT_KIND_NONE,
    "spend": routing_pb2.CONSTRAINT_KIND_SPEND,
    "energy": routing_pb2.CONSTRAINT_KIND_ENERGY,
    "latency": routing_pb2.CONSTRAINT_KIND_LATENCY,
    "guard_rail": routing_pb2.CONSTRAINT_KIND_GUARD_RAIL,
}


# ---- request conversion ------------------------------------------------------------------------------------
def _nonneg(bad: list[FieldViolation], path: str, value: float) -> float:
    if not (math.isfinite(value) and value >= 0):
        bad.append(FieldViolation(path, value, "must be finite and >= 0"))
        return 0.0
    return float(value)


def query_from_proto(
    msg: common_pb2.QueryInput, path: str, bad: list[FieldViolation], tenants: Sequence[str] = ()
) -> Query:
    if tenants and (msg.tenant or "default") not in tenants:
        bad.append(FieldViolation(f"{path}.tenant", msg.tenant, f"unknown tenant; valid: {sorted(tenants)}"))
    if msg.prompt_tokens < 0:
        bad.append(FieldViolation(f"{path}.prompt_tokens", msg.prompt_tokens, "must be >= 0"))
    for key, value in msg.features.items():
        if not math.isfinite(value):
            bad.append(FieldViolation(f"{path}.features[{key}]", value, "must be finite"))
    return Query(
        query_id=msg.query_id,
        prompt=msg.prompt,
        task=msg.task or "default",
        tags=tuple(msg.tags),
        tenant=msg.tenant or "default",
        prompt_tokens=max(0, msg.prompt_tokens),
        features=dict(msg.features),
    )


def _names(
    bad: list[FieldViolation], path: str, given: Sequence[str], known: Sequence[str]
) -> frozenset[str] | None:
    if not given:
        return None
    for i, name in enumerate(given):
        if name not in known:
            bad.append(FieldViolation(f"{path}[{i}]", name, f"unknown; valid: {sorted(known)}"))
    return frozenset(given)


def call_from_proto(
    state: ServiceState, request: Any, bad: list[FieldViolation], context: Ctx
) -> CallOptions:
    """Guard rails, SLO, budget override, dry run and deadline handling of a Route / RouteBatch request."""
    g = request.guard_rails
    cat = state.effective_catalog()  # derived tiers and strategies may be named too
    if g.max_tokens_per_query < 0:
        bad.append(FieldViolation("guard_rails.max_tokens_per_query", g.max_tokens_per_query, "must be >= 0"))
    if g.max_samples_per_query < 0:
        bad.append(
            FieldViolation("guard_rails.max_samples_per_query", g.max_samples_per_query, "must be >= 0")
        )
    slo = request.slo
    p90 = _nonneg(bad, "slo.p90_e2e_s", slo.p90_e2e_s)
    p99 = _nonneg(bad, "slo.p99_e2e_s", slo.p99_e2e_s)  # against the log-normal tail of mean and p90
    latency = [v for v in (_nonneg(bad, "guard_rails.max_latency_s", g.max_latency_s), p90) if v > 0]
    rails = GuardRails(
        max_tokens=max(0, g.max_tokens_per_query),
        max_samples=max(0, g.max_samples_per_query),
        max_spend_usd=_nonneg(bad, "guard_rails.max_spend_per_query_usd", g.max_spend_per_query_usd),
        max_latency_s=min(latency) if latency else 0.0,
        max_latency_p99_s=p99,
        max_ttft_s=_nonneg(bad, "slo.ttft_p90_s", slo.ttft_p90_s),
        allowed_tiers=_names(bad, "guard_rails.allowed_tiers", g.allowed_tiers, [t.name for t in cat.tiers]),
        allowed_targets=_names(
            bad, "guard_rails.allowed_targets", g.allowed_targets, [t.name for t in cat.targets]
        ),
        forbid_high_compute=g.forbid_high_compute,
    )
    budget = None
    if request.HasField("budget_override"):
        b = request.budget_override
        period = PERIODS.get(b.period)
        if b.period == common_pb2.BUDGET_PERIOD_TOTAL or (period is None and b.period != 0):
            bad.append(FieldViolation("budget_override.period", b.period, "Route paces hour/day/week/month"))
        budget = Budget(
            _nonneg(bad, "budget_override.spend_usd", b.spend_usd),
            _nonneg(bad, "budget_override.energy_kwh", b.energy_kwh),
            period or "day",
        )
        if b.period == 0:
            budget = _tenant_period(state, request, budget)
    fallback = False
    if state.time_budget(context) < MIN_DECIDE_S:
        if request.deadline_handling == routing_pb2.DEADLINE_HANDLING_FAIL:
            raise TimeoutError("no time left to decide")
        fallback = True
    return CallOptions(rails=rails, budget=budget, dry_run=request.dry_run, fallback=fallback)


def _field_bytes(request: Any, name: str) -> bytes | None:
    """A message field's bytes, None when unset (the cache key of call-level options)."""
    return getattr(request, name).SerializeToString(deterministic=True) if request.HasField(name) else None


def _first_tenant(request: Any) -> str:
    """The tenant of a Route request's query, or of a RouteBatch request's first query."""
    query = request.query if hasattr(request, "query") else (request.queries[0] if request.queries else None)
    return (query.tenant if query is not None else "") or "default"


def _tenant_period(state: ServiceState, request: Any, budget: Budget) -> Budget:
    """An override without a period takes the tenant's catalog period."""
    name = _first_tenant(request)
    for t in state.catalog.tenants:
        if t.name == name:
            return Budget(budget.spend_usd, budget.energy_kwh, t.period)
    return budget


# ---- response conversion -----------------------------------------------------------------------------------
def decision_to_proto(d: Decision, msg: routing_pb2.Decision | None = None) -> routing_pb2.Decision:
    """`d` as its API message, written into `msg` when given (e.g. a reply's field: no extra copy). Fields are
    set in place rather than through sub-message constructors, which would build and copy each one."""
    msg = routing_pb2.Decision() if msg is None else msg
    msg.decision_id, msg.query_id, msg.tenant = d.decision_id, d.query_id, d.tenant
    msg.expected_quality = d.expected_quality
    msg.predictor_version, msg.catalog_version = d.predictor_version, d.catalog_version
    option = msg.option
    option.tier, option.strategy, option.target = d.option.tier, d.option.strategy, d.option.target
    msg.cost_usd.mean, msg.cost_usd.p90 = d.usd, d.usd_p90
    msg.latency_s.mean, msg.latency_s.p90 = d.latency_s, d.latency_p90_s
    msg.ttft_s.mean = msg.ttft_s.p90 = d.ttft_s
    msg.energy_j.mean = msg.energy_j.p90 = d.energy_j
    e, exp = d.explanation, msg.explanation
    exp.binding_constraint = e.binding_constraint
    exp.binding_kind = _KINDS.get(e.binding_kind, routing_pb2.CONSTRAINT_KIND_UNSPECIFIED)
    exp.shadow_price, exp.quality_gain_per_usd = e.shadow_price, e.quality_gain_per_usd
    exp.runner_up_quality, exp.runner_up_cost_usd = e.runner_up_quality, e.runner_up_cost_usd
    exp.high_compute, exp.escalated, exp.deadline_fallback = e.high_compute, e.escalated, e.deadline_fallback
    exp.escalation_reason, exp.summary = e.escalation_reason, e.summary
    if e.runner_up is not None:
        exp.runner_up.tier, exp.runner_up.strategy, exp.runner_up.target = e.runner_up
    msg.decided_at.seconds, msg.decided_at.nanos = _epoch(d.decided_at)
    return msg


def _epoch(when: datetime) -> tuple[int, int]:
    """(seconds, nanos) since the epoch of an aware datetime (what Timestamp.FromDatetime sets, faster)."""
    delta = when - _EPOCH
    return delta.days * 86_400 + delta.seconds, delta.microseconds * 1000


# ---- router lifecycle --------------------------------------------------------------------------------------
def _build_router(state: ServiceState, audit: Any) -> OnlineRouter:
    """Blocking: fit the fallback forecaster if needed, build options and ledger (`audit`: the servicer's
    `AuditWriter`, shared by successive routers so calls still in flight on a replaced one are audited)."""
    from models.baseline import PriorForecaster
    from planner.options import OptionSet
    from planner.pacing import MemoryLedger
    from planner.store import Ledger, RunStore
    from simulator.costmodel import CostModel

    catalog = state.catalog
    forecaster, version = state.predictor, state.predictor_version
    if forecaster is None:
        if state.db is None:
            raise FailedPreconditionError("no predictor is active and there is no store to fit a prior from")
        frame = RunStore(state.db).load_frame()
        if frame.empty:
            raise FailedPreconditionError(
                "no predictor is active and the store holds no runs: import runs (planner runs import) first"
            )
        forecaster = PriorForecaster(catalog.run_name_map()).fit(frame)
        version = f"prior:{len(frame)}-runs"
    catalog = state.catalog_for(forecaster.tiers)  # run models the catalog lacks get derived tiers
    # The active DifficultyPredictor's fitted strategy response; the closed forms for other forecasters.
    quality_fn = getattr(forecaster, "quality_fn", None)
    options = OptionSet.build(catalog, CostModel(catalog), forecaster.tiers, quality_fn=quality_fn)
    ledger: Any = Ledger(state.db) if state.db is not None else MemoryLedger()
    return OnlineRouter(
        catalog,
        options,
        forecaster,
        ledger,
        audit,
        predictor_version=version or "unversioned",
        catalog_version=state.catalog_version,
        executor=state.executor,
    )


class RoutingServicer(routing_pb2_grpc.RoutingServiceServicer):
    def __init__(self, state: ServiceState) -> None:
        self.state = state
        self._lock = asyncio.Lock()
        self._key: tuple[str, int] | None = None
        self._rebuild: asyncio.Future[None] | None = None
        self._retry_at = 0.0
        self._closed = False
        self.coalescer = Coalescer()
        self._audit: AuditWriter | None = None
        self._calls: dict[tuple[Any, ...], CallOptions] = {}
        self._tenant_names: tuple[str, tuple[str, ...]] = ("", ())
        state.extras["routing"] = self.coalescer
        state.closers.append(self.close)

    async def router(self, context: Ctx) -> OnlineRouter:
        """The router of the current catalog and predictor. The first is built before the first call is
        answered; after a catalog change or predictor swap the successor is built in the background while the
        current router keeps answering (each decision names the predictor and catalog versions it used)."""
        st = self.state
        key = (st.catalog_version, id(st.predictor))
        if st.router is not None:
            if self._key != key and self._rebuild is None and time.monotonic() >= self._retry_at:
                self._rebuild = asyncio.ensure_future(self._replace(key))
            return st.router  # type: ignore[no-any-return]
        async with self._lock:
            if st.router is None:
                st.router = await st.run_blocking(context, _build_router, st, self._audit_writer())
                self._key = key
        return st.router  # type: ignore[no-any-return]

    def _audit_writer(self) -> AuditWriter | None:
        if self._audit is None and self.state.db is not None:
            self._audit = AuditWriter(AuditLog(self.state.db).write_many)
        return self._audit

    async def _replace(self, key: tuple[str, int]) -> None:
        """Build the successor router off the event loop, then swap it in and retire the old one."""
        st = self.state
        try:
            loop = asyncio.get_running_loop()
            new = await loop.run_in_executor(st.executor, _build_router, st, self._audit_writer())
        except Exception as exc:  # keep serving with the current router; retry after a pause
            log.error("router.rebuild_failed", error=str(exc))
            self._retry_at = time.monotonic() + REBUILD_RETRY_S
            return
        finally:
            self._rebuild = None
        if self._closed:
            new.close()
            return
        old, st.router, self._key = st.router, new, key
        log.info("router.replaced", predictor=new.predictor_version, catalog=new.catalog_version)
        if old is not None:
            try:
                await old.aclose(close_audit=False)
            except Exception as exc:  # its unused leases stay reserved until the period ends
                log.error("router.retire_failed", error=str(exc))

    def _tenants(self) -> tuple[str, ...]:
        version = self.state.catalog_version
        if self._tenant_names[0] != version:
            self._tenant_names = (version, tuple(t.name for t in self.state.catalog.tenants))
        return self._tenant_names[1]

    def close(self) -> None:
        """Server shutdown: give the router's leases back and flush the audit log."""
        self._closed = True
        if self._rebuild is not None:
            self._rebuild.cancel()
        if self.state.router is not None:
            self.state.router.close()
            self.state.router = None
        if self._audit is not None:
            self._audit.close()

    def _call(self, request: Any, bad: list[FieldViolation], context: Ctx) -> CallOptions:
        """`call_from_proto`, cached by the request's call-level fields (schedulers repeat them)."""
        if self.state.time_budget(context) < MIN_DECIDE_S:
            return call_from_proto(self.state, request, bad, context)
        key = (
            self.state.catalog_version,
            _field_bytes(request, "guard_rails"),
            _field_bytes(request, "slo"),
            _field_bytes(request, "budget_override"),
            request.dry_run,
            _first_tenant(request),
        )
        call = self._calls.get(key)
        if call is None:
            mine: list[FieldViolation] = []
            call = call_from_proto(self.state, request, mine, context)
            if mine:
                bad.extend(mine)
                return call
            if len(self._calls) >= 1024:
                self._calls.clear()
            self._calls[key] = call
        return call

    async def Route(self, request: routing_pb2.RouteRequest, context: Ctx) -> routing_pb2.RouteResponse:
        bad: list[FieldViolation] = []
        query = query_from_proto(request.query, "query", bad, self._tenants())
        call = self._call(request, bad, context)
        if bad:
            raise InvalidArgumentError("invalid RouteRequest", bad)
        router = await self.router(context)
        wait = self.state.time_budget(context) - MIN_DECIDE_S  # never wait for company past the deadline
        decision = await self.coalescer.decide(router, query, call, max_wait_s=wait)
        reply = routing_pb2.RouteResponse()
        decision_to_proto(decision, reply.decision)
        return reply

    async def RouteBatch(
        self, request: routing_pb2.RouteBatchRequest, context: Ctx
    ) -> routing_pb2.RouteBatchResponse:
        bad: list[FieldViolation] = []
        if not request.queries or len(request.queries) > MAX_BATCH:
            bad.append(FieldViolation("queries", len(request.queries), f"needs 1 to {MAX_BATCH} queries"))
        tenants = self._tenants()
        queries = [query_from_proto(q, f"queries[{i}]", bad, tenants) for i, q in enumerate(request.queries)]
        call = self._call(request, bad, context)
        if bad:
            raise InvalidArgumentError("invalid RouteBatchRequest", bad)
        router = await self.router(context)
        decisions = await router.route(queries, call)
        reply = routing_pb2.RouteBatchResponse()
        for d in decisions:
            decision_to_proto(d, reply.decisions.add())
        return reply

    async def ReportOutcomes(
        self, request: routing_pb2.ReportOutcomesRequest, context: Ctx
    ) -> routing_pb2.ReportOutcomesResponse:
        if len(request.outcomes) > MAX_BATCH:
            raise InvalidArgumentError.for_field("outcomes", len(request.outcomes), f"at most {MAX_BATCH}")
        outcomes = [
            Outcome(
                o.decision_id,
                o.cost_usd,
                o.energy_j if o.HasField("energy_j") else None,
                o.correct if o.HasField("correct") else None,
            )
            for o in request.outcomes
        ]
        db = self.state.db
        if db is None:
            raise FailedPreconditionError("no store on this server: outcomes are matched with its audit log")
        if self._audit is not None:  # decisions still queued for the audit log are written first
            await self.state.run_blocking(context, self._audit.flush)
        report = await self.state.run_blocking(context, record_outcomes, db, outcomes)
        return routing_pb2.ReportOutcomesResponse(
            applied=report.applied,
            already_reported=report.already_reported,
            unknown_decision_ids=list(report.unknown),
            spend_delta_usd=report.spend_delta_usd,
        )

    async def Plan(self, request: routing_pb2.PlanRequest, context: grpc.aio.ServicerContext) -> Any:
        try:
            from planner.servicers.planning import handle_plan
        except ImportError:
            not_built("RoutingService.Plan")
        result = handle_plan(self.state, request, context)
        return await result if inspect.isawaitable(result) else result


def add_to_server(server: Any, state: ServiceState) -> str:
    routing_pb2_grpc.add_RoutingServiceServicer_to_server(RoutingServicer(state), server)
    return SERVICE
