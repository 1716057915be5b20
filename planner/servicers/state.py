"""`ServiceState`: what every servicer of one server shares (settings, catalog, store, active predictor ...).

One instance per server, created by `planner.server.create_server`; nothing here is module-global. Fields that
change while serving (active catalog, predictor, router) are swapped whole, never mutated in place.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
import structlog

from planner.catalog import Catalog
from planner.settings import Settings

T = TypeVar("T")
log = structlog.get_logger(__name__)


@dataclass
class ServiceState:
    """Shared, per-server state handed to every servicer's `add_to_server(server, state)`."""

    settings: Settings
    catalog: Catalog
    db: Any = None
    """`planner.store.Database` or None (servicers that need the store then fail with FAILED_PRECONDITION)."""
    catalog_version: str = ""
    catalog_toml: str = ""
    predictor: Any = None
    """The active `models.api.Forecaster` (filled by the predictors service)."""
    predictor_version: str = ""
    router: Any = None
    """The online router (filled by the routing service)."""
    extras: dict[str, Any] = field(default_factory=dict)
    """Slots for other services' per-server objects, keyed by service name."""
    catalog_listeners: list[Callable[[Catalog], None]] = field(default_factory=list)
    """Called with the new catalog after `set_catalog` (e.g. to rebuild option tables)."""
    closers: list[Callable[[], None]] = field(default_factory=list)
    """Called by `close` before the worker pool stops (e.g. to flush the routing audit log)."""
    executor: ThreadPoolExecutor = field(init=False)
    _derived: dict[tuple[str, tuple[str, ...], int], Catalog] = field(default_factory=dict, repr=False)
    derived_notes: tuple[str, ...] = ()
    """How `catalog_for` made each derived entry of the latest derivation (`planner.derived_tiers`)."""

    def __post_init__(self) -> None:
        if not self.catalog_version:
            self.catalog_version = self.catalog.content_hash()
        self.executor = ThreadPoolExecutor(
            max_workers=self.settings.worker_threads, thread_name_prefix="planner-worker"
        )

    def set_catalog(self, catalog: Catalog, toml: str = "") -> None:
        """Make `catalog` the active one (swapped whole)."""
        self.catalog, self.catalog_toml, self.catalog_version = catalog, toml, catalog.content_hash()
        for listener in self.catalog_listeners:
            listener(catalog)

    def catalog_for(self, tiers: Sequence[str]) -> Catalog:
        """Blocking: the active catalog plus a derived tier for each of `tiers` (a forecaster's) it does not
        know and a derived strategy for each stored run strategy name it does not know, from the stored runs,
        the `price_table` and `list_prices` settings and model names (`planner.derived_tiers`); cached per
        catalog version, tiers and number of stored runs."""
        if self.db is None:
            return self.catalog
        from planner.store import RunStore

        store = RunStore(self.db)
        key = (self.catalog_version, tuple(tiers), store.count())
        cached = self._derived.get(key)
        if cached is not None:
            return cached
        unknown_tiers = set(tiers) - {t.name for t in self.catalog.tiers}
        unknown_strategies = set(store.strategies()) - {s.name for s in self.catalog.strategies}
        hit = self.catalog
        notes: tuple[str, ...] = ()
        if unknown_tiers or unknown_strategies:
            from planner.derived_tiers import extend_catalog
            from planner.prices import price_tables

            prices = price_tables(self.settings.price_table, self.settings.list_prices)
            ext = extend_catalog(self.catalog, store.load_frame(), prices)
            for note in ext.notes:
                log.info("catalog.derived", note=note)
            hit, notes = ext.catalog, ext.notes
        self._derived.clear()
        self._derived[key] = hit
        self.derived_notes = notes
        return hit

    def effective_catalog(self) -> Catalog:
        """The active catalog with the entries `catalog_for` derived for the stored runs (else the active
        catalog): what Route and Plan offer, so guard rails may name a derived tier or strategy. The server
        derives them before serving (`planner.server.create_server`) and again when a router is rebuilt."""
        for (version, _, _), catalog in self._derived.items():
            if version == self.catalog_version:
                return catalog
        return self.catalog

    def time_budget(self, context: grpc.aio.ServicerContext) -> float:
        """Seconds left for this call: the client's deadline, else `settings.default_deadline_s`."""
        remaining = context.time_remaining()
        if remaining is None:
            return self.settings.default_deadline_s
        return max(0.0, float(remaining))

    def time_limit(
        self, context: grpc.aio.ServicerContext, requested_s: float = 0.0, reserve_s: float = 0.05
    ) -> float:
        """Seconds a solver may spend: the call's budget minus `reserve_s` (to build the reply), capped by a
        positive `requested_s`. Raises `TimeoutError` (DEADLINE_EXCEEDED) when nothing is left."""
        limit = self.time_budget(context) - reserve_s
        if requested_s > 0:
            limit = min(limit, requested_s)
        if limit <= 0:
            raise TimeoutError("no time left for this call")
        return limit

    async def run_blocking(
        self, context: grpc.aio.ServicerContext, fn: Callable[..., T], *args: Any, **kwargs: Any
    ) -> T:
        """Run blocking work (database, fitting) on the worker pool within the call's time budget.

        Raises `TimeoutError` (mapped to DEADLINE_EXCEEDED) when the budget runs out first; the worker thread
        finishes in the background, so blocking work must be transactional (all or nothing).
        """
        budget = self.time_budget(context)
        if budget <= 0:
            raise TimeoutError("no time left for this call")
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self.executor, functools.partial(fn, *args, **kwargs))
        return await asyncio.wait_for(future, timeout=budget)

    def close(self) -> None:
        for closer in self.closers:
            closer()
        self.executor.shutdown(wait=False, cancel_futures=True)
