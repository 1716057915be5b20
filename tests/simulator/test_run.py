"""End-to-end simulation of small scenarios on the default catalog: books balance, strategies act on the
workload, admission, fleet sizing, determinism and replicate intervals."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from planner.catalog import load_catalog
from planner.errors import InvalidArgumentError
from simulator.run import prepare, simulate
from simulator.scenario import scenario_from_dict
from tests.simulator.scenarios import H100, TIER, small

_scenario = small


def test_baseline_books_balance_and_are_deterministic() -> None:
    sc = _scenario(replicates=2)
    a, b = simulate(sc), simulate(sc)
    assert a.to_dict() == b.to_dict()
    m = a.metrics
    assert m["requests"]["mean"] == pytest.approx(1200, rel=0.1)
    assert m["completed"]["mean"] == m["requests"]["mean"]
    # Two H100s for the whole span at the catalog's hourly price.
    hourly = load_catalog().target(H100).hourly_usd
    assert a.per_replicate[0]["spend_usd"] == pytest.approx(
        2 * hourly * a.per_replicate[0]["horizon_s"] / 3600
    )
    spend = a.breakdown
    assert sum(spend["spend_by_tenant_usd"].values()) == pytest.approx(m["spend_usd"]["mean"])
    assert m["co2_kg"]["mean"] == pytest.approx(m["energy_kwh"]["mean"] * 322 / 1000)
    assert m["energy_kwh"]["mean"] == pytest.approx(1.2 * m["it_energy_kwh"]["mean"])
    assert sum(a.hourly["energy_kwh"]) == pytest.approx(m["energy_kwh"]["mean"], rel=1e-6)
    assert sum(a.hourly["spend_usd"]) == pytest.approx(m["spend_usd"]["mean"], rel=1e-6)
    for lat in ("ttft_s", "tbt_s", "e2e_s"):
        assert 0 < m[f"{lat}.p50"]["mean"] <= m[f"{lat}.p95"]["mean"] <= m[f"{lat}.p99"]["mean"]
    assert m["slo_attainment"]["mean"] == 1.0
    json.dumps(a.to_dict(), allow_nan=False)


def test_best_of_n_multiplies_decode_work_and_lpu_is_billed_per_token() -> None:
    routes = [
        {"task": "chat", "tier": TIER, "target": H100, "weight": 0.5},
        {"task": "chat", "tier": TIER, "target": "groq-lpu", "weight": 0.5},
        {"task": "hard", "tier": TIER, "strategy": "bon8", "target": H100},
    ]
    base, what_if = simulate(_scenario()), simulate(_scenario(routes=routes))
    catalog = load_catalog()
    mult = catalog.strategy("bon8").output_multiplier
    tokens = base.metric("output_tokens_per_s")
    expected = tokens * (0.75 + 0.25 * mult)
    assert what_if.metric("output_tokens_per_s") == pytest.approx(expected, rel=0.15)
    assert what_if.breakdown["spend_by_target_usd"]["groq-lpu"] > 0
    assert (
        what_if.breakdown["spend_by_region_usd"]["us-west"]
        == what_if.breakdown["spend_by_target_usd"]["groq-lpu"]
    )
    assert what_if.metric("co2_kg") > base.metric("co2_kg")


def test_overload_with_admission_limit_rejects_and_misses_slo() -> None:
    sc = _scenario(
        workload={
            "kind": "poisson",
            "rate_per_s": 60.0,
            "duration_s": 120.0,
            "output_tokens": {"median": 600},
        },
        fleet=[{"target": H100, "count": 1}],
        admission={"max_batch": 8, "max_queue": 50},
    )
    r = simulate(sc)
    assert r.metric("rejected") > 0
    assert r.metric("slo_attainment") < 0.9
    assert r.pools[0]["max_queue_len"] == 50
    by_tenant = r.breakdown["slo_attainment_by_tenant"]
    assert by_tenant["default"] == pytest.approx(r.metric("slo_attainment"))


def test_devices_are_shared_among_tiers_by_demand() -> None:
    routes = [
        {"tier": TIER, "target": H100, "weight": 0.8},
        {"tier": "llama-3.1-70b", "target": H100, "weight": 0.2},
    ]
    setup = prepare(_scenario(routes=routes, fleet=[{"target": H100, "count": 12}]))
    pools = {p.tier: p for p in setup.pools}
    assert sum(p.devices for p in pools.values()) == 12
    assert pools["llama-3.1-70b"].devices_per_replica == 4
    assert pools["llama-3.1-70b"].replicas >= 1 and pools[TIER].replicas >= 1


def test_replicates_give_intervals() -> None:
    r = simulate(_scenario(replicates=3))
    ci = r.metrics["e2e_s.p95"]
    assert ci["n"] == 3 and ci["lo"] <= ci["mean"] <= ci["hi"]
    assert len(r.per_replicate) == 3
    assert np.isnan(r.metric("expected_quality"))


@pytest.mark.parametrize(
    ("over", "match"),
    [
        ({"fleet": []}, "needs 1 devices per replica|needs"),
        ({"routes": [{"tier": "nope", "target": H100}]}, "routes are invalid"),
    ],
)
def test_bad_fleets_and_routes_are_rejected(over: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidArgumentError, match=match):
        prepare(_scenario(**over))


def test_unused_fleet_devices_are_idle_but_paid() -> None:
    fleet = [{"target": "A100-SXM4-80GB", "count": 2}, {"target": H100, "count": 2}]
    with_idle, base = simulate(_scenario(fleet=fleet)), simulate(_scenario())
    a100 = with_idle.breakdown["spend_by_target_usd"]["A100-SXM4-80GB"]
    assert a100 == pytest.approx(
        2 * load_catalog().target("A100-SXM4-80GB").hourly_usd * 300 / 3600, rel=0.05
    )
    assert with_idle.metric("energy_kwh") > base.metric("energy_kwh")
    assert with_idle.breakdown["utilisation"]["A100-SXM4-80GB"] == 0.0
    assert any("idle" in n for n in with_idle.notes)


def test_scenario_validation_names_the_field() -> None:
    with pytest.raises(InvalidArgumentError) as err:
        scenario_from_dict({"workload": {"kind": "poisson", "rate_per_s": -1}, "bogus": 1})
    fields = {v.field for v in err.value.violations}
    assert "workload.rate_per_s" in fields and "bogus" in fields
