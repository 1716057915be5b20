"""SimulationService (Simulate, Forecast). Placeholder: every RPC answers UNIMPLEMENTED until its owner
replaces the bodies (raise `planner.errors` exceptions; `planner.servicers.errors` maps them to statuses)."""

from __future__ import annotations

from typing import Any

import grpc

from planner.servicers.state import ServiceState
from planner.servicers.unbuilt import not_built
from planner.v1 import simulation_pb2, simulation_pb2_grpc

SERVICE = simulation_pb2.DESCRIPTOR.services_by_name["SimulationService"].full_name


class SimulationServicer(simulation_pb2_grpc.SimulationServiceServicer):
    def __init__(self, state: ServiceState) -> None:
        self.state = state

    async def Simulate(
        self, request: simulation_pb2.SimulateRequest, context: grpc.aio.ServicerContext
    ) -> Any:
        not_built("SimulationService.Simulate")

    async def Forecast(
        self, request: simulation_pb2.ForecastRequest, context: grpc.aio.ServicerContext
    ) -> Any:
        not_built("SimulationService.Forecast")


def add_to_server(server: Any, state: ServiceState) -> str:
    simulation_pb2_grpc.add_SimulationServiceServicer_to_server(SimulationServicer(state), server)
    return SERVICE
