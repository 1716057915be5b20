"""The planner gRPC server over the production store path: PostgreSQL (needs PLANNER_TEST_POSTGRES_URL)."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

import grpc
import pytest

from planner.server import create_server, stop_server
from planner.settings import Settings
from planner.store import Database
from planner.v1 import catalog_pb2, catalog_pb2_grpc, runs_pb2, runs_pb2_grpc

pytestmark = pytest.mark.postgres
PG_URL = os.environ.get("PLANNER_TEST_POSTGRES_URL", "")


@pytest.fixture
async def pg_channel() -> AsyncIterator[grpc.aio.Channel]:
    if not PG_URL:
        pytest.skip("PLANNER_TEST_POSTGRES_URL is not set")
    db = Database(PG_URL)
    server, port = await create_server("127.0.0.1:0", Settings(database_url=PG_URL), db=db)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            yield ch
    finally:
        await stop_server(server, 0)
        db.dispose()


async def test_record_runs_and_stats_on_postgres(pg_channel: grpc.aio.Channel) -> None:
    task = f"pg-{uuid.uuid4().hex[:8]}"  # the database is shared between tests: scope by a fresh task
    stub = runs_pb2_grpc.RunServiceStub(pg_channel)
    records = [
        runs_pb2.RunRecord(query_id=f"q{i}", model="m", task=task, correct=i % 2 == 0, output_tokens=10 * i)
        for i in range(6)
    ]
    bad = runs_pb2.RunRecord(query_id="qx", model="m", task=task, cost_usd=-1.0, correct=True)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.RecordRuns(iter([runs_pb2.RecordRunsRequest(records=[*records, bad])]))
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert (await stub.GetRunStats(runs_pb2.GetRunStatsRequest(task=task))).total_runs == 0

    reply = await stub.RecordRuns(iter([runs_pb2.RecordRunsRequest(records=records)]))
    assert (reply.inserted, reply.duplicates) == (6, 0)
    again = await stub.RecordRuns(iter([runs_pb2.RecordRunsRequest(records=records)]))
    assert (again.inserted, again.duplicates) == (0, 6)
    stats = await stub.GetRunStats(runs_pb2.GetRunStatsRequest(task=task))
    assert stats.total_runs == 6 and stats.total_queries == 6
    assert stats.tiers[0].accuracy == pytest.approx(0.5)
    page = await stub.QueryRuns(runs_pb2.QueryRunsRequest(filter=runs_pb2.RunFilter(task=task), page_size=4))
    assert len(page.runs) == 4 and page.next_page_token


async def test_record_runs_keeps_runs_differing_only_in_strategy_params(pg_channel: grpc.aio.Channel) -> None:
    """majority_vote n=5 and n=16 of one query over `RecordRuns` are two runs; sent again they add none."""
    task = f"pg-{uuid.uuid4().hex[:8]}"
    stub = runs_pb2_grpc.RunServiceStub(pg_channel)
    records = []
    for n in (5, 16):
        msg = runs_pb2.RunRecord(query_id="q1", model="m", task=task, strategy="majority_vote", correct=True)
        msg.strategy_params.update({"n": n})
        records.append(msg)
    reply = await stub.RecordRuns(iter([runs_pb2.RecordRunsRequest(records=records)]))
    assert (reply.inserted, reply.duplicates) == (2, 0)
    again = await stub.RecordRuns(iter([runs_pb2.RecordRunsRequest(records=records[::-1])]))
    assert (again.inserted, again.duplicates) == (0, 2)
    page = await stub.QueryRuns(runs_pb2.QueryRunsRequest(filter=runs_pb2.RunFilter(task=task)))
    assert sorted(r.strategy_params["n"] for r in page.runs) == [5, 16]


async def test_catalog_versions_on_postgres(pg_channel: grpc.aio.Channel) -> None:
    stub = catalog_pb2_grpc.CatalogServiceStub(pg_channel)
    current = await stub.GetCatalog(catalog_pb2.GetCatalogRequest())
    put = await stub.PutCatalog(catalog_pb2.PutCatalogRequest(toml=current.toml))
    assert put.active and put.version == current.version
    versions = await stub.ListCatalogVersions(catalog_pb2.ListCatalogVersionsRequest())
    assert [v.version for v in versions.versions if v.active] == [current.version]
