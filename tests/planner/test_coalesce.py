"""Coalescer: concurrent Route calls share one decision batch; errors and cancellation stay per call."""

from __future__ import annotations

import asyncio

import pytest
from routing_helpers import T0, build_parts, make_router, queries

from planner.errors import InvalidArgumentError
from planner.online import CallOptions
from planner.pacing import Budget, MemoryLedger
from planner.servicers.coalesce import Coalescer

CALL = CallOptions(budget=Budget(spend_usd=1e6, period="day"))


@pytest.fixture(scope="module")
def parts():  # type: ignore[no-untyped-def]
    return build_parts()


async def test_concurrent_calls_are_decided_as_one_batch(parts) -> None:  # type: ignore[no-untyped-def]
    router, co = make_router(parts, MemoryLedger(), [T0]), Coalescer()
    qs = queries(20)
    decided = await asyncio.gather(*(co.decide(router, q, CALL) for q in qs))
    assert [d.query_id for d in decided] == [q.query_id for q in qs]
    assert (co.batches, co.decided) == (1, 20)
    alone = await router.route(qs[:1], CALL)  # same decision as deciding the query on its own
    assert decided[0].option == alone[0].option


async def test_one_call_at_a_time_is_decided_alone(parts) -> None:  # type: ignore[no-untyped-def]
    router, co = make_router(parts, MemoryLedger(), [T0]), Coalescer()
    for q in queries(5):
        assert (await co.decide(router, q, CALL)).query_id == q.query_id
    assert (co.batches, co.decided) == (5, 5)


async def test_a_bad_query_fails_only_its_own_call(parts) -> None:  # type: ignore[no-untyped-def]
    router, co = make_router(parts, MemoryLedger(), [T0]), Coalescer()
    qs = queries(4)
    bad = queries(1, start=99, tenant="nobody")[0]
    results = await asyncio.gather(
        *(co.decide(router, q, CALL) for q in [qs[0], bad, *qs[1:]]), return_exceptions=True
    )
    assert isinstance(results[1], InvalidArgumentError) and "nobody" in str(results[1])
    assert [r.query_id for r in results if not isinstance(r, BaseException)] == [q.query_id for q in qs]


async def test_a_cancelled_leader_still_decides_for_its_followers(parts) -> None:  # type: ignore[no-untyped-def]
    router, co = make_router(parts, MemoryLedger(), [T0]), Coalescer()
    qs = queries(5)
    tasks = [asyncio.ensure_future(co.decide(router, q, CALL)) for q in qs]
    await asyncio.sleep(0)  # every task has started: the first leads, the others joined its batch
    tasks[0].cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(results[0], asyncio.CancelledError)
    assert [r.query_id for r in results[1:]] == [q.query_id for q in qs[1:]]  # type: ignore[union-attr]


def test_rejects_bad_settings() -> None:
    with pytest.raises(InvalidArgumentError, match="max_batch"):
        Coalescer(max_batch=0)


async def test_a_leader_never_waits_for_company_past_its_deadline(parts) -> None:  # type: ignore[no-untyped-def]
    router = make_router(parts, MemoryLedger(), [T0])
    co = Coalescer(wait_s=30.0, busy_s=3600.0)  # once busy, a leader would wait 30 s for company
    await asyncio.gather(*(co.decide(router, q, CALL) for q in queries(8)))  # a big batch: now "busy"
    alone = queries(1, start=50)[0]
    decided = await asyncio.wait_for(co.decide(router, alone, CALL, max_wait_s=0.0), timeout=10)
    assert decided.query_id == alone.query_id
