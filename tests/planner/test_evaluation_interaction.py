"""Interaction calibration keeps a real (query x tier) interaction and drops a spurious one."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit

from models.api import Forecast, Query
from models.data import prepare_runs
from planner.evaluation.interaction import InteractionCalibrated

TIERS = ("a", "b", "c")


class TableForecaster:
    """Forecasts a fixed P(correct) table by query id (a stand-in for a fitted predictor)."""

    def __init__(self, table: dict[str, np.ndarray]) -> None:
        self.table = table

    @property
    def tiers(self) -> tuple[str, ...]:
        return TIERS

    def forecast(self, queries: Sequence[Query]) -> Forecast:
        p = np.stack([self.table[q.query_id] for q in queries])
        ones = np.ones_like(p)
        return Forecast(TIERS, p, 100 * ones, 200 * ones, np.full(len(queries), 50.0))


def _world(seed: int = 0, n: int = 1500) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ease = rng.normal(1.0, 1.5, size=(n, 1))
    interaction = rng.normal(0.0, 1.0, size=(n, len(TIERS)))
    ability = np.array([0.0, 0.3, -0.3])
    truth = expit(ability + ease + interaction)
    outcome = (rng.random(truth.shape) < truth).astype(int)
    raw = pd.DataFrame(
        [
            {"query_id": f"q{i}", "model": t, "correct": int(outcome[i, j]), "prompt": f"question {i}"}
            for i in range(n)
            for j, t in enumerate(TIERS)
        ]
    )
    spurious = expit(ability + ease + rng.permutation(interaction))
    return prepare_runs(raw), truth, spurious


@pytest.mark.parametrize("kind", ["real", "spurious"])
def test_slopes_follow_out_of_fold_evidence(kind: str) -> None:
    runs, truth, spurious = _world()
    p = truth if kind == "real" else spurious
    table = {f"q{i}": p[i] for i in range(len(p))}
    model = InteractionCalibrated(lambda tr: TableForecaster(table)).fit(runs)
    slopes = np.array(list(model.slopes().values()))
    if kind == "real":
        assert slopes.min() > 0.7
    else:
        assert slopes.max() < 0.3
    queries = [Query(query_id=f"q{i}", prompt=f"question {i}") for i in range(5)]
    fc = model.forecast(queries)
    assert fc.p_correct.shape == (5, 3) and np.all((fc.p_correct >= 0) & (fc.p_correct <= 1))
    assert str(model) == "TableForecaster+interaction-calibration"


def test_fixed_slope_zero_keeps_only_the_additive_part() -> None:
    runs, truth, _ = _world(n=300)
    table = {f"q{i}": truth[i] for i in range(len(truth))}
    model = InteractionCalibrated(lambda tr: TableForecaster(table), fixed_slope=0.0).fit(runs)
    assert set(model.slopes().values()) == {0.0}
    queries = [Query(query_id=f"q{i}") for i in range(300)]
    p = model.forecast(queries).p_correct
    # additive: the ordering of tiers is the same on every query
    order = np.argsort(p, axis=1)
    assert (order == order[0]).all()


@pytest.mark.parametrize(
    ("kind", "interaction"),
    [("difficulty", "calibrated"), ("difficulty+interaction", "calibrated"), ("difficulty-raw", "raw")],
)
def test_forecaster_kinds_choose_the_interaction_mode(kind: str, interaction: str) -> None:
    from planner.catalog import load_catalog
    from planner.demo import demo_records
    from planner.evaluation.forecasters import fit_forecaster

    catalog = load_catalog()
    runs = prepare_runs(pd.DataFrame(demo_records(catalog, 80)), catalog.run_name_map())
    model = fit_forecaster(kind, runs, catalog.run_name_map())
    assert model.get_params()["interaction"] == interaction  # type: ignore[attr-defined]
