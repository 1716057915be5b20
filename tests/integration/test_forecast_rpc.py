"""SimulationService.Forecast over a real gRPC server (port 0, temporary SQLite store)."""

from __future__ import annotations

import itertools

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from planner.catalog import load_catalog
from planner.demo import seed_demo
from planner.store import Database
from planner.v1 import simulation_pb2, simulation_pb2_grpc


def field_violations(err: grpc.aio.AioRpcError) -> set[str]:
    status = rpc_status.from_call(err)
    assert status is not None
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            out = error_details_pb2.BadRequest()
            detail.Unpack(out)
            return {v.field for v in out.field_violations}
    raise AssertionError(f"no BadRequest in {status}")


@pytest.fixture
def stub(channel: grpc.aio.Channel) -> simulation_pb2_grpc.SimulationServiceStub:
    return simulation_pb2_grpc.SimulationServiceStub(channel)


def check_points(resp: simulation_pb2.ForecastResponse, horizon: int) -> None:
    assert len(resp.points) == horizon
    days = [p.day.ToDatetime() for p in resp.points]
    assert all((b - a).days == 1 for a, b in itertools.pairwise(days))
    assert all(0 <= p.lo <= p.mean <= p.hi for p in resp.points)


async def test_forecast_of_the_stored_history(
    db: Database, stub: simulation_pb2_grpc.SimulationServiceStub
) -> None:
    seed_demo(db, load_catalog(), n_queries=200)
    resp = await stub.Forecast(simulation_pb2.ForecastRequest(horizon_days=7), timeout=60)
    check_points(resp, 7)
    assert resp.source == "runs" and resp.history_days == 30
    assert resp.interval_level == pytest.approx(0.9)
    assert resp.model in {"ets", "holt", "seasonal_naive", "naive"}
    assert resp.backtest.folds >= 1 and resp.backtest.horizon_days == 7
    assert 0 <= resp.backtest.coverage <= 1 and resp.backtest.baseline_mae > 0
    tenant = await stub.Forecast(
        simulation_pb2.ForecastRequest(horizon_days=3, tenant="search", interval_level=0.8), timeout=60
    )
    check_points(tenant, 3)
    assert sum(p.mean for p in tenant.points) < sum(p.mean for p in resp.points[:3])


async def test_forecast_of_a_synthetic_history(stub: simulation_pb2_grpc.SimulationServiceStub) -> None:
    req = simulation_pb2.ForecastRequest(horizon_days=14, synthetic=True, seed=1, backtest_folds=4)
    resp = await stub.Forecast(req, timeout=60)
    check_points(resp, 14)
    assert resp.model == "ets" and resp.history_days == 365
    assert resp.backtest.folds == 4 and 0 < resp.backtest.mape < 0.5 and resp.backtest.baseline_mape > 0


async def test_bad_requests_name_every_field(stub: simulation_pb2_grpc.SimulationServiceStub) -> None:
    req = simulation_pb2.ForecastRequest(horizon_days=0, interval_level=1.5, model="prophet")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Forecast(req, timeout=30)
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(info.value) == {"horizon_days", "interval_level", "model"}


async def test_an_empty_store_is_a_failed_precondition(
    stub: simulation_pb2_grpc.SimulationServiceStub,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Forecast(simulation_pb2.ForecastRequest(horizon_days=7), timeout=30)
    assert info.value.code() is grpc.StatusCode.FAILED_PRECONDITION
