"""CatalogService (GetCatalog, PutCatalog, ListCatalogVersions). Placeholder: every RPC
answers UNIMPLEMENTED until replaced (raise `planner.errors` exceptions; `servicers.errors` maps them)."""

from __future__ import annotations

from typing import Any

import grpc

from planner.servicers.state import ServiceState
from planner.servicers.unbuilt import not_built
from planner.v1 import catalog_pb2, catalog_pb2_grpc

SERVICE = catalog_pb2.DESCRIPTOR.services_by_name["CatalogService"].full_name


class CatalogServicer(catalog_pb2_grpc.CatalogServiceServicer):
    def __init__(self, state: ServiceState) -> None:
        self.state = state

    async def GetCatalog(
        self, request: catalog_pb2.GetCatalogRequest, context: grpc.aio.ServicerContext
    ) -> Any:
        not_built("CatalogService.GetCatalog")

    async def PutCatalog(
        self, request: catalog_pb2.PutCatalogRequest, context: grpc.aio.ServicerContext
    ) -> Any:
        not_built("CatalogService.PutCatalog")

    async def ListCatalogVersions(
        self, request: catalog_pb2.ListCatalogVersionsRequest, context: grpc.aio.ServicerContext
    ) -> Any:
        not_built("CatalogService.ListCatalogVersions")


def add_to_server(server: Any, state: ServiceState) -> str:
    catalog_pb2_grpc.add_CatalogServiceServicer_to_server(CatalogServicer(state), server)
    return SERVICE
