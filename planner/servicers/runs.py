"""RunService (RecordRuns, QueryRuns, GetRunStats). Placeholder: every RPC answers UNIMPLEMENTED until
replaced (raise `planner.errors` exceptions; `planner.servicers.errors` maps them)."""

from __future__ import annotations

from typing import Any

import grpc

from planner.servicers.state import ServiceState
from planner.servicers.unbuilt import not_built
from planner.v1 import runs_pb2, runs_pb2_grpc

SERVICE = runs_pb2.DESCRIPTOR.services_by_name["RunService"].full_name


class RunServicer(runs_pb2_grpc.RunServiceServicer):
    def __init__(self, state: ServiceState) -> None:
        self.state = state

    async def RecordRuns(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        not_built("RunService.RecordRuns")

    async def QueryRuns(self, request: runs_pb2.QueryRunsRequest, context: grpc.aio.ServicerContext) -> Any:
        not_built("RunService.QueryRuns")

    async def GetRunStats(
        self, request: runs_pb2.GetRunStatsRequest, context: grpc.aio.ServicerContext
    ) -> Any:
        not_built("RunService.GetRunStats")


def add_to_server(server: Any, state: ServiceState) -> str:
    runs_pb2_grpc.add_RunServiceServicer_to_server(RunServicer(state), server)
    return SERVICE
