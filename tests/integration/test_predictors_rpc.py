"""PredictorService on a real grpc.aio server over a seeded SQLite store: start-up predictor, TrainPredictor
progress stream (and cancellation), list / promote / roll back with hot swap, evaluation, error statuses, and
calls that keep succeeding while the active predictor is swapped."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from typer.testing import CliRunner

from models.api import Query
from planner.catalog import load_catalog
from planner.cli import app
from planner.demo import seed_demo
from planner.predictors import TrainConfig, promote_version, train_predictor
from planner.predictors.active import sync_with_registry
from planner.server import create_server, stop_server
from planner.settings import Settings
from planner.store import Database
from planner.v1 import common_pb2, routing_pb2, routing_pb2_grpc
from planner.v1 import predictors_pb2 as pb
from planner.v1 import predictors_pb2_grpc as pb_grpc


@pytest.fixture
async def seeded_server(settings: Settings, db: Database) -> AsyncIterator[tuple[grpc.aio.Server, int]]:
    seed_demo(db, load_catalog(), n_queries=80, seed=5)
    srv, port = await create_server("127.0.0.1:0", settings, db=db)
    yield srv, port
    await stop_server(srv, 0)


@pytest.fixture
async def stub(seeded_server: tuple[grpc.aio.Server, int]) -> AsyncIterator[pb_grpc.PredictorServiceStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{seeded_server[1]}") as channel:
        yield pb_grpc.PredictorServiceStub(channel)


def _state(server: tuple[grpc.aio.Server, int]) -> object:
    return server[0].planner_state  # type: ignore[attr-defined]


async def _train(stub: pb_grpc.PredictorServiceStub, **kw: object) -> list[pb.TrainPredictorResponse]:
    return [m async for m in stub.TrainPredictor(pb.TrainPredictorRequest(**kw))]  # type: ignore[arg-type]


def _violations(err: grpc.aio.AioRpcError) -> list[str]:
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert status is not None
    fields = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            fields += [v.field for v in bad.field_violations]
    return fields


async def test_server_starts_with_a_bootstrapped_active_prior(
    seeded_server: tuple[grpc.aio.Server, int], stub: pb_grpc.PredictorServiceStub
) -> None:
    state = _state(seeded_server)
    listed = await stub.ListPredictors(pb.ListPredictorsRequest())
    assert listed.active_version and listed.active_version == state.predictor_version  # type: ignore[attr-defined]
    (boot,) = listed.predictors
    assert boot.kind == "prior" and boot.active and boot.train_runs > 0 and boot.metrics.n > 0
    assert state.predictor.tiers == tuple(boot.tiers)  # type: ignore[attr-defined]


async def test_train_streams_progress_and_ends_with_the_stored_version(
    seeded_server: tuple[grpc.aio.Server, int], stub: pb_grpc.PredictorServiceStub
) -> None:
    messages = await _train(stub, kind="prior", seed=3, task="math")
    stages = [m.stage for m in messages]
    assert stages[0] == pb.TRAIN_STAGE_LOADING and stages[-1] == pb.TRAIN_STAGE_DONE
    assert stages == sorted(stages) and pb.TRAIN_STAGE_EVALUATING in stages
    assert [m.fraction for m in messages] == sorted(m.fraction for m in messages)
    done = messages[-1].predictor
    assert done.version and done.task == "math" and not done.active and done.metrics.per_tier
    assert not messages[-1].promoted
    again = await _train(stub, kind="prior", seed=3, task="math")
    assert again[-1].predictor.version == done.version and "already" in again[-1].message
    listed = await stub.ListPredictors(pb.ListPredictorsRequest(task="math"))
    assert [p.version for p in listed.predictors] == [done.version]


async def test_promote_and_rollback_hot_swap_the_active_predictor(
    seeded_server: tuple[grpc.aio.Server, int], stub: pb_grpc.PredictorServiceStub
) -> None:
    state = _state(seeded_server)
    boot = state.predictor_version  # type: ignore[attr-defined]
    a = (await _train(stub, kind="prior", seed=1))[-1].predictor.version
    b = (await _train(stub, kind="prior", seed=2))[-1].predictor.version
    promoted = await stub.PromotePredictor(pb.PromotePredictorRequest(version=a))
    assert promoted.predictor.active and promoted.previous_version == boot
    assert state.predictor_version == a  # type: ignore[attr-defined]
    await stub.PromotePredictor(pb.PromotePredictorRequest(version=b))
    assert state.predictor_version == b  # type: ignore[attr-defined]
    rolled = await stub.RollbackPredictor(pb.RollbackPredictorRequest())
    assert (rolled.predictor.version, rolled.rolled_back_version) == (a, b)
    assert state.predictor_version == a  # type: ignore[attr-defined]
    evaluated = await stub.EvaluatePredictor(pb.EvaluatePredictorRequest())
    assert evaluated.version == a and evaluated.metrics.n > 0
    assert (await stub.ListPredictors(pb.ListPredictorsRequest())).active_version == a


async def test_bad_requests_map_to_statuses_with_field_details(stub: pb_grpc.PredictorServiceStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as kind:
        await _train(stub, kind="xgboost-9000")
    assert kind.value.code() == grpc.StatusCode.INVALID_ARGUMENT and _violations(kind.value) == ["kind"]
    with pytest.raises(grpc.aio.AioRpcError) as task:
        await _train(stub, kind="prior", task="no-such-task")
    assert task.value.code() == grpc.StatusCode.INVALID_ARGUMENT and _violations(task.value) == ["task"]
    with pytest.raises(grpc.aio.AioRpcError) as params:
        await _train(stub, kind="prior", params={"depth": "3"})
    assert _violations(params.value) == ["params.depth"]
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await stub.PromotePredictor(pb.PromotePredictorRequest(version="0123456789abcdef"))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as empty:
        await stub.PromotePredictor(pb.PromotePredictorRequest(version=""))
    assert empty.value.code() == grpc.StatusCode.INVALID_ARGUMENT and _violations(empty.value) == ["version"]
    with pytest.raises(grpc.aio.AioRpcError) as nothing:
        await stub.RollbackPredictor(pb.RollbackPredictorRequest())
    assert nothing.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_cancelled_training_stores_nothing(
    seeded_server: tuple[grpc.aio.Server, int], stub: pb_grpc.PredictorServiceStub
) -> None:
    call = stub.TrainPredictor(pb.TrainPredictorRequest(kind="difficulty"))
    first = await call.read()
    assert first.stage == pb.TRAIN_STAGE_LOADING
    call.cancel()
    # The next job queues behind the cancelled one until its worker thread has stopped.
    after = await _train(stub, kind="prior", seed=11)
    listed = await stub.ListPredictors(pb.ListPredictorsRequest())
    assert {p.kind for p in listed.predictors} == {"prior"}
    assert after[-1].predictor.version in {p.version for p in listed.predictors}


async def _route_works(channel: grpc.aio.Channel) -> bool:
    """Whether RoutingService.Route is built (it is owned by another area and may still be UNIMPLEMENTED)."""
    try:
        await routing_pb2_grpc.RoutingServiceStub(channel).Route(_route_request(0))
    except grpc.aio.AioRpcError:
        return False
    return True


def _route_request(i: int) -> routing_pb2.RouteRequest:
    query = common_pb2.QueryInput(query_id=f"q{i}", prompt=f"What is {i} + {i}?", task="math")
    return routing_pb2.RouteRequest(query=query, dry_run=True)


async def test_calls_keep_succeeding_while_the_predictor_is_swapped(
    seeded_server: tuple[grpc.aio.Server, int],
) -> None:
    state = _state(seeded_server)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{seeded_server[1]}") as channel:
        stub = pb_grpc.PredictorServiceStub(channel)
        versions = [state.predictor_version]  # type: ignore[attr-defined]
        versions += [(await _train(stub, kind="prior", seed=s))[-1].predictor.version for s in (21, 22)]
        route = await _route_works(channel)
        stop, errors, forecasts = threading.Event(), [], [0]
        queries = [Query(query_id=f"q{i}", prompt="How many apples?", task="math") for i in range(8)]

        def forecast_loop() -> None:  # an in-process reader, as routing uses the active predictor
            while not stop.is_set():
                try:
                    predictor = state.predictor  # type: ignore[attr-defined]
                    assert predictor.forecast(queries).p_correct.shape[0] == len(queries)
                    forecasts[0] += 1
                except Exception as exc:  # pragma: no cover - reported below
                    errors.append(exc)

        reader = threading.Thread(target=forecast_loop)
        reader.start()

        async def clients() -> int:
            done = 0
            for i in range(30):
                await stub.ListPredictors(pb.ListPredictorsRequest())
                if route:
                    await routing_pb2_grpc.RoutingServiceStub(channel).Route(_route_request(i))
                done += 1
            return done

        async def swaps() -> None:
            for i in range(6):
                await stub.PromotePredictor(pb.PromotePredictorRequest(version=versions[i % 3]))
            await stub.RollbackPredictor(pb.RollbackPredictorRequest())

        try:
            results = await asyncio.gather(clients(), clients(), clients(), swaps())
        finally:
            stop.set()
            reader.join()
    assert results[:3] == [30, 30, 30]
    assert errors == [] and forecasts[0] > 0
    assert state.predictor_version == versions[1]  # type: ignore[attr-defined]  # promoted 2nd-last, rolled back to


async def test_cli_train_promote_rollback_through_a_running_server(
    seeded_server: tuple[grpc.aio.Server, int], stub: pb_grpc.PredictorServiceStub
) -> None:
    state = _state(seeded_server)
    boot = state.predictor_version  # type: ignore[attr-defined]
    new = (await _train(stub, kind="prior", seed=31))[-1].predictor.version
    runner, address = CliRunner(), f"127.0.0.1:{seeded_server[1]}"

    async def cli(*args: str) -> tuple[int, dict[str, object]]:  # a thread: the server shares this loop
        out = await asyncio.to_thread(runner.invoke, app, [*args, "--server", address, "--json"])
        return out.exit_code, json.loads(out.stdout.splitlines()[-1])  # (the in-process server logs too)

    code, trained = await cli("train", "--kind", "prior", "--seed", "32", "--task", "math")
    assert code == 0 and trained["task"] == "math" and trained["reused"] is False
    assert isinstance(trained["train_runs"], int) and trained["metrics"]["n"] > 0  # type: ignore[index]
    code, again = await cli("train", "--kind", "prior", "--seed", "32", "--task", "math")
    assert again["version"] == trained["version"] and again["reused"] is True
    code, promoted = await cli("predictors", "promote", new)
    assert code == 0 and promoted["previous_version"] == boot
    assert state.predictor_version == new  # type: ignore[attr-defined]
    code, rolled = await cli("predictors", "rollback")
    assert code == 0 and rolled["rolled_back_version"] == new
    assert state.predictor_version == boot  # type: ignore[attr-defined]
    code, error = await cli("predictors", "promote", "0123456789abcdef")
    assert code == 2 and error["error"] == "NOT_FOUND"


async def test_a_promotion_made_elsewhere_reaches_the_server_through_the_registry_watcher(
    settings: Settings, db: Database
) -> None:
    seed_demo(db, load_catalog(), n_queries=40, seed=6)
    fast = settings.model_copy(update={"predictor_poll_s": 0.05})
    server, _ = await create_server("127.0.0.1:0", fast, db=db)
    try:
        state = server.planner_state  # type: ignore[attr-defined]
        names = state.catalog.run_name_map()
        other = train_predictor(db, TrainConfig.create(kind="prior", seed=41), names).version.version
        promote_version(db, other)  # as `planner predictors promote` (no --server) or another replica would
        for _ in range(600):  # the watcher polls every 0.05 s; give it up to 30 s on a loaded machine
            if state.predictor_version == other:
                break
            await asyncio.sleep(0.05)
        assert state.predictor_version == other
        assert await sync_with_registry(state, asyncio.Lock()) is False  # already in sync
    finally:
        await stop_server(server, 0)
