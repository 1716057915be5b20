"""SimulationService.Simulate over a real gRPC server: progress stream then projection, errors, deadline."""

from __future__ import annotations

import math
from pathlib import Path

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from planner.v1 import common_pb2, simulation_pb2, simulation_pb2_grpc

H100 = "H100-SXM5-80GB"
TIER = "llama-3.1-8b"


def _scenario(**over: object) -> simulation_pb2.Scenario:
    sc = simulation_pb2.Scenario(
        name="rpc",
        workload=simulation_pb2.Workload(
            generator=simulation_pb2.WorkloadGenerator(
                arrival=simulation_pb2.ARRIVAL_PROCESS_POISSON,
                rate_per_s=3.0,
                mix=[
                    simulation_pb2.TaskShare(task="chat", weight=3),
                    simulation_pb2.TaskShare(task="hard", weight=1),
                ],
                tenant_weights={"acme": 2.0, "beta": 1.0},
            ),
            seed=5,
        ),
        policy=simulation_pb2.Policy(
            fixed_option=common_pb2.OptionRef(tier=TIER, strategy="single", target=H100)
        ),
        fleet=simulation_pb2.Fleet(targets=[simulation_pb2.TargetCount(target=H100, count=2)]),
        horizon=Duration(seconds=300),
        replicates=2,
        slo_e2e_s=30.0,
    )
    for k, v in over.items():
        field = getattr(sc, k)
        if hasattr(field, "CopyFrom"):
            field.CopyFrom(v)
        else:
            setattr(sc, k, v)
    return sc


async def _collect(
    channel: grpc.aio.Channel, scenario: simulation_pb2.Scenario, timeout: float | None = None
):  # type: ignore[no-untyped-def]
    stub = simulation_pb2_grpc.SimulationServiceStub(channel)
    call = stub.Simulate(simulation_pb2.SimulateRequest(scenario=scenario), timeout=timeout)
    return [m async for m in call]


def _violations(err: grpc.aio.AioRpcError) -> dict[str, str]:
    status = rpc_status.from_call(err)
    assert status is not None
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            br = error_details_pb2.BadRequest()
            detail.Unpack(br)
            return {v.field: v.description for v in br.field_violations}
    raise AssertionError("no BadRequest")


async def test_simulate_streams_progress_then_projection(channel: grpc.aio.Channel) -> None:
    msgs = await _collect(channel, _scenario())
    kinds = [m.WhichOneof("event") for m in msgs]
    assert kinds[-1] == "projection" and set(kinds[:-1]) == {"progress"} and len(kinds) >= 3
    fractions = [m.progress.fraction for m in msgs[:-1]]
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0, abs=0.05)
    p = msgs[-1].projection
    assert p.scenario == "rpc" and p.replicates == 2
    assert p.requests == pytest.approx(900, rel=0.15)
    assert p.spend_usd.lo <= p.spend_usd.estimate <= p.spend_usd.hi and p.spend_usd.level == pytest.approx(
        0.95
    )
    assert set(p.spend_by_tenant_usd) == {"acme", "beta"}
    assert sum(p.spend_by_target_usd.values()) == pytest.approx(p.spend_usd.estimate)
    assert 0 < p.ttft_s.p50.estimate <= p.ttft_s.p99.estimate
    assert 0 < p.e2e_s.p50.estimate <= p.e2e_s.p95.estimate <= p.e2e_s.p99.estimate
    assert 0 < p.tbt_s.p50.estimate < 1
    assert p.slo_attainment.estimate == pytest.approx(1.0)
    assert p.energy_kwh.estimate > 0 and p.co2_kg.estimate > 0 and "us-east" in p.co2_by_region_kg
    assert 0 < p.utilisation[H100] <= 1
    assert math.isnan(p.expected_quality.estimate)
    assert sum(p.spend_per_hour_usd) == pytest.approx(p.spend_usd.estimate, rel=1e-6)
    assert any("gCO2e/kWh" in n for n in p.notes)


async def test_fixed_mix_sends_share_to_lpu_and_best_of_n(channel: grpc.aio.Channel) -> None:
    mix = simulation_pb2.FixedMix(
        routes=[
            simulation_pb2.RouteShare(
                option=common_pb2.OptionRef(tier=TIER, target=H100), weight=0.7, task="chat"
            ),
            simulation_pb2.RouteShare(
                option=common_pb2.OptionRef(tier=TIER, target="groq-lpu"), weight=0.3, task="chat"
            ),
            simulation_pb2.RouteShare(
                option=common_pb2.OptionRef(tier=TIER, strategy="bon8", target=H100), task="hard"
            ),
        ]
    )
    base = (await _collect(channel, _scenario(replicates=1)))[-1].projection
    what_if = (await _collect(channel, _scenario(replicates=1, policy=simulation_pb2.Policy(fixed_mix=mix))))[
        -1
    ].projection
    assert what_if.spend_by_target_usd["groq-lpu"] > 0
    assert what_if.output_tokens_per_s.estimate > 2 * base.output_tokens_per_s.estimate


async def test_trace_by_name(channel: grpc.aio.Channel, shared_data: Path) -> None:
    sc = _scenario(replicates=1, horizon=Duration(seconds=0))
    sc.workload.trace_name = "azure_llm_2023_conv"
    sc.fleet.targets[0].count = 4
    p = (await _collect(channel, sc))[-1].projection
    assert p.requests == 19_366
    assert p.throughput_rps.estimate == pytest.approx(5.5, rel=0.05)


@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"workload": simulation_pb2.Workload(generator=simulation_pb2.WorkloadGenerator(rate_per_s=-1))},
         "scenario.workload.generator.rate_per_s"),
        ({"workload": simulation_pb2.Workload(trace_name="../etc/passwd")}, "scenario.workload.trace_name"),
        ({"replicates": 500}, "scenario.replicates"),
        ({"policy": simulation_pb2.Policy(fixed_option=common_pb2.OptionRef(tier="nope", target=H100))},
         "routes[0].tier"),
    ],
)  # fmt: skip
async def test_bad_scenarios_are_invalid_argument(channel: grpc.aio.Channel, over: dict, field: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _collect(channel, _scenario(**over))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert any(field in f for f in _violations(err.value)), _violations(err.value)


async def test_planner_policy_without_predictor_is_failed_precondition(channel: grpc.aio.Channel) -> None:
    policy = simulation_pb2.Policy(planner=simulation_pb2.PlannerPolicy())
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _collect(channel, _scenario(policy=policy))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_deadline_stops_a_long_simulation(channel: grpc.aio.Channel) -> None:
    sc = _scenario(horizon=Duration(seconds=200_000), replicates=1)
    sc.fleet.targets[0].count = 8
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _collect(channel, sc, timeout=1.0)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
