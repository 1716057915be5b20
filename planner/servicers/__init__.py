"""gRPC servicers, one module per service area, registered through ONE list.

Each module exposes `add_to_server(server, state)`; `add_all` calls them in order and returns the full service
names (for health checking and reflection). Service owners edit their own module only.

Writing a handler: `async def Rpc(self, request, context)`; raise `planner.errors` exceptions (the
server's `ErrorMappingInterceptor` turns them into statuses -- never `context.abort` for domain errors); run
blocking work with `await self.state.run_blocking(context, fn, *args)` (worker pool, bounded by the call's
deadline); give solvers `self.state.time_limit(context, requested_s)`; streaming handlers may be async gens.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from planner.servicers import catalog, predictors, routing, runs, simulation
from planner.servicers.state import ServiceState

AddToServer = Callable[[Any, ServiceState], str]

SERVICES: tuple[AddToServer, ...] = (
    catalog.add_to_server,
    runs.add_to_server,
    predictors.add_to_server,
    routing.add_to_server,
    simulation.add_to_server,
)
"""Every planner service; each adds itself to the server and returns its full service name."""


def add_all(server: Any, state: ServiceState) -> list[str]:
    """Register every planner service on `server`; returns their full names (e.g. `planner.v1.RunService`)."""
    return [add(server, state) for add in SERVICES]


__all__ = ["SERVICES", "ServiceState", "add_all"]
