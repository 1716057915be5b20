"""The gRPC server (`grpc.aio`): planner services, standard health checking, reflection, error mapping.

`create_server(address, settings)` builds and starts a server and returns it with its bound port
(port 0 picks a free one). `serve(settings)` runs one until SIGTERM/SIGINT, then stops it gracefully.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from planner.catalog import Catalog, parse_catalog
from planner.errors import CatalogError, FailedPreconditionError, FieldViolation
from planner.predictors import load_active_predictor
from planner.servicers import ServiceState, add_all
from planner.servicers.errors import ErrorMappingInterceptor
from planner.servicers.metrics import MetricsInterceptor, RpcMetrics
from planner.settings import Settings
from planner.store import CatalogStore

log = structlog.get_logger(__name__)


def server_options(settings: Settings) -> list[tuple[str, Any]]:
    """Channel options of the server: message-size limits, keepalive pings to find dead clients, and no
    SO_REUSEPORT (so a second server on a busy port fails instead of silently sharing it)."""
    size = settings.max_message_bytes
    return [
        ("grpc.max_receive_message_length", size),
        ("grpc.max_send_message_length", size),
        ("grpc.keepalive_time_ms", 60_000),
        ("grpc.keepalive_timeout_ms", 20_000),
        ("grpc.so_reuseport", 0),
    ]


def _attach_health_and_reflection(
    server: grpc.aio.Server, names: list[str], settings: Settings
) -> health.aio.HealthServicer:
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    if settings.reflection:
        reflection.enable_server_reflection(
            [*names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME],
            server,
        )
    return health_servicer


async def _set_serving(health_servicer: health.aio.HealthServicer, names: list[str]) -> None:
    serving = health_pb2.HealthCheckResponse.SERVING
    for name in ["", *names]:
        await health_servicer.set(name, serving)


def initial_catalog(settings: Settings, db: Any) -> tuple[Catalog, str]:
    """The catalog a server starts with, and its TOML text: `settings.catalog_path` if set, else the active
    stored version (when there is a database), else the packaged default."""
    if settings.catalog_path is not None:
        try:
            text = Path(settings.catalog_path).read_text(encoding="utf-8")
        except OSError as exc:
            raise CatalogError(
                "cannot read catalog", [FieldViolation("catalog_path", str(settings.catalog_path), str(exc))]
            ) from None
        return parse_catalog(text, str(settings.catalog_path)), text
    if db is not None:
        active = CatalogStore(db).get_active()
        if active is not None:
            return active.catalog(), active.toml
    text = resources.files("planner").joinpath("default_catalog.toml").read_text(encoding="utf-8")
    return parse_catalog(text, "default_catalog.toml"), text


async def create_server(
    address: str | None = None,
    settings: Settings | None = None,
    *,
    catalog: Catalog | None = None,
    db: Any = None,
) -> tuple[grpc.aio.Server, int]:
    """Build, start and return `(server, bound_port)`.

    `address` defaults to `settings.address`; `catalog` to `initial_catalog(settings, db)`;
    `db` is a `planner.store.Database` (None: services that need the store answer FAILED_PRECONDITION).
    The `ServiceState` is reachable as `server.planner_state` (tests, CLI).
    """
    settings = settings or Settings()
    address = address or settings.address
    toml = ""
    if catalog is None:
        catalog, toml = initial_catalog(settings, db)
    state = ServiceState(settings=settings, catalog=catalog, catalog_toml=toml, db=db)
    metrics = RpcMetrics()
    server = grpc.aio.server(
        interceptors=[MetricsInterceptor(metrics), ErrorMappingInterceptor()],
        options=server_options(settings),
        maximum_concurrent_rpcs=settings.max_concurrent_rpcs or None,
    )
    names = add_all(server, state)
    health_servicer = _attach_health_and_reflection(server, names, settings)
    try:
        port = server.add_insecure_port(address)
    except RuntimeError as exc:  # grpc raises on a failed bind (address in use, bad host)
        state.close()
        raise FailedPreconditionError(f"cannot bind {address!r}: {exc}") from None
    active = await load_active_predictor(state)  # promoted version, else a prior bootstrapped from runs
    if active is not None:
        await _derive_catalog(state, active.predictor.tiers)
    await server.start()
    if settings.metrics_port:
        metrics.serve_http(settings.metrics_port)
        log.info("metrics.started", port=settings.metrics_port)
    await _set_serving(health_servicer, names)
    server.planner_state = state  # type: ignore[attr-defined]
    server.planner_health = health_servicer  # type: ignore[attr-defined]
    server.planner_metrics = metrics  # type: ignore[attr-defined]
    log.info("server.started", address=address, port=port, services=names)
    return server, port


async def _derive_catalog(state: ServiceState, tiers: Sequence[str]) -> None:
    """Derive the catalog entries for the stored runs' unknown models and strategies before serving
    (`ServiceState.catalog_for`), so requests naming them are valid from the first call; a failure is logged
    and retried when the router is built."""
    try:
        await asyncio.get_running_loop().run_in_executor(state.executor, state.catalog_for, tiers)
    except Exception as exc:
        log.error("catalog.derive_failed", error=str(exc))


async def stop_server(server: grpc.aio.Server, grace_s: float) -> None:
    """Mark every service NOT_SERVING, let in-flight calls finish for `grace_s`, then stop."""
    health_servicer = getattr(server, "planner_health", None)
    if health_servicer is not None:
        await health_servicer.enter_graceful_shutdown()
    await server.stop(grace_s)
    for attr in ("planner_state", "planner_metrics"):
        resource = getattr(server, attr, None)
        if resource is not None:
            resource.close()
    log.info("server.stopped", grace_s=grace_s)


async def serve(
    settings: Settings,
    *,
    catalog: Catalog | None = None,
    db: Any = None,
    on_ready: Callable[[grpc.aio.Server, int], None] | None = None,
) -> None:
    """Run a server until SIGTERM or SIGINT, then stop it gracefully; calls `on_ready(server, port)`."""
    server, port = await create_server(settings.address, settings, catalog=catalog, db=db)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if on_ready is not None:
        on_ready(server, port)
    log.info("server.ready", port=port)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await stop_server(server, settings.grace_s)
