"""The planner's decisions as the simulator's routing policy: fleet-restricted options, budget pacing,
expected quality from the forecaster, and the quality table of fixed routes."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import pytest

from models.api import Forecast, Query
from models.baseline import PriorForecaster
from planner.catalog import load_catalog
from planner.demo import demo_records
from planner.errors import FailedPreconditionError
from planner.sim_policy import PlannerSimPolicy
from planner.sim_quality import quality_table
from simulator.costmodel import CostModel
from simulator.policy import FixedPolicy
from simulator.run import simulate
from tests.simulator.scenarios import H100, TIER, small


@pytest.fixture(scope="module")
def forecaster() -> PriorForecaster:
    catalog = load_catalog()
    return PriorForecaster(catalog.run_name_map()).fit(pd.DataFrame(demo_records(catalog, 300, seed=1)))


def _policy(forecaster: PriorForecaster, budget: float = 0.0) -> PlannerSimPolicy:
    catalog = load_catalog()
    return PlannerSimPolicy(catalog, CostModel(catalog), forecaster, [H100], budget_usd_per_request=budget)


def test_planner_policy_routes_within_fleet_and_budget(forecaster: PriorForecaster) -> None:
    catalog = load_catalog()
    free = simulate(small(), policy=_policy(forecaster))
    tight = simulate(small(), policy=_policy(forecaster, budget=2e-4))
    for r in (free, tight):
        used = set(r.breakdown["spend_by_target_usd"])
        assert all(t == H100 or catalog.target(t).price_model.value == "per_token" for t in used)
        assert 0 < r.metric("expected_quality") <= 1
    assert tight.metric("expected_quality") <= free.metric("expected_quality")
    per_token = sum(v for k, v in tight.breakdown["spend_by_target_usd"].items() if k != H100)
    assert per_token / tight.metric("completed") <= 2e-4 * 1.5


def test_planner_policy_needs_an_option_on_the_fleet(forecaster: PriorForecaster) -> None:
    catalog = load_catalog()
    only_gpu = [t.name for t in catalog.targets if t.price_model.value != "per_token"]
    policy = PlannerSimPolicy(catalog, CostModel(catalog), forecaster, only_gpu[:1])
    assert all(o.target == only_gpu[0] or catalog.target(o.target).price_model.value == "per_token"
               for o in policy.options)  # fmt: skip
    with pytest.raises(FailedPreconditionError):
        PlannerSimPolicy(catalog, CostModel(catalog), _NoTiers(), [H100])


class _NoTiers:
    tiers = ("no-such-tier",)

    def forecast(self, queries: Sequence[Query]) -> Forecast:  # pragma: no cover - never called
        raise AssertionError


def test_quality_table_fills_fixed_routes(forecaster: PriorForecaster) -> None:
    catalog = load_catalog()
    table = quality_table(forecaster, catalog, [(TIER, "single"), (TIER, "vote5")])
    assert 0 < table[(TIER, "single")] < table[(TIER, "vote5")] <= 1
    sc = small()
    r = simulate(sc, policy=FixedPolicy(sc.routes, catalog, table))
    assert r.metric("expected_quality") == pytest.approx(table[(TIER, "single")])
    assert np.isfinite(r.metrics["expected_quality"]["lo"])
