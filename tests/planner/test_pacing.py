"""Pacing: the hard cap is never crossed (one replica, several replicas in one process, several processes on
one SQLite / PostgreSQL ledger), spend tracks the budget along the period, leases are given back."""

from __future__ import annotations

import asyncio
import multiprocessing as mp
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from routing_helpers import OPUS, T0, Parts, build_parts, make_router, queries, replica, route_all

from planner.errors import InvalidArgumentError
from planner.governance import GuardRails
from planner.online import CallOptions
from planner.pacing import (
    Budget,
    MemoryLedger,
    PacingConfig,
    PacingCurve,
    period_bounds,
    reserve_lease,
)
from planner.store import Database, Ledger, period_key


@pytest.fixture(scope="module")
def parts() -> Parts:
    return build_parts()


# ---- small pieces ------------------------------------------------------------------------------------------
def test_period_bounds_contain_the_time_and_share_its_key() -> None:
    when = datetime(2026, 11, 23, 10, 17, 5, tzinfo=UTC)
    for period, length in (("hour", 3600), ("day", 86400), ("week", 7 * 86400)):
        start, end = period_bounds(when, period)
        assert start <= when < end and (end - start).total_seconds() == length
        assert (
            period_key(start, period)
            == period_key(when, period)
            == period_key(end - timedelta(seconds=1), period)
        )
    start, end = period_bounds(when, "month")
    assert (start.day, end.month, end.day) == (1, 12, 1)
    with pytest.raises(InvalidArgumentError, match="period"):
        period_bounds(when, "fortnight")


def test_pacing_curve_is_the_weights_cdf() -> None:
    curve = PacingCurve((1.0, 3.0, 0.0, 2.0))
    w = np.array([0, 1, 3, 0, 2], float).cumsum() / 6
    for x in np.linspace(0, 1, 17):
        assert curve.fraction(float(x)) == pytest.approx(float(np.interp(x, np.linspace(0, 1, 5), w)))
    assert PacingCurve().fraction(0.25) == 0.25
    with pytest.raises(InvalidArgumentError, match=r"pacing\.curve"):
        PacingCurve((0.0, 0.0))


def test_budget_rejects_bad_values() -> None:
    with pytest.raises(InvalidArgumentError, match=r"budget\.spend_usd"):
        Budget(spend_usd=-1)
    with pytest.raises(InvalidArgumentError, match=r"budget\.period"):
        Budget(period="total")
    assert Budget(spend_usd=2, energy_kwh=1).cap_energy_j == 3.6e6 and Budget().cap_usd is None


def test_reserve_lease_grants_what_is_left_near_the_cap(db: Database) -> None:
    for ledger in (MemoryLedger(), Ledger(db)):
        g1 = reserve_lease(ledger, "t", "p", 0.7, 0.0, 1.0, None)
        g2 = reserve_lease(ledger, "t", "p", 0.7, 0.0, 1.0, None)
        g3 = reserve_lease(ledger, "t", "p", 0.7, 0.0, 1.0, None)
        assert g1.usd == pytest.approx(0.7) and 0.29 < g2.usd < 0.3 and g3.usd == 0.0
        assert ledger.spent("t", "p").spent_usd <= 1.0


# ---- the hard cap ------------------------------------------------------------------------------------------
@settings(max_examples=15, deadline=None)
@given(
    cap=st.floats(0.001, 0.5),
    n=st.integers(1, 120),
    batch=st.integers(1, 9),
    step_s=st.floats(0.0, 120.0),
    opus=st.booleans(),
)
def test_one_replica_never_crosses_the_cap(
    parts: Parts, cap: float, n: int, batch: int, step_s: float, opus: bool
) -> None:
    ledger, clock = MemoryLedger(), [T0]
    router = make_router(parts, ledger, clock)
    call = CallOptions(rails=OPUS if opus else GuardRails(), budget=Budget(spend_usd=cap, period="hour"))

    async def go() -> float:
        total = 0.0
        for i in range(0, n, batch):
            clock[0] = T0 + timedelta(seconds=step_s * i)
            spent, _ = await route_all(router, queries(batch, i), call, batch)
            total += spent
            for period in {period_key(clock[0], "hour")}:
                assert ledger.spent("default", period).spent_usd <= cap
        await router.aclose()
        return total

    total = asyncio.run(go())
    # spent per hour never exceeds the cap; after close the ledger holds exactly what the decisions expect
    hours: dict[str, float] = {}
    assert total <= cap * max(
        1, len({period_key(T0 + timedelta(seconds=step_s * i), "hour") for i in range(n)})
    )
    for key in {period_key(T0 + timedelta(seconds=step_s * i), "hour") for i in range(n)}:
        hours[key] = ledger.spent("default", key).spent_usd
        assert hours[key] <= cap
    assert sum(hours.values()) == pytest.approx(total, rel=1e-9, abs=1e-12)


