"""A store holding runs only of models the catalog does not know: Route and Plan still answer, over tiers
derived from those runs (recorded costs, size in the name), instead of failing for want of options."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import numpy as np
import pytest

from planner.catalog import load_catalog
from planner.ingest import import_records
from planner.server import create_server, stop_server
from planner.settings import Settings
from planner.store import Database
from planner.v1 import catalog_pb2, catalog_pb2_grpc, common_pb2, routing_pb2, routing_pb2_grpc

MODELS = {"acme-pro": 1.5, "Acme-Small-7B": -0.2, "Acme-Mid-32B": 0.6}


def _records(n: int = 120) -> list[dict[str, object]]:
    rng = np.random.default_rng(3)
    out: list[dict[str, object]] = []
    for q in range(n):
        ease = rng.normal(0, 1)
        for model, ability in MODELS.items():
            tin, tout = int(rng.integers(60, 400)), int(rng.integers(40, 600))
            rec: dict[str, object] = {
                "task": "newtask",
                "query_id": f"n{q}",
                "prompt": f"question {q} about topic {q % 7}",
                "model": model,
                "correct": int(rng.random() < 1 / (1 + np.exp(-(ability + ease)))),
                "input_tokens": tin,
                "output_tokens": tout,
            }
            if model == "acme-pro":  # a closed API model: its recorded bills price it
                rec["cost_usd"] = 2e-6 * tin + 8e-6 * tout
            out.append(rec)
            if q % 3 == 0:  # a strategy under a name the catalog does not use
                hits = rng.random(12) < 1 / (1 + np.exp(-(ability + ease)))
                vote = rec | {"strategy": "self_consistency", "strategy_params": {"n": 12}}
                out.append(
                    vote | {"correct": int(hits.sum() > 6), "output_tokens": 12 * tout, "cost_usd": None}
                )
    return out


@pytest.fixture
async def server(settings: Settings, db: Database) -> AsyncIterator[tuple[grpc.aio.Server, int]]:
    import_records(_records(), db, catalog=load_catalog(), source="unseen")
    srv, port = await create_server("127.0.0.1:0", settings, db=db)
    try:
        yield srv, port
    finally:
        await stop_server(srv, 0)


@pytest.fixture
async def stub(server: tuple[grpc.aio.Server, int]) -> AsyncIterator[routing_pb2_grpc.RoutingServiceStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server[1]}") as ch:
        yield routing_pb2_grpc.RoutingServiceStub(ch)


def _query(qid: str) -> common_pb2.QueryInput:
    return common_pb2.QueryInput(query_id=qid, prompt="a new question", task="newtask")


async def test_route_and_plan_use_derived_tiers(
    stub: routing_pb2_grpc.RoutingServiceStub, server: tuple[grpc.aio.Server, int]
) -> None:
    reply = await stub.Route(routing_pb2.RouteRequest(query=_query("x1")), timeout=60)
    assert reply.decision.option.tier in MODELS
    if reply.decision.option.tier == "acme-pro":
        assert reply.decision.option.target == "api:acme-pro"
    plan = await stub.Plan(routing_pb2.PlanRequest(queries=[_query(f"p{i}") for i in range(20)]), timeout=60)
    assert len(plan.assignments) == 20
    assert {a.option.tier for a in plan.assignments} <= set(MODELS)
    # the best model (acme-pro) at its recorded price is reachable: an unconstrained plan picks it somewhere
    assert any(a.option.tier == "acme-pro" for a in plan.assignments)
    # the foreign strategy name became a derived 12-sample vote, offered beside the catalog's strategies
    router = server[0].planner_state.router  # type: ignore[attr-defined]
    offered = {(o.tier, o.strategy, o.samples) for o in router.options.options}
    assert ("acme-pro", "self_consistency", 12) in offered
    assert ("Acme-Mid-32B", "vote5", 5) in offered


async def test_guard_rails_may_name_derived_tiers(stub: routing_pb2_grpc.RoutingServiceStub) -> None:
    rails = common_pb2.GuardRails(allowed_tiers=["Acme-Small-7B"])
    reply = await stub.Route(routing_pb2.RouteRequest(query=_query("r1"), guard_rails=rails), timeout=60)
    assert reply.decision.option.tier == "Acme-Small-7B"
    plan = await stub.Plan(
        routing_pb2.PlanRequest(queries=[_query(f"g{i}") for i in range(5)], guard_rails=rails), timeout=60
    )
    assert {a.option.tier for a in plan.assignments} == {"Acme-Small-7B"}
    with pytest.raises(grpc.aio.AioRpcError) as err:
        bad = common_pb2.GuardRails(allowed_tiers=["no-such-model"])
        await stub.Route(routing_pb2.RouteRequest(query=_query("r2"), guard_rails=bad), timeout=60)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_get_catalog_shows_what_route_and_plan_offer(server: tuple[grpc.aio.Server, int]) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server[1]}") as ch:
        reply = await catalog_pb2_grpc.CatalogServiceStub(ch).GetCatalog(catalog_pb2.GetCatalogRequest())
    assert not set(MODELS) & set(reply.summary.tiers)  # the stored catalog does not know them
    assert set(MODELS) <= set(reply.effective.tiers)
    assert "self_consistency" in reply.effective.strategies
    assert reply.effective.option_count > 0
    notes = "\n".join(reply.derived_notes)
    assert "'acme-pro': recorded costs" in notes and "'self_consistency'" in notes
