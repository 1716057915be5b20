"""The planner gRPC server end to end: health, reflection, catalog, runs, errors, deadlines, shutdown."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status

from planner.catalog import load_catalog
from planner.server import create_server, serve, stop_server
from planner.settings import Settings
from planner.store import Database
from planner.v1 import catalog_pb2, catalog_pb2_grpc, runs_pb2, runs_pb2_grpc

SERVICES = [
    "planner.v1.CatalogService",
    "planner.v1.RunService",
    "planner.v1.PredictorService",
    "planner.v1.RoutingService",
    "planner.v1.SimulationService",
]

SMALL_CATALOG = """
name = "small"
[[tiers]]
name = "small-8b"
total_params_b = 8
active_params_b = 8
run_names = ["small-model-v1"]
[[strategies]]
name = "single"
[[targets]]
name = "h100"
family = "gpu"
price_model = "device_hour"
memory_gb = 80
usd_per_hour = 3.0
"""


def bad_request(err: grpc.aio.AioRpcError) -> error_details_pb2.BadRequest:
    status = rpc_status.from_call(err)
    assert status is not None, "no google.rpc.Status in the trailers"
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            out = error_details_pb2.BadRequest()
            detail.Unpack(out)
            return out
    raise AssertionError(f"no BadRequest detail in {status}")


def run(query_id: str, model: str = "small-model-v1", **fields: object) -> runs_pb2.RunRecord:
    return runs_pb2.RunRecord(query_id=query_id, model=model, task="arith", **fields)  # type: ignore[arg-type]


async def test_health_reports_every_service_serving(channel: grpc.aio.Channel) -> None:
    stub = health_pb2_grpc.HealthStub(channel)
    for name in ["", *SERVICES]:
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=name))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING, name


async def test_reflection_lists_services_and_serves_their_files(channel: grpc.aio.Channel) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    requests = [
        reflection_pb2.ServerReflectionRequest(list_services=""),
        reflection_pb2.ServerReflectionRequest(file_containing_symbol="planner.v1.RoutingService"),
    ]
    replies = [r async for r in stub.ServerReflectionInfo(iter(requests))]
    listed = {s.name for s in replies[0].list_services_response.service}
    assert set(SERVICES) | {"grpc.health.v1.Health"} <= listed
    assert replies[1].file_descriptor_response.file_descriptor_proto


async def test_get_catalog_returns_the_default_catalog(channel: grpc.aio.Channel) -> None:
    reply = await catalog_pb2_grpc.CatalogServiceStub(channel).GetCatalog(catalog_pb2.GetCatalogRequest())
    default = load_catalog()
    assert reply.version == default.content_hash()
    assert list(reply.summary.tiers) == [t.name for t in default.tiers]
    assert reply.summary.option_count > 0
    assert reply.toml and len(reply.catalog["tiers"]) == len(default.tiers)
    assert reply.effective == reply.summary and not reply.derived_notes  # nothing derived here


async def test_put_catalog_bad_toml_is_invalid_argument_with_field_violations(
    channel: grpc.aio.Channel,
) -> None:
    stub = catalog_pb2_grpc.CatalogServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.PutCatalog(catalog_pb2.PutCatalogRequest(toml="[[tiers]\nname = "))
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert bad_request(info.value).field_violations[0].field == "(file)"

    inconsistent = SMALL_CATALOG.replace("active_params_b = 8", "active_params_b = 80")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.PutCatalog(catalog_pb2.PutCatalogRequest(toml=inconsistent))
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    fields = [v.field for v in bad_request(info.value).field_violations]
    assert any(f.startswith("tiers[0]") for f in fields), fields


async def test_put_catalog_stores_and_activates_a_version(channel: grpc.aio.Channel) -> None:
    stub = catalog_pb2_grpc.CatalogServiceStub(channel)
    checked = await stub.PutCatalog(catalog_pb2.PutCatalogRequest(toml=SMALL_CATALOG, validate_only=True))
    assert not checked.stored and not checked.active
    put = await stub.PutCatalog(catalog_pb2.PutCatalogRequest(toml=SMALL_CATALOG))
    assert put.stored and put.active and put.version == checked.version
    again = await stub.PutCatalog(catalog_pb2.PutCatalogRequest(toml=SMALL_CATALOG))
    assert not again.stored
    active = await stub.GetCatalog(catalog_pb2.GetCatalogRequest())
    assert active.version == put.version and list(active.summary.tiers) == ["small-8b"]
    versions = await stub.ListCatalogVersions(catalog_pb2.ListCatalogVersionsRequest())
    assert [v.version for v in versions.versions if v.active] == [put.version]
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.GetCatalog(catalog_pb2.GetCatalogRequest(version="no-such-version"))
    assert info.value.code() is grpc.StatusCode.NOT_FOUND


async def test_record_runs_rejects_a_bad_record_and_writes_nothing(channel: grpc.aio.Channel) -> None:
    stub = runs_pb2_grpc.RunServiceStub(channel)
    good = [run("q1", correct=True), run("q2", correct=False)]
    bad = [run("q3", score=1.5)]
    batches = [runs_pb2.RecordRunsRequest(records=good), runs_pb2.RecordRunsRequest(records=bad)]
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.RecordRuns(iter(batches))
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    violation = bad_request(info.value).field_violations[0]
    assert violation.field == "records[2].score"
    assert "[0, 1]" in violation.description
    stats = await stub.GetRunStats(runs_pb2.GetRunStatsRequest())
    assert stats.total_runs == 0

    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.RecordRuns(iter([runs_pb2.RecordRunsRequest(records=[run("q9", model="")])]))
    assert bad_request(info.value).field_violations[0].field == "records[0].model"


async def test_record_runs_then_stats_and_query_reflect_them(channel: grpc.aio.Channel) -> None:
    stub = runs_pb2_grpc.RunServiceStub(channel)
    records = [run(f"q{i}", correct=i % 4 != 0, output_tokens=100 + i, cost_usd=0.01) for i in range(8)]
    records.append(run("q0", model="other-model", score=0.5, strategy="majority_vote"))
    batches = [runs_pb2.RecordRunsRequest(records=records[:5], source="test"),
               runs_pb2.RecordRunsRequest(records=records[5:])]  # fmt: skip
    reply = await stub.RecordRuns(iter(batches))
    assert (reply.inserted, reply.duplicates) == (9, 0)
    again = await stub.RecordRuns(iter(batches))
    assert (again.inserted, again.duplicates) == (0, 9)

    stats = await stub.GetRunStats(runs_pb2.GetRunStatsRequest(task="arith"))
    assert stats.total_runs == 9 and stats.total_queries == 8 and list(stats.tasks) == ["arith"]
    by_key = {(t.tier, t.strategy): t for t in stats.tiers}
    mapped = by_key[("small-model-v1", "single")]  # default catalog does not know this model: tier = model
    assert mapped.runs == 8 and mapped.accuracy == pytest.approx(6 / 8)
    assert mapped.mean_output_tokens == pytest.approx(103.5)
    assert by_key[("other-model", "majority_vote")].accuracy == pytest.approx(0.5)

    first = await stub.QueryRuns(runs_pb2.QueryRunsRequest(page_size=5))
    assert len(first.runs) == 5 and first.next_page_token
    rest = await stub.QueryRuns(runs_pb2.QueryRunsRequest(page_size=5, page_token=first.next_page_token))
    assert len(rest.runs) == 4 and not rest.next_page_token
    assert first.runs[1].correct is True and first.runs[1].output_tokens == 101
    only = await stub.QueryRuns(runs_pb2.QueryRunsRequest(filter=runs_pb2.RunFilter(models=["other-model"])))
    assert [r.query_id for r in only.runs] == ["q0"] and only.runs[0].score == 0.5
    assert not only.runs[0].HasField("correct")

    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.QueryRuns(runs_pb2.QueryRunsRequest(page_token="not-a-token"))
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert bad_request(info.value).field_violations[0].field == "page_token"


async def test_unknown_method_is_unimplemented(channel: grpc.aio.Channel) -> None:
    call = channel.unary_unary("/planner.v1.RoutingService/NoSuchMethod")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call(b"")
    assert info.value.code() is grpc.StatusCode.UNIMPLEMENTED


async def test_tiny_deadline_is_deadline_exceeded(channel: grpc.aio.Channel) -> None:
    stub = runs_pb2_grpc.RunServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.GetRunStats(runs_pb2.GetRunStatsRequest(), timeout=1e-6)
    assert info.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED


async def test_in_flight_stream_finishes_during_graceful_shutdown(settings: Settings, db: Database) -> None:
    server, port = await create_server("127.0.0.1:0", settings, db=db)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
        call = runs_pb2_grpc.RunServiceStub(ch).RecordRuns()
        await call.write(runs_pb2.RecordRunsRequest(records=[run("q1", correct=True)]))
        await call.initial_metadata()  # the handler is running, so the shutdown must wait for it
        stopping = asyncio.create_task(stop_server(server, 5.0))
        await asyncio.sleep(0.05)
        await call.write(runs_pb2.RecordRunsRequest(records=[run("q2", correct=False)]))
        await call.done_writing()
        reply = await call
        await stopping
        assert reply.inserted == 2
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await runs_pb2_grpc.RunServiceStub(ch).GetRunStats(runs_pb2.GetRunStatsRequest(), timeout=2)
        assert info.value.code() is grpc.StatusCode.UNAVAILABLE


async def test_serve_stops_gracefully_on_sigterm(settings: Settings, db: Database) -> None:
    ports: list[int] = []

    def ready(_server: grpc.aio.Server, port: int) -> None:
        ports.append(port)
        asyncio.get_running_loop().call_later(0.1, os.kill, os.getpid(), signal.SIGTERM)

    await asyncio.wait_for(serve(settings, db=db, on_ready=ready), timeout=20)
    assert ports and ports[0] > 0


async def test_metrics_count_calls_by_method_and_code(
    server: tuple[grpc.aio.Server, int], channel: grpc.aio.Channel
) -> None:
    stub = catalog_pb2_grpc.CatalogServiceStub(channel)
    await stub.GetCatalog(catalog_pb2.GetCatalogRequest())
    with pytest.raises(grpc.aio.AioRpcError):
        await stub.PutCatalog(catalog_pb2.PutCatalogRequest(toml="not toml ["))
    registry = server[0].planner_metrics.registry  # type: ignore[attr-defined]

    def calls(method: str, code: str) -> float | None:
        labels = {"method": f"/planner.v1.CatalogService/{method}", "code": code}
        return registry.get_sample_value("planner_rpc_calls_total", labels)

    assert calls("GetCatalog", "OK") == 1
    assert calls("PutCatalog", "INVALID_ARGUMENT") == 1


async def test_metrics_endpoint_and_message_size_limit(tmp_path: Path, db: Database) -> None:
    import socket
    import urllib.request

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        metrics_port = sock.getsockname()[1]
    settings = Settings(
        database_url=db.url, address="127.0.0.1:0", metrics_port=metrics_port, max_message_mb=1, grace_s=0
    )
    server, port = await create_server(None, settings, db=db)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            stub = catalog_pb2_grpc.CatalogServiceStub(ch)
            await stub.GetCatalog(catalog_pb2.GetCatalogRequest(), timeout=10)
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.PutCatalog(catalog_pb2.PutCatalogRequest(toml="#" * (2 * 1024 * 1024)), timeout=10)
            assert info.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        url = f"http://127.0.0.1:{metrics_port}/metrics"
        body = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read().decode())
        assert 'planner_rpc_calls_total{code="OK",method="/planner.v1.CatalogService/GetCatalog"} 1.0' in body
    finally:
        await stop_server(server, 0)


async def test_corrupt_request_bytes_are_invalid_argument(channel: grpc.aio.Channel) -> None:
    corrupt = b"\xff\xff\xff"
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await channel.unary_unary("/planner.v1.CatalogService/GetCatalog")(corrupt)
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert bad_request(info.value).field_violations[0].field == "(request)"
    record_runs = channel.stream_unary("/planner.v1.RunService/RecordRuns")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await record_runs(iter([runs_pb2.RecordRunsRequest().SerializeToString(), corrupt]))
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
