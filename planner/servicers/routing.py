"""RoutingService (Route, RouteBatch, Plan). Placeholder: every RPC answers UNIMPLEMENTED until its owner
replaces the bodies (raise `planner.errors` exceptions; `planner.servicers.errors` maps them to statuses)."""

from __future__ import annotations

import inspect
from typing import Any

import grpc

from planner.servicers.state import ServiceState
from planner.servicers.unbuilt import not_built
from planner.v1 import routing_pb2, routing_pb2_grpc

SERVICE = routing_pb2.DESCRIPTOR.services_by_name["RoutingService"].full_name


class RoutingServicer(routing_pb2_grpc.RoutingServiceServicer):
    def __init__(self, state: ServiceState) -> None:
        self.state = state

    async def Route(self, request: routing_pb2.RouteRequest, context: grpc.aio.ServicerContext) -> Any:
        not_built("RoutingService.Route")

    async def RouteBatch(
        self, request: routing_pb2.RouteBatchRequest, context: grpc.aio.ServicerContext
    ) -> Any:
        not_built("RoutingService.RouteBatch")

    async def Plan(self, request: routing_pb2.PlanRequest, context: grpc.aio.ServicerContext) -> Any:
        try:
            from planner.servicers.planning import handle_plan
        except ImportError:
            not_built("RoutingService.Plan")
        result = handle_plan(self.state, request, context)
        return await result if inspect.isawaitable(result) else result


def add_to_server(server: Any, state: ServiceState) -> str:
    routing_pb2_grpc.add_RoutingServiceServicer_to_server(RoutingServicer(state), server)
    return SERVICE
