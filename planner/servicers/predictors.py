"""PredictorService (TrainPredictor, ListPredictors, PromotePredictor, RollbackPredictor, EvaluatePredictor).
Placeholder: every RPC answers UNIMPLEMENTED until its owner replaces the bodies (raise `planner.errors`
exceptions; `planner.servicers.errors` maps them to statuses)."""

from __future__ import annotations

from typing import Any, TypeAlias

import grpc

from planner.servicers.state import ServiceState
from planner.servicers.unbuilt import not_built
from planner.v1 import predictors_pb2, predictors_pb2_grpc

SERVICE = predictors_pb2.DESCRIPTOR.services_by_name["PredictorService"].full_name
Ctx: TypeAlias = grpc.aio.ServicerContext


class PredictorServicer(predictors_pb2_grpc.PredictorServiceServicer):
    def __init__(self, state: ServiceState) -> None:
        self.state = state

    async def TrainPredictor(self, request: predictors_pb2.TrainPredictorRequest, context: Ctx) -> Any:
        not_built("PredictorService.TrainPredictor")

    async def ListPredictors(self, request: predictors_pb2.ListPredictorsRequest, context: Ctx) -> Any:
        not_built("PredictorService.ListPredictors")

    async def PromotePredictor(self, request: predictors_pb2.PromotePredictorRequest, context: Ctx) -> Any:
        not_built("PredictorService.PromotePredictor")

    async def RollbackPredictor(self, request: predictors_pb2.RollbackPredictorRequest, context: Ctx) -> Any:
        not_built("PredictorService.RollbackPredictor")

    async def EvaluatePredictor(self, request: predictors_pb2.EvaluatePredictorRequest, context: Ctx) -> Any:
        not_built("PredictorService.EvaluatePredictor")


def add_to_server(server: Any, state: ServiceState) -> str:
    predictors_pb2_grpc.add_PredictorServiceServicer_to_server(PredictorServicer(state), server)
    return SERVICE
