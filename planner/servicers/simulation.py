"""SimulationService: `Simulate` (server-streaming progress, then the projection) and `Forecast`.

`Simulate` validates the scenario (`simulation_messages.scenario_from_request`), resolves a planner policy
against the active predictor and catalog (`planner.sim_policy.PlannerSimPolicy`) or keeps the fixed one,
and runs `simulator.run.simulate` on the worker pool. Progress messages flow back through a queue while it
runs; when the call is cancelled or its deadline passes, a flag stops the simulation at the next chunk.
`Forecast` is delegated to `planner.servicers.forecasting.handle_forecast` (imported lazily).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import threading
from collections.abc import AsyncIterator
from typing import Any, TypeAlias

import grpc

from planner.errors import FailedPreconditionError, PlannerError
from planner.servicers.simulation_messages import (
    budget_per_request,
    projection_message,
    scenario_from_request,
)
from planner.servicers.state import ServiceState
from planner.v1 import simulation_pb2, simulation_pb2_grpc
from simulator.costmodel import CostModel
from simulator.policy import Policy
from simulator.result import SimulationResult
from simulator.run import simulate
from simulator.scenario import Scenario

SERVICE = simulation_pb2.DESCRIPTOR.services_by_name["SimulationService"].full_name
Ctx: TypeAlias = grpc.aio.ServicerContext


class SimulationCancelled(PlannerError):
    """Raised inside the worker when the call went away (the simulation stops at the next chunk)."""


def _planner_policy(state: ServiceState, planner: simulation_pb2.PlannerPolicy, scenario: Scenario) -> Policy:
    from planner.sim_policy import PlannerSimPolicy

    if state.predictor is None:
        raise FailedPreconditionError("the planner policy needs an active predictor: train or promote one")
    if planner.predictor_version and planner.predictor_version != state.predictor_version:
        raise FailedPreconditionError(
            f"predictor {planner.predictor_version!r} is not the active one ({state.predictor_version!r})"
        )
    chunk = next(iter(scenario.build_workload().chunks(scenario.seed)), None)
    rate = 0.0
    if chunk is not None and len(chunk) > 1:
        rate = (len(chunk) - 1) / max(float(chunk.arrival_s[-1] - chunk.arrival_s[0]), 1e-9)
    slo = planner.slo.p90_e2e_s or planner.slo.p99_e2e_s
    return PlannerSimPolicy(
        state.catalog,
        CostModel(state.catalog),
        state.predictor,
        [f.target for f in scenario.fleet],
        budget_usd_per_request=budget_per_request(planner, rate),
        latency_slo_s=slo,
    )


def _with_planner_slo(scenario: Scenario, planner: simulation_pb2.PlannerPolicy) -> Scenario:
    slo = scenario.slo
    update = {}
    if slo.e2e_s == 0 and (planner.slo.p99_e2e_s or planner.slo.p90_e2e_s):
        update["e2e_s"] = planner.slo.p99_e2e_s or planner.slo.p90_e2e_s
    if slo.ttft_s == 0 and planner.slo.ttft_p90_s:
        update["ttft_s"] = planner.slo.ttft_p90_s
    return scenario.model_copy(update={"slo": slo.model_copy(update=update)}) if update else scenario


def run_simulation(
    state: ServiceState,
    request: simulation_pb2.SimulateRequest,
    scenario: Scenario,
    progress: Any,
) -> SimulationResult:
    """Blocking: resolve the policy and simulate (runs on the worker pool)."""
    policy_msg = request.scenario.policy
    policy = None
    if policy_msg.WhichOneof("kind") == "planner":
        scenario = _with_planner_slo(scenario, policy_msg.planner)
        policy = _planner_policy(state, policy_msg.planner, scenario)
    return simulate(scenario, catalog=state.catalog, policy=policy, progress=progress)


class SimulationServicer(simulation_pb2_grpc.SimulationServiceServicer):
    def __init__(self, state: ServiceState) -> None:
        self.state = state

    async def Simulate(
        self, request: simulation_pb2.SimulateRequest, context: Ctx
    ) -> AsyncIterator[simulation_pb2.SimulateResponse]:
        scenario = scenario_from_request(request)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[simulation_pb2.SimulateProgress] = asyncio.Queue()
        cancel = threading.Event()

        def progress(fraction: float, replicate: int, done: int, message: str) -> None:
            if cancel.is_set():
                raise SimulationCancelled("simulation stopped: the call ended")
            msg = simulation_pb2.SimulateProgress(
                fraction=fraction, replicate=replicate, requests_done=done, message=message
            )
            loop.call_soon_threadsafe(queue.put_nowait, msg)

        budget = self.state.time_budget(context)
        work = functools.partial(run_simulation, self.state, request, scenario, progress)
        future = loop.run_in_executor(self.state.executor, work)
        future.add_done_callback(_retrieve)
        deadline = loop.time() + budget
        try:
            yield simulation_pb2.SimulateResponse(
                progress=simulation_pb2.SimulateProgress(
                    fraction=0.0,
                    message=f"simulating {scenario.replicates} replicate(s) of {scenario.name!r}",
                )
            )
            while not future.done():
                getter: asyncio.Future[Any] = asyncio.ensure_future(queue.get())
                waiting: set[asyncio.Future[Any]] = {getter, future}
                left = max(deadline - loop.time(), 0.0)
                done, _ = await asyncio.wait(waiting, timeout=left, return_when=asyncio.FIRST_COMPLETED)
                if getter.done():
                    yield simulation_pb2.SimulateResponse(progress=getter.result())
                else:
                    getter.cancel()
                if not done:
                    raise TimeoutError(f"simulation ran past the call's deadline ({budget:.1f} s)")
            while not queue.empty():
                yield simulation_pb2.SimulateResponse(progress=queue.get_nowait())
            result = future.result()
        finally:
            cancel.set()
        yield simulation_pb2.SimulateResponse(projection=projection_message(result))

    async def Forecast(self, request: simulation_pb2.ForecastRequest, context: Ctx) -> Any:
        from planner.servicers.forecasting import handle_forecast

        result = handle_forecast(self.state, request, context)
        return await result if inspect.isawaitable(result) else result


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()  # a cancelled call's stopped simulation is not logged as a lost exception


def add_to_server(server: Any, state: ServiceState) -> str:
    simulation_pb2_grpc.add_SimulationServiceServicer_to_server(SimulationServicer(state), server)
    return SERVICE
