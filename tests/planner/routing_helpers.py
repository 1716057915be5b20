"""Shared helpers of the routing tests (not a test module): router parts built from the default catalog and
the demo history, query streams, and a replica process body for the shared-ledger tests (kept free of pytest
and hypothesis imports so spawned replicas start quickly)."""

from __future__ import annotations

import asyncio
import multiprocessing as mp
from datetime import UTC, datetime

import pandas as pd

from models.api import Forecaster, Query
from models.baseline import PriorForecaster
from planner.catalog import Catalog, load_catalog
from planner.demo import demo_records
from planner.errors import BudgetExhaustedError
from planner.governance import GuardRails
from planner.online import CallOptions, OnlineRouter
from planner.options import OptionSet
from planner.pacing import Budget, LedgerLike
from simulator.costmodel import CostModel

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
OPUS = GuardRails(allowed_tiers=frozenset({"claude-3-opus"}))
"""Only an expensive tier: a small cap runs out after a handful of decisions."""

Parts = tuple[Catalog, OptionSet, Forecaster]


def build_parts() -> Parts:
    catalog = load_catalog()
    forecaster = PriorForecaster(catalog.run_name_map()).fit(pd.DataFrame(demo_records(catalog, 150)))
    return catalog, OptionSet.build(catalog, CostModel(catalog), forecaster.tiers), forecaster


def make_router(parts: Parts, ledger: LedgerLike, clock: list[datetime], **kw: object) -> OnlineRouter:
    catalog, options, forecaster = parts
    return OnlineRouter(catalog, options, forecaster, ledger, clock=lambda: clock[0], **kw)  # type: ignore[arg-type]


def queries(n: int, start: int = 0, tenant: str = "default") -> list[Query]:
    return [
        Query(query_id=f"q{start + i}", prompt_tokens=50 + (37 * (start + i)) % 900, tenant=tenant)
        for i in range(n)
    ]


async def route_all(
    router: OnlineRouter, qs: list[Query], call: CallOptions, batch: int
) -> tuple[float, int]:
    """Route `qs` in batches; returns (expected spend of the decisions, batches refused for budget)."""
    spent, refused = 0.0, 0
    for i in range(0, len(qs), batch):
        try:
            decided = await router.route(qs[i : i + batch], call)
        except BudgetExhaustedError:
            refused += 1
            continue
        spent += sum(d.usd for d in decided)
    return spent, refused


def replica(url: str, worker: int, n: int, cap: float, out: mp.Queue) -> None:  # type: ignore[type-arg]
    """One server replica in its own process: route n single queries against the shared ledger at `url`."""
    from planner.store import Database, Ledger

    db = Database(url)
    router = make_router(build_parts(), Ledger(db), [T0])
    call = CallOptions(rails=OPUS, budget=Budget(spend_usd=cap, period="day"))

    async def go() -> tuple[float, int]:
        result = await route_all(router, queries(n, 1000 * worker), call, 1)
        await router.aclose()
        return result

    out.put(asyncio.run(go()))
    db.dispose()
