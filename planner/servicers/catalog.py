"""CatalogService: read the active catalog, validate and store new versions (`planner.store.CatalogStore`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import grpc
from google.protobuf import json_format, struct_pb2, timestamp_pb2

from planner.catalog import Catalog, parse_catalog
from planner.errors import FailedPreconditionError
from planner.servicers.state import ServiceState
from planner.store import CatalogStore
from planner.v1 import catalog_pb2, catalog_pb2_grpc

SERVICE = catalog_pb2.DESCRIPTOR.services_by_name["CatalogService"].full_name


def summary(catalog: Catalog) -> catalog_pb2.CatalogSummary:
    """Names of everything in `catalog` and its number of feasible options."""
    return catalog_pb2.CatalogSummary(
        name=catalog.name,
        tiers=[t.name for t in catalog.tiers],
        strategies=[s.name for s in catalog.strategies],
        targets=[t.name for t in catalog.targets],
        regions=[r.name for r in catalog.regions],
        tenants=[t.name for t in catalog.tenants],
        option_count=sum(1 for _ in catalog.combinations()),
    )


def catalog_struct(catalog: Catalog) -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    json_format.ParseDict(catalog.to_dict(), out)
    return out


def timestamp(when: datetime | None) -> timestamp_pb2.Timestamp | None:
    if when is None:
        return None
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(when)
    return ts


def response(catalog: Catalog, toml: str, created: datetime | None) -> catalog_pb2.GetCatalogResponse:
    return catalog_pb2.GetCatalogResponse(
        version=catalog.content_hash(),
        summary=summary(catalog),
        catalog=catalog_struct(catalog),
        toml=toml,
        created_at=timestamp(created),
    )


def _catalog_store(state: ServiceState) -> CatalogStore:
    if state.db is None:
        raise FailedPreconditionError("this server runs without a database: catalog versions are not stored")
    return CatalogStore(state.db)


class CatalogServicer(catalog_pb2_grpc.CatalogServiceServicer):
    def __init__(self, state: ServiceState) -> None:
        self.state = state
        self._active: tuple[tuple[object, ...], catalog_pb2.GetCatalogResponse] | None = None
        """Response for the active catalog, rebuilt when its version or its derived entries change (building
        one costs ~10 ms)."""

    def _active_response(self) -> catalog_pb2.GetCatalogResponse:
        state = self.state
        effective = state.effective_catalog()
        key = (
            state.catalog_version,
            tuple(t.name for t in effective.tiers),
            tuple(s.name for s in effective.strategies),
        )
        if self._active is None or self._active[0] != key:
            reply = response(state.catalog, state.catalog_toml, None)
            reply.effective.CopyFrom(summary(effective))
            reply.derived_notes.extend(state.derived_notes if effective is not state.catalog else ())
            self._active = (key, reply)
        return self._active[1]

    async def GetCatalog(
        self, request: catalog_pb2.GetCatalogRequest, context: grpc.aio.ServicerContext
    ) -> catalog_pb2.GetCatalogResponse:
        state = self.state
        if not request.version or request.version == state.catalog_version:
            return self._active_response()
        stored = await state.run_blocking(context, _catalog_store(state).get, request.version)
        return response(stored.catalog(), stored.toml, stored.created_at)

    async def PutCatalog(
        self, request: catalog_pb2.PutCatalogRequest, context: grpc.aio.ServicerContext
    ) -> catalog_pb2.PutCatalogResponse:
        catalog = parse_catalog(request.toml, "request.toml")  # CatalogError -> INVALID_ARGUMENT
        version = catalog.content_hash()
        if request.validate_only:
            return catalog_pb2.PutCatalogResponse(version=version, summary=summary(catalog))
        stored = False
        if self.state.db is not None:
            store = _catalog_store(self.state)
            before = {v.hash for v in await self.state.run_blocking(context, store.list)}
            await self.state.run_blocking(context, store.put, request.toml, True)
            stored = version not in before
        self.state.set_catalog(catalog, request.toml)
        return catalog_pb2.PutCatalogResponse(
            version=version, summary=summary(catalog), stored=stored, active=True
        )

    async def ListCatalogVersions(
        self, request: catalog_pb2.ListCatalogVersionsRequest, context: grpc.aio.ServicerContext
    ) -> catalog_pb2.ListCatalogVersionsResponse:
        versions = await self.state.run_blocking(context, _catalog_store(self.state).list)
        return catalog_pb2.ListCatalogVersionsResponse(
            versions=[
                catalog_pb2.CatalogVersion(
                    version=v.hash,
                    name=v.catalog().name,
                    created_at=timestamp(v.created_at),
                    active=v.active,
                )
                for v in versions
            ]
        )


def add_to_server(server: Any, state: ServiceState) -> str:
    catalog_pb2_grpc.add_CatalogServiceServicer_to_server(CatalogServicer(state), server)
    return SERVICE
