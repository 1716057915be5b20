"""Sweeps: many scenarios x replicates in parallel, on local processes or on a Ray cluster.

The unit of work is one (scenario, replicate): `run_replicate(prepare(scenario), r)` is pure and its
`ReplicateResult` pickles cheaply, so replicates of every scenario spread over workers and are combined
per scenario afterwards (identical to running them in one process). Locally a `ProcessPoolExecutor`
(spawned workers) runs them; with `ray_address` (e.g. "auto" or "ray://head:10001") and the `distributed`
extra installed (`pip install compute-planner[distributed]`), Ray tasks do. Without Ray installed a Ray
sweep raises `FailedPreconditionError` saying so; nothing else needs Ray.
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

from planner.errors import FailedPreconditionError
from simulator.result import ReplicateResult, SimulationResult, combine
from simulator.run import prepare, run_replicate
from simulator.scenario import Scenario

SweepProgress = Callable[[int, int, str], None]
"""progress(tasks done, tasks in all, message)."""


def replicate_task(scenario: Scenario, replicate: int) -> ReplicateResult:
    """One (scenario, replicate), self-contained for a worker process or a Ray task."""
    return run_replicate(prepare(scenario), replicate)


def run_sweep(
    scenarios: Sequence[Scenario],
    *,
    workers: int | None = None,
    ray_address: str | None = None,
    progress: SweepProgress | None = None,
) -> list[SimulationResult]:
    """Simulate every scenario (all replicates) and return their results in the given order.

    `workers`: local processes (default: CPU count; 1 runs in this process). `ray_address`: run on Ray.
    """
    for sc in scenarios:
        prepare(sc)  # validate everything before spending any compute
    tasks = [(i, sc, r) for i, sc in enumerate(scenarios) for r in range(sc.replicates)]
    if ray_address:
        reps = _on_ray(tasks, ray_address, progress)
    elif (workers or os.cpu_count() or 1) <= 1 or len(tasks) <= 1:
        reps = _in_process(tasks, progress)
    else:
        reps = _on_processes(tasks, workers or os.cpu_count() or 1, progress)
    by_scenario: dict[int, list[ReplicateResult]] = {i: [] for i in range(len(scenarios))}
    for i, rep in reps:
        by_scenario[i].append(rep)
    return [
        combine(sc.name, sc.description, sc.interval_level, by_scenario[i]) for i, sc in enumerate(scenarios)
    ]


Task = tuple[int, Scenario, int]


def _in_process(tasks: list[Task], progress: SweepProgress | None) -> list[tuple[int, ReplicateResult]]:
    out = []
    for k, (i, sc, r) in enumerate(tasks):
        out.append((i, replicate_task(sc, r)))
        if progress:
            progress(k + 1, len(tasks), f"{sc.name} replicate {r}")
    return out


def _on_processes(
    tasks: list[Task], workers: int, progress: SweepProgress | None
) -> list[tuple[int, ReplicateResult]]:
    ctx = multiprocessing.get_context("spawn")
    out = []
    with ProcessPoolExecutor(max_workers=min(workers, len(tasks)), mp_context=ctx) as pool:
        futures = {pool.submit(replicate_task, sc, r): (i, sc, r) for i, sc, r in tasks}
        for k, fut in enumerate(as_completed(futures)):
            i, sc, r = futures[fut]
            out.append((i, fut.result()))
            if progress:
                progress(k + 1, len(tasks), f"{sc.name} replicate {r}")
    return out


def _on_ray(
    tasks: list[Task], address: str, progress: SweepProgress | None
) -> list[tuple[int, ReplicateResult]]:
    ray: Any = _import_ray()
    ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
    remote = ray.remote(replicate_task)
    pending = {remote.remote(sc, r): (i, sc, r) for i, sc, r in tasks}
    out = []
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        for ref in ready:
            i, sc, r = pending.pop(ref)
            out.append((i, ray.get(ref)))
            if progress:
                progress(len(out), len(tasks), f"{sc.name} replicate {r} (ray)")
    return out


def _import_ray() -> object:
    try:
        return importlib.import_module("ray")
    except ImportError:
        raise FailedPreconditionError(
            "a Ray sweep needs the 'distributed' extra: pip install 'compute-planner[distributed]'"
        ) from None
