"""Evaluation metrics, splits, the side-by-side report and its PNG."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.baseline import PriorForecaster
from models.data import query_keys
from models.evaluate import binary_scores, drop_cells, evaluate, expected_calibration_error, split_queries
from models.plots import reliability_png
from models.report import compare, make_forecaster, names_from
from planner.errors import InvalidArgumentError


def test_binary_scores_on_known_values() -> None:
    y = np.array([0, 0, 1, 1], dtype=float)
    s = binary_scores(y, np.array([0.1, 0.4, 0.35, 0.8]))
    assert s.auc == pytest.approx(0.75)
    assert s.brier == pytest.approx(np.mean([0.01, 0.16, 0.4225, 0.04]))
    assert binary_scores(np.ones(3), np.full(3, 0.9)).auc is None


@given(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=200))
@settings(max_examples=50, deadline=None)
def test_ece_is_between_zero_and_one(p: list[float]) -> None:
    arr = np.array(p)
    y = (arr > 0.5).astype(float)
    assert 0.0 <= expected_calibration_error(y, arr) <= 1.0


def test_ece_of_calibrated_forecasts_is_small() -> None:
    rng = np.random.default_rng(0)
    p = rng.uniform(size=200_000)
    y = (rng.random(p.size) < p).astype(float)
    assert expected_calibration_error(y, p) < 0.005
    assert expected_calibration_error(y, np.clip(p + 0.1, 0, 1)) > 0.05


def test_split_is_query_level_and_drop_removes_cells(gsm8k_small: pd.DataFrame) -> None:
    train, test = split_queries(gsm8k_small, 0.3, seed=1)
    assert not set(query_keys(train)) & set(query_keys(test))
    assert len(train) + len(test) == len(gsm8k_small)
    assert query_keys(test).nunique() == round(0.3 * query_keys(gsm8k_small).nunique())
    sparse = drop_cells(train, 0.3, seed=1)
    cells = lambda f: set(query_keys(f) + "|" + f["tier"])  # noqa: E731
    assert len(cells(sparse)) == round(0.7 * len(cells(train)))


def test_report_side_by_side_is_json_and_plots(gsm8k_small: pd.DataFrame, tmp_path: object) -> None:
    train, test = split_queries(gsm8k_small, 0.3, seed=0)
    prior = PriorForecaster().fit(train)
    report = compare(train, test, {"knn": make_forecaster("knn", None)}, fitted={"prior": prior})
    out = json.loads(json.dumps(report.to_dict()))
    assert [r["forecaster"] for r in out["summary"]] == ["knn", "prior"]
    assert out["summary"][0]["fit_s"] > 0
    assert report.by_name("prior").mean_tier_auc == pytest.approx(0.5)
    ev = evaluate("prior", prior, test)
    assert set(ev.per_tier) == set(test["tier"])
    assert ev.tokens is not None and 0 < ev.tokens.p90_coverage <= 1
    png = reliability_png(report, tmp_path / "rel.png")  # type: ignore[operator]
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_unknown_names_are_rejected() -> None:
    with pytest.raises(InvalidArgumentError, match="forecaster"):
        make_forecaster("oracle", None)
    with pytest.raises(InvalidArgumentError, match="baselines"):
        names_from("prior,oracle")
    assert names_from("prior, mf,") == ["prior", "mf"]
