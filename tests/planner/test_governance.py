"""Governance: guard rails and escalation are enforced, every decision explains itself, the audit writer
batches in the background and loses nothing on close."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from models.api import Forecaster, Query
from models.baseline import PriorForecaster
from planner.catalog import Catalog, load_catalog
from planner.demo import demo_records
from planner.errors import InfeasibleError, InvalidArgumentError
from planner.governance import AuditWriter, GuardRails, dynamic_masks, static_masks
from planner.online import CallOptions, OnlineRouter
from planner.options import OptionSet, lognormal_p99
from planner.pacing import Budget, MemoryLedger
from planner.store import AuditLog, Database, DecisionRecord
from simulator.costmodel import CostModel

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
Parts = tuple[Catalog, OptionSet, Forecaster]


@pytest.fixture(scope="module")
def parts() -> Parts:
    catalog = load_catalog()
    forecaster = PriorForecaster(catalog.run_name_map()).fit(pd.DataFrame(demo_records(catalog, 150)))
    return catalog, OptionSet.build(catalog, CostModel(catalog), forecaster.tiers), forecaster


def router(parts: Parts, audit: AuditWriter | None = None) -> OnlineRouter:
    catalog, options, forecaster = parts
    return OnlineRouter(catalog, options, forecaster, MemoryLedger(), audit, clock=lambda: T0)


def route(r: OnlineRouter, qs: list[Query], call: CallOptions | None = None) -> list:
    return asyncio.run(r.route(qs, call))


def q(i: int = 0, tenant: str = "default", tokens: int = 400) -> Query:
    return Query(query_id=f"q{i}", prompt_tokens=tokens, tenant=tenant)


# ---- guard rails -------------------------------------------------------------------------------------------
def test_stricter_takes_the_tighter_limit() -> None:
    a = GuardRails(
        max_tokens=1000, max_spend_usd=0.5, allowed_tiers=frozenset({"x", "y"}), escalate_above_usd=0.2
    )
    b = GuardRails(
        max_tokens=0, max_spend_usd=0.1, allowed_tiers=frozenset({"y", "z"}), forbid_high_compute=True
    )
    c = a.stricter(b)
    assert c.max_tokens == 1000 and c.max_spend_usd == 0.1 and c.allowed_tiers == frozenset({"y"})
    assert c.forbid_high_compute and c.escalate_above_usd == 0.2 and c.allowed_targets is None


def test_guard_rails_reject_negative_limits() -> None:
    with pytest.raises(InvalidArgumentError) as err:
        GuardRails(max_tokens=-1, max_latency_s=float("nan"))
    assert {v.field for v in err.value.violations} == {"guard_rails.max_tokens", "guard_rails.max_latency_s"}


def test_masks_remove_every_option_that_breaks_a_rail(parts: Parts) -> None:
    _, options, forecaster = parts
    rails = GuardRails(
        max_tokens=3000, max_samples=4, max_spend_usd=0.002, max_latency_s=20.0, forbid_high_compute=True
    )
    f = forecaster.forecast([q(i, tokens=100 * i + 10) for i in range(10)])
    arrays = options.price(f)
    masks = {**static_masks(rails, options), **dynamic_masks(rails, arrays, f.input_tokens)}
    ok = np.logical_and.reduce([np.broadcast_to(m, arrays.shape) for m in masks.values()])
    assert np.all(arrays.usd[ok] <= 0.002) and np.all(arrays.latency_p90_s[ok] <= 20.0)
    assert np.all(np.broadcast_to(options.samples <= 4, arrays.shape)[ok])
    assert not np.any(np.broadcast_to(options.high_compute(), arrays.shape)[ok])
    generated = arrays.tokens_p90 - f.input_tokens[:, None]
    assert np.all(generated[ok] <= 3000)


def test_routed_decisions_obey_tenant_and_request_rails(parts: Parts) -> None:
    catalog = parts[0]
    tenant = catalog.tenant("search")  # max $0.05 / query, 4 samples, 4096 tokens, 5 s latency
    targets = frozenset(t.name for t in catalog.targets[:6])
    rails = GuardRails(allowed_targets=targets)
    for d in route(router(parts), [q(i, "search", 50 * i + 20) for i in range(30)], CallOptions(rails=rails)):
        assert d.usd <= tenant.max_spend_per_query_usd and d.option.samples <= tenant.max_samples_per_query
        assert d.latency_p90_s <= tenant.latency_slo_s and d.option.target in targets


def test_a_mixed_tenant_batch_applies_each_tenants_rails_in_order(parts: Parts) -> None:
    catalog = parts[0]
    search = catalog.tenant("search")
    tenants = ["default", "search", "batch-analytics", "search", "default", "search"]
    qs = [q(i, t, 60 * i + 30) for i, t in enumerate(tenants)]
    decided = route(router(parts), qs)
    assert [d.query_id for d in decided] == [x.query_id for x in qs]
    assert [d.tenant for d in decided] == tenants
    for d in (d for d in decided if d.tenant == "search"):
        assert d.usd <= search.max_spend_per_query_usd
        assert d.option.samples <= search.max_samples_per_query
    alone = route(router(parts), [qs[1]])[0]  # a query's decision does not depend on its batch-mates
    assert (alone.option, alone.usd) == (decided[1].option, decided[1].usd)


def test_a_p99_latency_rail_holds_on_the_extrapolated_tail(parts: Parts) -> None:
    free = route(router(parts), [q(i, tokens=200 + 50 * i) for i in range(12)])
    tails = lognormal_p99(np.array([d.latency_s for d in free]), np.array([d.latency_p90_s for d in free]))
    cap = float(np.median(tails))  # binds for about half of the queries
    capped = route(
        router(parts),
        [q(i, tokens=200 + 50 * i) for i in range(12)],
        CallOptions(rails=GuardRails(max_latency_p99_s=cap)),
    )
    got = lognormal_p99(np.array([d.latency_s for d in capped]), np.array([d.latency_p90_s for d in capped]))
    assert np.all(got <= cap * (1 + 1e-9))
    assert any(c.option != f.option for c, f in zip(capped, free, strict=True))  # the rail changed choices


def test_no_option_left_is_infeasible_naming_the_rail(parts: Parts) -> None:
    with pytest.raises(InfeasibleError, match="max_latency_s"):
        route(router(parts), [q()], CallOptions(rails=GuardRails(max_latency_s=1e-9)))


# ---- escalation --------------------------------------------------------------------------------------------
def test_escalation_caps_the_choice_within_the_threshold_and_flags_it(parts: Parts) -> None:
    r = router(parts)
    free = route(r, [q(tokens=3000)], CallOptions(dry_run=True, budget=Budget()))[0]
    threshold = free.usd / 3
    call = CallOptions(rails=GuardRails(escalate_above_usd=threshold), budget=Budget(), dry_run=True)
    d = route(r, [q(tokens=3000)], call)[0]
    assert d.usd <= threshold and d.explanation.escalated
    assert (
        free.option.label() in d.explanation.escalation_reason
        and "needs approval" in d.explanation.escalation_reason
    )
    assert d.explanation.binding_constraint == "escalation.escalate_above_usd"


def test_escalation_without_any_option_under_the_threshold_keeps_the_choice_flagged(parts: Parts) -> None:
    call = CallOptions(rails=GuardRails(escalate_above_usd=1e-12), budget=Budget(), dry_run=True)
    d = route(router(parts), [q()], call)[0]
    assert (
        d.explanation.escalated
        and "no allowed option is within the threshold" in d.explanation.escalation_reason
    )


# ---- explanations ------------------------------------------------------------------------------------------
def test_a_binding_budget_is_named_with_its_shadow_price(parts: Parts) -> None:
    r = router(parts)
    call = CallOptions(budget=Budget(spend_usd=0.01, period="day"))
    decided = route(r, [q(i) for i in range(40)], call)  # 40 queries against a tiny day budget
    priced = [d for d in decided if d.explanation.binding_kind == "spend"]
    assert priced, [d.explanation.summary for d in decided]
    e = priced[-1].explanation
    assert e.binding_constraint == "tenant:default:spend_usd/day" and e.shadow_price > 0
    assert "binds" in e.summary and e.runner_up is not None
    # the frontier above the choice buys quality more dearly than the shadow price allows
    assert e.quality_gain_per_usd <= e.shadow_price * (1 + 1e-6) + 1e-6


def test_high_compute_modes_are_flagged(parts: Parts) -> None:
    d = route(router(parts), [q()], CallOptions(budget=Budget(), dry_run=True))[0]
    assert d.explanation.high_compute == d.option.high_compute
    if d.option.high_compute:
        assert "HIGH-COMPUTE" in d.explanation.summary


def test_deadline_fallback_takes_the_cheapest_allowed_option(parts: Parts) -> None:
    _, options, forecaster = parts
    d = route(router(parts), [q()], CallOptions(fallback=True, dry_run=True))[0]
    assert d.explanation.deadline_fallback and "deadline fallback" in d.explanation.summary
    tenant = parts[0].tenant("default")
    arrays = options.price(forecaster.forecast([q()]))
    ok = (arrays.usd <= tenant.max_spend_per_query_usd) & (arrays.latency_p90_s <= tenant.latency_slo_s)
    ok &= options.samples <= tenant.max_samples_per_query
    assert d.usd == pytest.approx(arrays.usd[ok].min(), rel=1e-3)


# ---- audit writer ------------------------------------------------------------------------------------------
def record(i: int) -> DecisionRecord:
    return DecisionRecord(f"r{i}", "default", f"q{i}", "t", "s", "g", 0.5, 0.001, {"summary": f"#{i}"})


def test_audit_writer_batches_and_flushes(sqlite_db: Database) -> None:
    batches: list[int] = []
    log = AuditLog(sqlite_db)

    def sink(rows: list[DecisionRecord]) -> int:
        batches.append(len(rows))
        return log.write_many(rows)

    writer = AuditWriter(sink, batch_size=100, interval_s=0.05)
    for start in range(0, 1000, 50):
        writer.submit([record(i) for i in range(start, start + 50)])
    writer.flush()
    assert writer.written == 1000 and len(log.recent(limit=2000)) == 1000
    assert len(batches) < 100 and max(batches) <= 100  # written in batches, not one by one
    writer.close()


def test_audit_writer_close_drains_the_queue(sqlite_db: Database) -> None:
    gate = threading.Event()
    log = AuditLog(sqlite_db)

    def slow_sink(rows: list[DecisionRecord]) -> int:
        gate.wait(5)
        return log.write_many(rows)

    writer = AuditWriter(slow_sink, batch_size=10)
    writer.submit([record(i) for i in range(95)])
    assert writer.pending > 0  # the call returned while the writes are still queued
    gate.set()
    writer.close()
    assert len(log.recent(limit=200)) == 95
    with pytest.raises(RuntimeError):
        writer.submit([record(0)])


def test_audit_writer_survives_a_failing_sink() -> None:
    calls = []

    def sink(rows: list[DecisionRecord]) -> int:
        calls.append(len(rows))
        if len(calls) <= 2:
            raise OSError("database went away")
        return len(rows)

    writer = AuditWriter(sink, batch_size=5, interval_s=0.01)
    writer.submit([record(i) for i in range(5)])
    writer.flush()
    writer.submit([record(i) for i in range(5, 10)])
    writer.close()
    assert writer.failed == 5 and writer.written == 5


def test_routed_decisions_are_audited_with_their_explanations(parts: Parts, sqlite_db: Database) -> None:
    log = AuditLog(sqlite_db)
    r = router(parts, AuditWriter(log.write_many))
    decided = route(r, [q(i) for i in range(7)])
    r.close()
    rows = {row.request_id: row for row in log.recent(limit=50)}
    assert set(rows) == {d.decision_id for d in decided}
    for d in decided:
        row = rows[d.decision_id]
        assert (
            row.expected_cost_usd == pytest.approx(d.usd)
            and row.explanation["summary"] == d.explanation.summary
        )
        assert row.explanation["binding_kind"] == d.explanation.binding_kind
