"""Route and RouteBatch over a real server on port 0 (SQLite store seeded with the demo history).

Decisions explain themselves, are audited (rows appear after the call), charge the tenant's ledger (except
dry runs), obey guard rails, and bad fields come back as INVALID_ARGUMENT with a BadRequest naming field
and value.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from planner.catalog import load_catalog
from planner.demo import seed_demo
from planner.server import create_server, stop_server
from planner.settings import Settings
from planner.store import AuditLog, Database, Ledger, period_key
from planner.v1 import common_pb2, routing_pb2, routing_pb2_grpc


@pytest.fixture
async def stub(settings: Settings, db: Database) -> AsyncIterator[routing_pb2_grpc.RoutingServiceStub]:
    seed_demo(db, load_catalog(), n_queries=200)
    srv, port = await create_server("127.0.0.1:0", settings, db=db)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            yield routing_pb2_grpc.RoutingServiceStub(ch)
    finally:
        await stop_server(srv, 0)


def query(
    qid: str, tenant: str = "default", prompt: str = "What is 17 * 23? Explain."
) -> common_pb2.QueryInput:
    return common_pb2.QueryInput(query_id=qid, prompt=prompt, tenant=tenant, task="math")


def bad_request(err: grpc.aio.AioRpcError) -> error_details_pb2.BadRequest:
    status = rpc_status.from_call(err)
    assert status is not None
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            out = error_details_pb2.BadRequest()
            detail.Unpack(out)
            return out
    raise AssertionError(f"no BadRequest in {status}")


async def wait_for_audit(db: Database, n: int, timeout_s: float = 10.0) -> list:
    deadline = time.monotonic() + timeout_s
    while True:
        rows = AuditLog(db).recent(limit=1000)
        if len(rows) >= n or time.monotonic() > deadline:
            return rows
        await asyncio.sleep(0.05)


async def test_route_explains_itself_and_is_audited(
    stub: routing_pb2_grpc.RoutingServiceStub, db: Database
) -> None:
    reply = await stub.Route(routing_pb2.RouteRequest(query=query("q1")))
    d = reply.decision
    assert d.query_id == "q1" and d.tenant == "default" and d.decision_id
    assert d.option.tier and d.option.strategy and d.option.target
    assert 0 < d.expected_quality <= 1 and d.cost_usd.mean > 0 and d.cost_usd.p90 >= d.cost_usd.mean
    e = d.explanation
    assert e.summary.startswith(f"{d.option.tier}/{d.option.strategy}@{d.option.target}")
    assert e.binding_kind != routing_pb2.CONSTRAINT_KIND_UNSPECIFIED
    assert e.runner_up.tier and e.runner_up_cost_usd > 0
    assert (e.runner_up.tier, e.runner_up.strategy) != (d.option.tier, d.option.strategy)
    assert d.predictor_version and d.catalog_version
    rows = await wait_for_audit(db, 1)
    assert [r.request_id for r in rows] == [d.decision_id]
    row = rows[0]
    assert (row.tier, row.strategy, row.target) == (d.option.tier, d.option.strategy, d.option.target)
    assert row.explanation["summary"] == e.summary and "runner_up" in row.explanation
    spent = Ledger(db).spent("default", period_key(d.decided_at.ToDatetime(), "day"))
    assert spent.spent_usd >= d.cost_usd.mean  # reserved (a lease) before the decision was returned


async def test_guard_rails_are_enforced(stub: routing_pb2_grpc.RoutingServiceStub) -> None:
    rails = common_pb2.GuardRails(
        max_samples_per_query=1, forbid_high_compute=True, max_spend_per_query_usd=0.001
    )
    reply = await stub.RouteBatch(
        routing_pb2.RouteBatchRequest(queries=[query(f"b{i}") for i in range(20)], guard_rails=rails)
    )
    assert len(reply.decisions) == 20 and [d.query_id for d in reply.decisions] == [
        f"b{i}" for i in range(20)
    ]
    cat = load_catalog()
    for d in reply.decisions:
        strategy = cat.strategy(d.option.strategy)
        assert strategy.samples == 1 and not strategy.high_compute and not d.explanation.high_compute
        assert d.cost_usd.mean <= 0.001


async def test_unconstrained_route_flags_high_compute_and_escalation(
    stub: routing_pb2_grpc.RoutingServiceStub,
) -> None:
    # "search" tenant: escalate above $0.02, at most 4 samples; high-compute modes are flagged when chosen.
    reply = await stub.Route(routing_pb2.RouteRequest(query=query("h1", tenant="search"), dry_run=True))
    d = reply.decision
    assert cat_samples(d.option.strategy) <= 4
    assert d.explanation.high_compute == load_catalog().strategy(d.option.strategy).high_compute
    assert d.cost_usd.mean <= 0.02 or d.explanation.escalated


def cat_samples(strategy: str) -> int:
    return load_catalog().strategy(strategy).samples


async def test_escalation_caps_the_choice_and_says_why(stub: routing_pb2_grpc.RoutingServiceStub) -> None:
    plain = await stub.Route(routing_pb2.RouteRequest(query=query("e0", prompt="x" * 4000), dry_run=True))
    cost = plain.decision.cost_usd.mean
    # A tiny per-query spend cap below the preferred option's cost forces a cheaper, rail-bound choice.
    rails = common_pb2.GuardRails(max_spend_per_query_usd=cost / 2)
    capped = await stub.Route(
        routing_pb2.RouteRequest(query=query("e1", prompt="x" * 4000), guard_rails=rails, dry_run=True)
    )
    assert capped.decision.cost_usd.mean <= cost / 2
    assert capped.decision.explanation.binding_constraint == "guard_rails.max_spend_usd"
    assert capped.decision.explanation.binding_kind == routing_pb2.CONSTRAINT_KIND_GUARD_RAIL


async def test_dry_run_neither_charges_nor_audits(
    stub: routing_pb2_grpc.RoutingServiceStub, db: Database
) -> None:
    reply = await stub.Route(routing_pb2.RouteRequest(query=query("d1", tenant="search"), dry_run=True))
    key = period_key(reply.decision.decided_at.ToDatetime(), "day")
    assert Ledger(db).spent("search", key).spent_usd == 0.0
    await stub.Route(routing_pb2.RouteRequest(query=query("d2", tenant="search")))
    rows = await wait_for_audit(db, 1)
    assert [r.query_id for r in rows] == ["d2"]


async def test_exhausted_budget_is_resource_exhausted(stub: routing_pb2_grpc.RoutingServiceStub) -> None:
    budget = common_pb2.Budget(spend_usd=1e-9, period=common_pb2.BUDGET_PERIOD_HOUR)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Route(
            routing_pb2.RouteRequest(query=query("x1", tenant="batch-analytics"), budget_override=budget)
        )
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


@pytest.mark.parametrize(
    ("request_", "field", "value"),
    [
        (routing_pb2.RouteRequest(query=query("v1", tenant="nobody")), "query.tenant", "nobody"),
        (
            routing_pb2.RouteRequest(
                query=query("v2"), guard_rails=common_pb2.GuardRails(allowed_tiers=["gpt-9"])
            ),
            "guard_rails.allowed_tiers[0]",
            "gpt-9",
        ),
        (
            routing_pb2.RouteRequest(
                query=query("v3"), guard_rails=common_pb2.GuardRails(max_spend_per_query_usd=-1.0)
            ),
            "guard_rails.max_spend_per_query_usd",
            "-1.0",
        ),
        (
            routing_pb2.RouteRequest(query=query("v4"), slo=common_pb2.LatencySlo(p90_e2e_s=float("nan"))),
            "slo.p90_e2e_s",
            "nan",
        ),
        (
            routing_pb2.RouteRequest(query=common_pb2.QueryInput(query_id="v5", prompt_tokens=-3)),
            "query.prompt_tokens",
            "-3",
        ),
        (
            routing_pb2.RouteRequest(
                query=query("v6"), budget_override=common_pb2.Budget(period=common_pb2.BUDGET_PERIOD_TOTAL)
            ),
            "budget_override.period",
            "5",
        ),
    ],
)
async def test_bad_fields_are_invalid_argument_naming_field_and_value(
    stub: routing_pb2_grpc.RoutingServiceStub, request_: routing_pb2.RouteRequest, field: str, value: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Route(request_)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    violations = bad_request(err.value).field_violations
    assert [v.field for v in violations] == [field]
    assert value in violations[0].description


async def test_empty_batch_is_invalid(stub: routing_pb2_grpc.RoutingServiceStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.RouteBatch(routing_pb2.RouteBatchRequest())
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_request(err.value).field_violations[0].field == "queries"


async def test_no_option_left_is_failed_precondition(stub: routing_pb2_grpc.RoutingServiceStub) -> None:
    rails = common_pb2.GuardRails(max_latency_s=1e-6)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Route(routing_pb2.RouteRequest(query=query("n1"), guard_rails=rails))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "max_latency_s" in (err.value.details() or "")


async def test_concurrent_routes_are_each_answered(
    stub: routing_pb2_grpc.RoutingServiceStub, db: Database
) -> None:
    replies = await asyncio.gather(
        *(stub.Route(routing_pb2.RouteRequest(query=query(f"c{i}", tenant="search"))) for i in range(40)),
        stub.Route(routing_pb2.RouteRequest(query=query("bad", tenant="nobody"))),
        return_exceptions=True,
    )
    assert [r.decision.query_id for r in replies[:40]] == [f"c{i}" for i in range(40)]  # type: ignore[union-attr]
    assert isinstance(replies[40], grpc.aio.AioRpcError)
    rows = await wait_for_audit(db, 40)
    assert len(rows) == 40


async def test_audit_is_flushed_on_shutdown(settings: Settings, db: Database) -> None:
    seed_demo(db, load_catalog(), n_queries=100)
    srv, port = await create_server("127.0.0.1:0", settings, db=db)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
        stub = routing_pb2_grpc.RoutingServiceStub(ch)
        reply = await stub.RouteBatch(
            routing_pb2.RouteBatchRequest(queries=[query(f"s{i}") for i in range(50)])
        )
    await stop_server(srv, 0)
    assert len(AuditLog(db).recent(limit=100)) == 50
    # Unused leases went back: the ledger holds exactly what the decisions expect to spend.
    key = period_key(reply.decisions[0].decided_at.ToDatetime(), "day")
    total = sum(d.cost_usd.mean for d in reply.decisions)
    assert Ledger(db).spent("default", key).spent_usd == pytest.approx(total, rel=1e-6)


async def test_a_predictor_swap_rebuilds_the_router_in_the_background_and_keeps_auditing(
    settings: Settings, db: Database
) -> None:
    import pandas as pd

    from models.baseline import PriorForecaster
    from planner.demo import demo_records

    catalog = load_catalog()
    seed_demo(db, catalog, n_queries=100)
    srv, port = await create_server("127.0.0.1:0", settings, db=db)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            stub = routing_pb2_grpc.RoutingServiceStub(ch)
            before = (await stub.Route(routing_pb2.RouteRequest(query=query("w1")))).decision
            state = srv.planner_state  # type: ignore[attr-defined]
            state.predictor = PriorForecaster(catalog.run_name_map()).fit(
                pd.DataFrame(demo_records(catalog, 60, 7))
            )
            state.predictor_version = "swapped"
            # Calls right after the swap are answered at once by the current router while its successor is
            # built in the background; within a few seconds decisions come from the new predictor.
            during = await asyncio.gather(
                *(stub.Route(routing_pb2.RouteRequest(query=query(f"w{i}"))) for i in range(2, 8))
            )
            versions = [r.decision.predictor_version for r in during]
            for i in range(400):
                reply = await stub.Route(routing_pb2.RouteRequest(query=query(f"x{i}")), timeout=10)
                versions.append(reply.decision.predictor_version)
                if versions[-1] == "swapped":
                    break
                await asyncio.sleep(0.05)
    finally:
        await stop_server(srv, 0)
    assert before.predictor_version != "swapped"
    assert set(versions) <= {before.predictor_version, "swapped"} and versions[-1] == "swapped"
    assert versions == sorted(versions, key=lambda v: v == "swapped")  # never back to the old predictor
    assert len(AuditLog(db).recent(limit=1000)) == 1 + len(versions)


async def test_reported_outcomes_move_the_ledger_once(
    stub: routing_pb2_grpc.RoutingServiceStub, db: Database
) -> None:
    d = (await stub.Route(routing_pb2.RouteRequest(query=query("o1")))).decision
    dry = (await stub.Route(routing_pb2.RouteRequest(query=query("o2"), dry_run=True))).decision
    key = period_key(d.decided_at.ToDatetime(), "day")  # the default tenant's budget is per day
    before = Ledger(db).spent("default", key).spent_usd
    actual = d.cost_usd.mean / 2
    outcomes = [
        routing_pb2.Outcome(decision_id=d.decision_id, cost_usd=actual, correct=True),
        routing_pb2.Outcome(decision_id=dry.decision_id, cost_usd=1.0),
    ]
    reply = await stub.ReportOutcomes(routing_pb2.ReportOutcomesRequest(outcomes=outcomes))
    assert reply.applied == 1 and list(reply.unknown_decision_ids) == [
        dry.decision_id
    ]  # dry runs are not charged
    assert reply.spend_delta_usd == pytest.approx(actual - d.cost_usd.mean)
    assert Ledger(db).spent("default", key).spent_usd == pytest.approx(before - d.cost_usd.mean / 2)
    again = await stub.ReportOutcomes(routing_pb2.ReportOutcomesRequest(outcomes=outcomes[:1]))
    assert (again.applied, again.already_reported) == (0, 1)
    row = AuditLog(db).recent(request_id=d.decision_id)[0]
    assert row.actual_cost_usd == pytest.approx(actual) and row.correct is True


async def test_bad_outcomes_are_invalid_argument_naming_the_field(
    stub: routing_pb2_grpc.RoutingServiceStub,
) -> None:
    outcomes = [routing_pb2.Outcome(decision_id="x", cost_usd=-2.0), routing_pb2.Outcome(cost_usd=1.0)]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.ReportOutcomes(routing_pb2.ReportOutcomesRequest(outcomes=outcomes))
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    fields = {v.field for v in bad_request(err.value).field_violations}
    assert fields == {"outcomes[0].cost_usd", "outcomes[1].decision_id"}
