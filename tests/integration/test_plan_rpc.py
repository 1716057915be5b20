"""RoutingService.Plan on a real grpc.aio server (port 0) over a SQLite store seeded with the demo history.

One server per module (building the priced option table of the default catalog takes a few seconds once).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import grpc
import numpy as np
import pytest
import pytest_asyncio
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from planner.catalog import load_catalog
from planner.demo import seed_demo
from planner.options import lognormal_p99
from planner.server import create_server, stop_server
from planner.settings import Settings
from planner.store import Database, Ledger, period_key
from planner.v1 import common_pb2, routing_pb2, routing_pb2_grpc

pytestmark = pytest.mark.asyncio(loop_scope="module")

N = 40


@pytest.fixture(scope="module")
def seeded_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, Database]]:
    path: Path = tmp_path_factory.mktemp("plan") / "planner.db"
    settings = Settings(database_url=f"sqlite:///{path}", address="127.0.0.1:0", grace_s=1.0)
    db = Database(settings.database_url)
    seed_demo(db, load_catalog(), n_queries=60)
    yield settings, db
    db.dispose()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stub(seeded_db: tuple[Settings, Database]) -> AsyncIterator[routing_pb2_grpc.RoutingServiceStub]:
    settings, db = seeded_db
    srv, port = await create_server("127.0.0.1:0", settings, db=db)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
        yield routing_pb2_grpc.RoutingServiceStub(ch)
    await stop_server(srv, 0)


def _queries(n: int = N, tenant: str = "") -> list[common_pb2.QueryInput]:
    return [
        common_pb2.QueryInput(
            query_id=f"q{i}", prompt="What is 17 * 23? " * (1 + i % 5), task="gsm", tenant=tenant
        )
        for i in range(n)
    ]


async def _plan(stub: routing_pb2_grpc.RoutingServiceStub, **kw: object) -> routing_pb2.PlanResponse:
    request = routing_pb2.PlanRequest(queries=kw.pop("queries", _queries()), **kw)  # type: ignore[arg-type]
    return await stub.Plan(request, timeout=60)  # type: ignore[no-any-return]


async def test_unconstrained_plan_assigns_every_query(stub: routing_pb2_grpc.RoutingServiceStub) -> None:
    reply = await _plan(stub)
    assert [a.query_id for a in reply.assignments] == [f"q{i}" for i in range(N)]
    assert reply.gap == 0.0 and reply.bound == pytest.approx(reply.objective_value)
    assert reply.totals.mean_quality == pytest.approx(reply.totals.expected_quality / N)
    # the promise adjusted for selection among near-equal tiers (levels known from 60 demo queries)
    assert 0.0 < reply.totals.selection_optimism < 0.05
    assert reply.totals.adjusted_mean_quality == pytest.approx(
        reply.totals.mean_quality - reply.totals.selection_optimism
    )
    assert reply.stats.method == routing_pb2.SOLVER_METHOD_LAGRANGIAN
    assert reply.stats.options > 0 and reply.plan_id


async def test_spend_cap_is_never_crossed_and_binds(stub: routing_pb2_grpc.RoutingServiceStub) -> None:
    free = await _plan(stub)
    cap = free.totals.spend_usd * 0.05
    reply = await _plan(stub, total_spend_usd=cap)
    assert reply.totals.spend_usd <= cap
    assert sum(a.cost_usd.mean for a in reply.assignments) <= cap * (1 + 1e-9)
    assert 0 <= reply.gap < 0.05
    assert reply.objective_value <= reply.bound
    spend = {p.constraint: p for p in reply.shadow_prices}["total_spend_usd"]
    assert spend.kind == routing_pb2.CONSTRAINT_KIND_SPEND and spend.binding and spend.price > 0
    assert spend.slack >= 0


async def test_energy_tenant_and_capacity_caps(stub: routing_pb2_grpc.RoutingServiceStub) -> None:
    free = await _plan(stub)
    busiest = max(free.totals.device_seconds, key=lambda t: free.totals.device_seconds[t])
    reply = await _plan(
        stub,
        total_energy_kwh=free.totals.energy_kwh * 0.5 if free.totals.energy_kwh > 0 else 0.0,
        tenant_budgets={"default": common_pb2.Budget(spend_usd=free.totals.spend_usd * 0.2)},
        capacity=[
            routing_pb2.TargetCapacity(target=busiest, device_seconds=free.totals.device_seconds[busiest] / 2)
        ],
    )
    assert reply.totals.spend_by_tenant_usd["default"] <= free.totals.spend_usd * 0.2
    assert reply.totals.device_seconds[busiest] <= free.totals.device_seconds[busiest] / 2
    if free.totals.energy_kwh > 0:
        assert reply.totals.energy_kwh <= free.totals.energy_kwh * 0.5 * (1 + 1e-9)
    names = {p.constraint for p in reply.shadow_prices}
    assert {"tenant:default:spend_usd", f"capacity:{busiest}"} <= names


async def test_min_cost_for_quality(stub: routing_pb2_grpc.RoutingServiceStub) -> None:
    free = await _plan(stub)
    target = free.totals.mean_quality * 0.9
    reply = await _plan(
        stub, objective=routing_pb2.PLAN_OBJECTIVE_MIN_COST_FOR_QUALITY, target_quality=target
    )
    assert reply.totals.mean_quality >= target - 1e-9
    assert reply.objective_value == pytest.approx(reply.totals.spend_usd)
    assert reply.bound <= reply.objective_value
    assert reply.totals.spend_usd < free.totals.spend_usd


async def test_min_cost_target_may_hold_for_the_adjusted_promise(
    stub: routing_pb2_grpc.RoutingServiceStub,
) -> None:
    free = await _plan(stub)
    target = free.totals.mean_quality * 0.92
    kw: dict[str, object] = {
        "objective": routing_pb2.PLAN_OBJECTIVE_MIN_COST_FOR_QUALITY,
        "target_quality": target,
    }
    plain = await _plan(stub, **kw)
    assert plain.totals.mean_quality >= target - 1e-9
    assert plain.totals.adjusted_mean_quality < target  # the plain plan's promise is held to its forecasts
    adjusted = await _plan(stub, target_adjusted_quality=True, **kw)
    assert adjusted.totals.adjusted_mean_quality >= target - 0.02  # up to the estimate's Monte Carlo error
    assert adjusted.totals.mean_quality > plain.totals.mean_quality
    assert adjusted.totals.adjusted_mean_quality == pytest.approx(
        adjusted.totals.mean_quality - adjusted.totals.selection_optimism
    )
    assert adjusted.totals.spend_usd > plain.totals.spend_usd  # it buys back what selection would take
    with pytest.raises(grpc.aio.AioRpcError) as err:  # no plan's adjusted promise reaches the best forecast
        await _plan(stub, target_adjusted_quality=True, **(kw | {"target_quality": free.totals.mean_quality}))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_guard_rails_and_slo_filter_options(stub: routing_pb2_grpc.RoutingServiceStub) -> None:
    reply = await _plan(
        stub,
        guard_rails=common_pb2.GuardRails(max_samples_per_query=1, forbid_high_compute=True),
        slo=common_pb2.LatencySlo(p90_e2e_s=60.0),
    )
    catalog = load_catalog()
    for a in reply.assignments:
        assert catalog.strategy(a.option.strategy).samples == 1
        assert a.latency_s.p90 <= 60.0
    tail = await _plan(stub, slo=common_pb2.LatencySlo(p99_e2e_s=30.0))
    p99 = lognormal_p99(
        np.array([a.latency_s.mean for a in tail.assignments]),
        np.array([a.latency_s.p90 for a in tail.assignments]),
    )
    assert len(tail.assignments) == N and np.all(p99 <= 30.0 * (1 + 1e-9))


async def test_milp_method_matches_or_beats_the_lagrangian_plan(
    stub: routing_pb2_grpc.RoutingServiceStub,
) -> None:
    free = await _plan(stub, queries=_queries(6))
    rails = common_pb2.GuardRails(allowed_targets=["H100-SXM5-80GB", "together-api"])
    cap = free.totals.spend_usd * 0.3
    lag = await _plan(stub, queries=_queries(6), total_spend_usd=cap, guard_rails=rails)
    exact = await _plan(
        stub,
        queries=_queries(6),
        total_spend_usd=cap,
        guard_rails=rails,
        method=routing_pb2.SOLVER_METHOD_MILP,
    )
    assert exact.stats.method == routing_pb2.SOLVER_METHOD_MILP
    assert exact.totals.spend_usd <= cap * (1 + 1e-6)
    assert lag.objective_value <= exact.objective_value + 1e-6
    assert lag.bound >= exact.objective_value - 1e-6
    prices = {p.constraint: p.price for p in exact.shadow_prices}  # the LP relaxation's duals
    assert prices == pytest.approx({p.constraint: p.price for p in lag.shadow_prices}, rel=1e-6, abs=1e-9)


async def test_every_assignment_explains_itself(stub: routing_pb2_grpc.RoutingServiceStub) -> None:
    free = await _plan(stub)
    assert all(a.explanation.binding_kind == routing_pb2.CONSTRAINT_KIND_NONE for a in free.assignments)
    reply = await _plan(stub, total_spend_usd=free.totals.spend_usd * 0.05)
    exps = [a.explanation for a in reply.assignments]
    spend = {p.constraint: p.price for p in reply.shadow_prices}["total_spend_usd"]
    bound = [e for e in exps if e.binding_constraint == "total_spend_usd"]
    assert bound and all(e.binding_kind == routing_pb2.CONSTRAINT_KIND_SPEND for e in bound)
    assert all(e.shadow_price == pytest.approx(spend) for e in bound)
    assert all(e.quality_gain_per_usd > 0 and e.runner_up.tier for e in bound)
    assert all(e.summary for e in exps)
    rails = await _plan(stub, guard_rails=common_pb2.GuardRails(max_samples_per_query=1))
    assert any(
        a.explanation.binding_kind == routing_pb2.CONSTRAINT_KIND_GUARD_RAIL for a in rails.assignments
    )


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"queries": []}, "queries"),
        ({"total_spend_usd": -1.0}, "total_spend_usd"),
        ({"total_energy_kwh": float("nan")}, "total_energy_kwh"),
        ({"target_quality": 0.5}, "target_quality"),
        (
            {"objective": routing_pb2.PLAN_OBJECTIVE_MIN_COST_FOR_QUALITY, "target_quality": 1.5},
            "target_quality",
        ),
        ({"gap_tolerance": 2.0}, "gap_tolerance"),
        ({"capacity": [routing_pb2.TargetCapacity(target="nope", device_seconds=1.0)]}, "capacity[0].target"),
        ({"guard_rails": common_pb2.GuardRails(allowed_tiers=["nope"])}, "guard_rails.allowed_tiers"),
        ({"guard_rails": common_pb2.GuardRails(max_spend_per_query_usd=-1.0)}, "guard_rails.max_spend_usd"),
        ({"slo": common_pb2.LatencySlo(p99_e2e_s=-3.0)}, "slo.p99_e2e_s"),
        ({"target_adjusted_quality": True}, "target_adjusted_quality"),
        ({"queries": [common_pb2.QueryInput(query_id="x", tenant="who")]}, "queries[0].tenant"),
        (
            {"tenant_budgets": {"default": common_pb2.Budget(spend_usd=-2.0)}},
            "tenant_budgets[default].spend_usd",
        ),
    ],
)
async def test_bad_fields_are_invalid_argument_with_field_violations(
    stub: routing_pb2_grpc.RoutingServiceStub, kw: dict[str, object], field: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _plan(stub, **kw)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    status = rpc_status.from_call(err.value)
    assert status is not None
    fields = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            br = error_details_pb2.BadRequest()
            detail.Unpack(br)
            fields += [v.field for v in br.field_violations]
    assert field in fields


async def test_unaffordable_cap_is_failed_precondition(stub: routing_pb2_grpc.RoutingServiceStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _plan(stub, total_spend_usd=1e-12)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_concurrent_plans(stub: routing_pb2_grpc.RoutingServiceStub) -> None:
    replies = await asyncio.gather(*(_plan(stub, total_spend_usd=0.01 * (k + 1)) for k in range(3)))
    for k, r in enumerate(replies):
        assert r.totals.spend_usd <= 0.01 * (k + 1)


async def test_rails_excluding_every_option_are_failed_precondition(
    stub: routing_pb2_grpc.RoutingServiceStub,
) -> None:
    rails = common_pb2.GuardRails(allowed_tiers=["gpt-4o-mini"], allowed_targets=["groq-lpu"])
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _plan(stub, guard_rails=rails)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "guard rails" in (err.value.details() or "")


async def test_a_period_budget_is_what_the_ledger_leaves_of_it(
    stub: routing_pb2_grpc.RoutingServiceStub, seeded_db: tuple[Settings, Database]
) -> None:
    ledger, key = Ledger(seeded_db[1]), period_key(datetime.now(UTC), "day")
    cap = (await _plan(stub)).totals.spend_usd * 0.1  # binds: plans under it spend (nearly) all of it
    day = common_pb2.Budget(spend_usd=cap, period=common_pb2.BUDGET_PERIOD_DAY)
    ledger.reserve("default", key, cap * 0.6)  # online routing already spent 60% of today's budget
    try:
        left = await _plan(stub, tenant_budgets={"default": day})
        assert left.totals.spend_usd <= cap * 0.4 * (1 + 1e-9)
        alone = await _plan(stub, tenant_budgets={"default": common_pb2.Budget(spend_usd=cap)})
        assert alone.totals.spend_usd > cap * 0.4  # no period: the cap is this plan's alone
        ledger.reserve("default", key, cap)  # now spent beyond the budget
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await _plan(stub, tenant_budgets={"default": day})
        assert err.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    finally:
        ledger.release("default", key, 2 * cap)
