"""The evaluation harness end to end on a GSM8K subsample (real runs, catalog, cost model and solver)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from models.baseline import PriorForecaster
from models.data import queries_from_frame, read_run_csv
from planner.catalog import load_catalog
from planner.cli import app
from planner.evaluation.harness import EvaluationReport, evaluate
from planner.evaluation.plots import plot_quality_cost
from planner.evaluation.replay import CrossFitForecaster, query_folds, split_queries
from simulator.costmodel import CostModel


@pytest.fixture(scope="module")
def runs(gsm8k_runs_path: Path) -> pd.DataFrame:
    frame = read_run_csv(gsm8k_runs_path, load_catalog().run_name_map())
    ids = np.random.default_rng(1).choice(frame["query_id"].unique(), 240, replace=False)
    return frame[frame["query_id"].isin(set(ids))].reset_index(drop=True)


@pytest.fixture(scope="module")
def report(runs: pd.DataFrame) -> EvaluationReport:
    catalog = load_catalog()
    name_map = catalog.run_name_map()
    return evaluate(
        runs, catalog, CostModel(catalog), lambda tr: PriorForecaster(name_map).fit(tr), folds=3, n_budgets=6
    )


def test_split_is_query_level(runs: pd.DataFrame) -> None:
    split = split_queries(runs, 0.3, seed=3)
    assert not set(split.train["query_id"]) & set(split.test["query_id"])
    assert split.test["query_id"].nunique() == 72


def test_folds_hold_out_every_query_once(runs: pd.DataFrame) -> None:
    splits = query_folds(runs, 4, seed=2)
    held = [set(s.test["query_id"]) for s in splits]
    assert sum(len(h) for h in held) == runs["query_id"].nunique()
    assert set().union(*held) == set(runs["query_id"])
    for s, h in zip(splits, held, strict=True):
        assert not h & set(s.train["query_id"])
    assert len(query_folds(runs, 1, test_fraction=0.25)) == 1
    with pytest.raises(ValueError):
        query_folds(runs, 0)


def test_cross_fit_forecasts_each_query_with_the_model_that_did_not_see_it(runs: pd.DataFrame) -> None:
    splits = query_folds(runs, 3, seed=0)
    cf = CrossFitForecaster.fit(splits, lambda tr: PriorForecaster().fit(tr))
    queries = queries_from_frame(runs)
    forecast = cf.forecast(queries)
    assert forecast.p_correct.shape == (len(queries), len(cf.tiers))
    for i in (0, 7, len(queries) - 1):
        own = cf.forecasters[cf.fold_of[queries[i].query_id]].forecast([queries[i]])
        cols = [own.tiers.index(t) for t in cf.tiers]
        np.testing.assert_allclose(forecast.p_correct[i], own.p_correct[0, cols])


def test_evaluate_reports_every_baseline(report: EvaluationReport, tmp_path: Path) -> None:
    names = {p.name for p in report.policies}
    assert {"planner", "random_mix", "threshold_router", "knn_router", "oracle"} <= names
    assert {"uniform_self_consistency", "planner_all_strategies"} <= names
    assert report.n_test_queries == 240  # cross-fitting replays every query
    figures = report.figures
    for router in ("planner", "random_mix", "threshold_router", "knn_router"):
        assert 0.0 <= figures["routers"][router]["aiq"] <= 1.0
        assert figures["routers"][router]["realised"] is True
    oracle = report.policy("oracle").points[0]
    assert all(oracle.quality >= p.points[0].quality for p in report.policies if p.kind == "single")
    random_mix = report.policy("random_mix").points
    assert random_mix[0].quality == pytest.approx(figures["single_models"][report.weak]["quality"])
    at = figures["planner_at_best_single_cost"]
    assert at["predicted_cost_usd"] <= at["budget_usd_per_query"] * (1 + 1e-9)
    lo, hi = at["quality_minus_reference_ci95_pp"]
    assert lo <= hi
    calib = figures["planner_calibration"]
    assert math.isfinite(calib["max_abs_quality_error_pp"]) and calib["plans"] >= 6
    assert set(figures["targets"]) == {
        "quality_at_best_single_cost",
        "cost_to_reach_best_single",
        "quality_at_ex_ante_best_single_cost",
        "cost_to_reach_ex_ante_best_single",
        "aiq_vs_threshold_and_knn",
        "quality_calibration",
        "spend_calibration",
    }
    assert all(isinstance(t["met"], bool) for t in figures["targets"].values())
    assert -1.0 <= figures["forecast_resolution"]["contrast_vs_best_single"]["corr"] <= 1.0
    json.dumps(report.to_dict(), allow_nan=True)
    png = plot_quality_cost(report, tmp_path / "qc.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_planner_plans_never_exceed_their_budget(report: EvaluationReport) -> None:
    """A hard budget on predicted spend: every swept plan fits it (or is the cheapest plan when none does)."""
    planner = report.policy("planner")
    cheapest = planner.points[0].predicted_cost
    assert cheapest is not None
    for p in planner.points:
        assert p.predicted_cost is not None
        assert p.predicted_cost <= max(p.knob, cheapest) * (1 + 1e-9)


def test_planner_promises_are_adjusted_for_selection_optimism(report: EvaluationReport) -> None:
    """Each plan's promise is the forecasts' mean over its picks less its estimated selection optimism; the
    calibration figures give both."""
    planner = report.policy("planner")
    assert "selection optimism" in planner.note
    assert max(p.optimism for p in planner.points) > 0  # near-equal tiers compete at some budget
    calib = report.figures["planner_calibration"]
    signed = [(p.predicted_quality or 0.0) - p.quality for p in planner.points]
    assert calib["mean_signed_quality_error_pp"] == pytest.approx(100 * np.mean(signed))
    raw = [s + p.optimism for s, p in zip(signed, planner.points, strict=True)]
    assert calib["unadjusted_mean_signed_quality_error_pp"] == pytest.approx(100 * np.mean(raw))
    assert calib["mean_selection_optimism_pp"] == pytest.approx(
        100 * np.mean([p.optimism for p in planner.points])
    )


def test_simulated_figures_are_marked_and_consistent(report: EvaluationReport) -> None:
    sim = report.figures["simulated"]
    assert sim["single_pass_fit_gap_pp"] < 0.5  # the reference fit reproduces each tier's accuracy
    for name in ("uniform_self_consistency", "planner_all_strategies"):
        assert report.policy(name).realised is False
    # offered a superset of the single-pass options, the planner promises at least as much at the top
    top_all = max(p.predicted_quality or 0.0 for p in report.policy("planner_all_strategies").points)
    top_single = max(p.predicted_quality or 0.0 for p in report.policy("planner").points)
    assert top_all >= top_single - 1e-9


def test_cli_prints_one_json_object(runs: pd.DataFrame, tmp_path: Path) -> None:
    raw = runs.rename(columns={"prompt": "question"})[["task", "query_id", "question", "model", "correct"]]
    small = raw[raw["query_id"].isin(set(raw["query_id"].unique()[:80]))]
    path = tmp_path / "runs.csv"
    small.to_csv(path, index=False)
    result = CliRunner().invoke(
        app,
        ["evaluate-policy", "--runs", str(path), "--predictor", "prior", "--folds", "2", "--no-simulate",
         "--json", "--plot", str(tmp_path / "p.png")],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["n_test_queries"] == 80 and "planner" in out["figures"]["routers"]
    assert (tmp_path / "p.png").exists()
    bad = CliRunner().invoke(app, ["evaluate-policy", "--runs", str(path), "--folds", "0", "--json"])
    assert bad.exit_code == 2 and "error" in json.loads(bad.stdout)


def test_replay_keeps_tasks_apart_when_query_ids_repeat(runs: pd.DataFrame) -> None:
    from planner.evaluation.harness import identity_quality
    from planner.evaluation.replay import build_replay

    catalog = load_catalog()
    part = runs[runs["query_id"].isin(set(runs["query_id"].unique()[:30]))]
    both = pd.concat([part, part.assign(task="copy")], ignore_index=True)
    forecaster = PriorForecaster(catalog.run_name_map()).fit(both)
    replay = build_replay(catalog, CostModel(catalog), forecaster, both, identity_quality)
    assert replay.n == 60
    assert {q.task for q in replay.queries} == {"gsm", "copy"}


def test_runs_without_prompt_text_still_evaluate(runs: pd.DataFrame) -> None:
    from planner.evaluation.policies import tfidf

    x, q = tfidf(["", " "], ["", "anything"])  # no vocabulary: one constant feature
    assert x.shape == (2, 1) and q.shape == (2, 1)
    catalog = load_catalog()
    name_map = catalog.run_name_map()
    blind = runs.assign(prompt="")
    report = evaluate(
        blind,
        catalog,
        CostModel(catalog),
        lambda tr: PriorForecaster(name_map).fit(tr),
        folds=2,
        n_budgets=4,
        simulate=False,
    )
    assert {"threshold_router", "knn_router", "planner"} <= {p.name for p in report.policies}
