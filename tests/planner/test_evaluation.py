"""The evaluation harness end to end on a GSM8K subsample (real runs, real catalog and cost model)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models.baseline import PriorForecaster
from models.data import read_run_csv
from planner.catalog import load_catalog
from planner.evaluation.harness import evaluate
from planner.evaluation.plots import plot_quality_cost
from planner.evaluation.replay import split_queries
from simulator.costmodel import CostModel


@pytest.fixture(scope="module")
def runs(gsm8k_runs_path: Path) -> pd.DataFrame:
    frame = read_run_csv(gsm8k_runs_path, load_catalog().run_name_map())
    ids = np.random.default_rng(1).choice(frame["query_id"].unique(), 300, replace=False)
    return frame[frame["query_id"].isin(set(ids))].reset_index(drop=True)


def test_split_is_query_level(runs: pd.DataFrame) -> None:
    split = split_queries(runs, 0.3, seed=3)
    assert not set(split.train["query_id"]) & set(split.test["query_id"])
    assert split.test["query_id"].nunique() == 90


def test_evaluate_reports_every_baseline(runs: pd.DataFrame, tmp_path: Path) -> None:
    catalog = load_catalog()
    name_map = catalog.run_name_map()
    report = evaluate(runs, catalog, CostModel(catalog), lambda tr: PriorForecaster(name_map).fit(tr))
    names = {p.name for p in report.policies}
    assert {"planner", "random_mix", "threshold_router", "knn_router", "oracle"} <= names
    figures = report.figures
    for router in ("planner", "random_mix", "threshold_router", "knn_router"):
        assert 0.0 <= figures["routers"][router]["aiq"] <= 1.0
    oracle = report.policy("oracle").points[0]
    assert all(oracle.quality >= p.points[0].quality for p in report.policies if p.kind == "single")
    random_mix = report.policy("random_mix").points
    assert random_mix[0].quality == pytest.approx(figures["single_models"][report.weak]["quality"])
    at = figures["planner_at_best_single_cost"]
    assert at["predicted_cost_usd"] <= at["budget_usd_per_query"] * (1 + 1e-9)
    assert math.isfinite(figures["planner_calibration"]["max_abs_quality_error_pp"])
    json.dumps(report.to_dict(), allow_nan=True)
    png = plot_quality_cost(report, tmp_path / "qc.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
