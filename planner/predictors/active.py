"""The service's active predictor: loaded at start (the promoted version, else a prior bootstrapped from the
store's runs and promoted), and swapped whole on promote / roll-back so in-flight requests never see a torn or
missing predictor.

`ServiceState.predictor` / `predictor_version` are replaced by plain attribute assignment (atomic for readers
on the event loop and in worker threads); a reader that needs both takes `state.extras["predictor"]`, an
`ActivePredictor` swapped in one assignment. Callables in `state.extras["predictor_listeners"]` are called
with the new `ActivePredictor` after each swap (e.g. to rebuild cached option tables).

`watch_registry` polls the store for the promoted version so that a promotion made elsewhere (the CLI, another
replica's RPC) reaches every server within one poll interval.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog

from models.api import Forecaster
from planner.catalog import Catalog
from planner.predictors.kinds import PredictorKind, spec_for
from planner.predictors.lifecycle import TrainConfig, train_predictor
from planner.store import Database, PredictorRegistryStore, RunStore

log = structlog.get_logger(__name__)

DEFAULT_POLL_S = 5.0
"""Registry poll interval when the settings object has no `predictor_poll_s` (0 disables polling)."""

EXTRAS_KEY = "predictor"
LISTENERS_KEY = "predictor_listeners"


@dataclass(frozen=True)
class ActivePredictor:
    version: str
    kind: str
    predictor: Forecaster


def startup_predictor(
    db: Database | None, run_name_map: Mapping[str, str], catalog: Catalog | None = None
) -> ActivePredictor | None:
    """The predictor a server starts with: the promoted version; else, when the store holds runs, a prior
    trained on them, stored and promoted (so routing works at once); else None."""
    if db is None:
        return None
    stored = PredictorRegistryStore(db).promoted()
    if stored is not None:
        try:
            return ActivePredictor(stored.version, stored.kind, spec_for(stored.kind).loads(stored.artifact))
        except Exception as exc:  # an artifact this code cannot load must not stop the server
            log.error("predictor.load_failed", version=stored.version, error=str(exc))
    if RunStore(db).count() == 0:
        return None
    config = TrainConfig.create(kind=PredictorKind.PRIOR.value)
    result = train_predictor(db, config, run_name_map, catalog=catalog)
    registry = PredictorRegistryStore(db)
    if stored is None:
        registry.promote(result.version.version)
    predictor = spec_for(PredictorKind.PRIOR).loads(registry.get(result.version.version).artifact)
    log.info("predictor.bootstrapped", version=result.version.version, kind="prior")
    return ActivePredictor(result.version.version, PredictorKind.PRIOR.value, predictor)


def install(state: Any, active: ActivePredictor | None) -> None:
    """Swap the state's active predictor (whole) and notify listeners."""
    if active is None:
        return
    state.extras[EXTRAS_KEY] = active
    state.predictor = active.predictor
    state.predictor_version = active.version
    listeners: list[Callable[[ActivePredictor], None]] = state.extras.get(LISTENERS_KEY, [])
    for listener in listeners:
        listener(active)


def current(state: Any) -> ActivePredictor | None:
    found = state.extras.get(EXTRAS_KEY)
    return found if isinstance(found, ActivePredictor) else None


async def load_active_predictor(state: Any) -> ActivePredictor | None:
    """Load (or bootstrap) the active predictor off the event loop and install it on `state`
    (`planner.server.create_server` calls this before serving)."""
    loop = asyncio.get_running_loop()
    names = state.catalog.run_name_map()
    try:
        active = await loop.run_in_executor(state.executor, startup_predictor, state.db, names, state.catalog)
    except Exception as exc:  # a store whose runs cannot train a prior must not stop the server
        log.error("predictor.bootstrap_failed", error=str(exc))
        return None
    install(state, active)
    if active is not None:
        log.info("predictor.active", version=active.version, kind=active.kind)
    return active


def poll_interval(settings: Any) -> float:
    return float(getattr(settings, "predictor_poll_s", DEFAULT_POLL_S))


def _load_promoted(db: Database, known: str) -> ActivePredictor | None:
    """The promoted version when it differs from `known` (loaded), else None."""
    stored = PredictorRegistryStore(db).promoted()
    if stored is None or stored.version == known:
        return None
    return ActivePredictor(stored.version, stored.kind, spec_for(stored.kind).loads(stored.artifact))


async def sync_with_registry(state: Any, swap_lock: asyncio.Lock) -> bool:
    """Install the store's promoted version if it is not the active one; whether a swap happened."""
    loop = asyncio.get_running_loop()
    version = await loop.run_in_executor(state.executor, PredictorRegistryStore(state.db).promoted_version)
    if version is None or version == state.predictor_version:
        return False
    async with swap_lock:  # re-read under the lock: an RPC promote may have swapped meanwhile
        active = await loop.run_in_executor(state.executor, _load_promoted, state.db, state.predictor_version)
        install(state, active)
    if active is not None:
        log.info("predictor.synced", version=active.version, kind=active.kind)
    return active is not None


async def watch_registry(state: Any, swap_lock: asyncio.Lock, interval_s: float) -> None:
    """Forever: every `interval_s`, `sync_with_registry` (errors are logged, never raised)."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            await sync_with_registry(state, swap_lock)
        except Exception as exc:  # a store hiccup or a bad artifact must not end the watcher
            log.warning("predictor.sync_failed", error=str(exc))