@settings(max_examples=10, deadline=None)
@given(
    cap=st.floats(0.01, 0.3),
    replicas=st.integers(2, 4),
    order=st.lists(st.integers(0, 3), min_size=5, max_size=60),
)
def test_replicas_sharing_a_ledger_never_cross_the_cap(
    parts: Parts, cap: float, replicas: int, order: list[int]
) -> None:
    ledger, clock = MemoryLedger(), [T0]
    routers = [make_router(parts, ledger, clock) for _ in range(replicas)]
    call = CallOptions(rails=OPUS, budget=Budget(spend_usd=cap, period="day"))

    async def go() -> tuple[float, int]:
        total, refused = 0.0, 0
        for k, r in enumerate(order):
            spent, no = await route_all(routers[r % replicas], queries(1, k), call, 1)
            total, refused = total + spent, refused + no
            assert ledger.spent("default", period_key(T0, "day")).spent_usd <= cap
        for router in routers:
            await router.aclose()
        return total, refused

    total, _ = asyncio.run(go())
    assert total <= cap
    assert ledger.spent("default", period_key(T0, "day")).spent_usd == pytest.approx(
        total, rel=1e-9, abs=1e-12
    )


def test_processes_sharing_one_database_ledger_never_cross_the_cap(db: Database) -> None:
    cap, n, workers = 0.15, 30, 2  # opus decisions cost cents: 2 x 30 of them want several times the cap
    ctx = mp.get_context("spawn")
    out: mp.Queue = ctx.Queue()  # type: ignore[type-arg]
    procs = [ctx.Process(target=replica, args=(db.url, w, n, cap, out)) for w in range(workers)]
    for p in procs:
        p.start()
    results = [out.get(timeout=180) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    total = sum(spent for spent, _ in results)
    assert sum(refused for _, refused in results) > 0  # the cap was reached
    assert total <= cap
    assert Ledger(db).spent("default", period_key(T0, "day")).spent_usd == pytest.approx(total, rel=1e-9)


# ---- pacing tracks the budget ------------------------------------------------------------------------------
def test_spend_tracks_the_budget_along_the_period(parts: Parts) -> None:
    """Demand worth far more than the hourly cap, arriving evenly: about half the budget is spent by half
    time, most of it by the end, never more than all of it."""
    ledger, clock = MemoryLedger(), [T0]
    router = make_router(parts, ledger, clock, config=PacingConfig(min_elapsed_s=10.0))
    unpaced = make_router(parts, MemoryLedger(), clock)
    n, batch = 1800, 6
    probe = asyncio.run(unpaced.route(queries(60), CallOptions(dry_run=True)))
    demand = sum(d.usd for d in probe) / 60 * n
    cap = demand / 5
    call = CallOptions(budget=Budget(spend_usd=cap, period="hour"))

    async def go() -> list[float]:
        spent, curve = 0.0, []
        for i in range(0, n, batch):
            clock[0] = T0 + timedelta(seconds=3600 * i / n)
            got, refused = await route_all(router, queries(batch, i), call, batch)
            assert refused == 0 or spent > 0.98 * cap  # a batch is refused only at the very end
            spent += got
            curve.append(spent)
        return curve

    curve = asyncio.run(go())
    half, end = curve[len(curve) // 2] / cap, curve[-1] / cap
    assert 0.3 <= half <= 0.7, half
    assert 0.8 <= end <= 1.0, end
    prices = router.book.all()[0].prices
    assert prices.usd > 0  # the budget binds


def test_dry_runs_reserve_nothing(parts: Parts) -> None:
    ledger, clock = MemoryLedger(), [T0]
    router = make_router(parts, ledger, clock)
    decided = asyncio.run(router.route(queries(5), CallOptions(dry_run=True)))
    assert len(decided) == 5 and ledger.spent("default", period_key(T0, "day")).spent_usd == 0.0


def test_uncapped_tenant_spend_is_still_recorded(parts: Parts) -> None:
    ledger, clock = MemoryLedger(), [T0]
    router = make_router(parts, ledger, clock)
    call = CallOptions(budget=Budget(period="hour"))

    async def go() -> float:
        decided = await router.route(queries(20), call)
        await router.aclose()
        return sum(d.usd for d in decided)

    total = asyncio.run(go())
    assert ledger.spent("default", period_key(T0, "hour")).spent_usd == pytest.approx(total)
