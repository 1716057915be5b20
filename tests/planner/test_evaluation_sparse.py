"""The replay and the evaluation on sparse run logs (each query answered by only some models).

Real catalog, cost model, forecaster and solver on the seeded demo history, thinned like production logs:
each (query, model) pair -- all its runs, single pass and strategies -- kept with probability 0.6."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from models.baseline import PriorForecaster
from models.data import prepare_runs
from planner.catalog import Catalog, load_catalog
from planner.cli import app
from planner.demo import demo_records
from planner.evaluation import policies
from planner.evaluation.coverage import COMPLETE, MASKED, MIN_RECORDED_QUERIES
from planner.evaluation.diagnostics import paired_ci, resolution
from planner.evaluation.harness import EvaluationReport, evaluate
from planner.evaluation.plots import plot_quality_cost
from planner.evaluation.replay import CrossFitForecaster, Replay, build_replay, keyed, query_folds
from simulator.costmodel import CostModel

N_QUERIES = 240
TIERS = 5
KEEP = 0.6


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


def _demo(catalog: Catalog) -> pd.DataFrame:
    frame = pd.DataFrame(demo_records(catalog, N_QUERIES, seed=5))
    keep = sorted(frame["tier"].unique())[:TIERS]
    return frame[frame["tier"].isin(keep)].reset_index(drop=True)


def _thin(frame: pd.DataFrame, keep: float, seed: int = 2) -> pd.DataFrame:
    """Keep each (query, model) pair, all its runs together, with probability `keep`."""
    group = frame.groupby(["query_id", "model"]).ngroup().to_numpy()
    kept = np.random.default_rng(seed).random(group.max() + 1) < keep
    return frame[kept[group]].reset_index(drop=True)


@pytest.fixture(scope="module")
def dense(catalog: Catalog) -> pd.DataFrame:
    return prepare_runs(_demo(catalog), catalog.run_name_map())


@pytest.fixture(scope="module")
def sparse(catalog: Catalog) -> pd.DataFrame:
    return prepare_runs(_thin(_demo(catalog), KEEP), catalog.run_name_map())


def _prior(catalog: Catalog) -> PriorForecaster:
    return PriorForecaster(catalog.run_name_map())


def _replay(catalog: Catalog, runs: pd.DataFrame, **kwargs: float) -> Replay:
    splits = query_folds(keyed(runs), 2, seed=0)
    forecaster = CrossFitForecaster.fit(splits, lambda tr: _prior(catalog).fit(tr))
    test = pd.concat([s.test for s in splits], ignore_index=True)
    return build_replay(catalog, CostModel(catalog), forecaster, test, **kwargs)


@pytest.fixture(scope="module")
def replay(catalog: Catalog, sparse: pd.DataFrame) -> Replay:
    return _replay(catalog, sparse)


@pytest.fixture(scope="module")
def report(catalog: Catalog, sparse: pd.DataFrame) -> EvaluationReport:
    return evaluate(
        sparse, catalog, CostModel(catalog), lambda tr: _prior(catalog).fit(tr), folds=2, n_budgets=8
    )


def _single_recorded(runs: pd.DataFrame, replay: Replay) -> np.ndarray:
    """(n, tiers) whether the frame holds a single-pass run of each replay tier on each replay query."""
    plain = keyed(runs[runs["strategy"] == "single"])
    have = set(zip(plain["query_key"], plain["tier"], strict=True))
    keys = [f"{q.task}\x1f{q.query_id}" for q in replay.queries]
    return np.array([[(k, t) in have for t in replay.tiers] for k in keys])


def test_sparse_replay_masks_single_passes_where_unrecorded(replay: Replay, sparse: pd.DataFrame) -> None:
    assert replay.design == MASKED and replay.n_single == TIERS
    recorded = _single_recorded(sparse, replay)
    single = replay.single_mask
    assert single is not None
    np.testing.assert_array_equal(single, recorded)
    assert np.isnan(replay.realised_quality[:, :TIERS][~recorded]).all()
    assert np.isfinite(replay.realised_cost[:, :TIERS][recorded]).all()
    # a query stays when at least one option is recorded on it: no query with none, none dropped otherwise
    assert recorded.any(axis=1).all()
    with_single = keyed(sparse[sparse["strategy"] == "single"])["query_key"].nunique()
    assert replay.n == with_single
    assert any("sparse logs" in n for n in replay.notes)
    assert (recorded.sum(axis=1) == 1).any()  # queries with one recorded tier are kept


def test_queries_with_strategy_runs_only_are_left_out_with_a_note(
    catalog: Catalog, sparse: pd.DataFrame
) -> None:
    ids = sorted(sparse.loc[sparse["strategy"] != "single", "query_id"].unique())[:3]
    frame = sparse[~(sparse["query_id"].isin(ids) & (sparse["strategy"] == "single"))]
    replay = _replay(catalog, frame)
    assert not {q.query_id for q in replay.queries} & set(ids)
    assert "3 held-out queries with strategy runs but no single pass (left out)" in replay.notes


def test_sparse_demo_evaluates_with_every_figure(report: EvaluationReport, tmp_path: Path) -> None:
    names = {p.name for p in report.policies}
    assert {
        "planner",
        "random_mix",
        "threshold_router",
        "knn_router",
        "oracle",
        "best_single_ex_ante",
    } <= names
    assert {"uniform_self_consistency", "planner_all_strategies"} <= names  # simulated figures too
    figures = report.figures
    assert figures["coverage"]["design"] == MASKED
    for entry in figures["coverage"]["tiers"].values():
        assert 0.3 < entry["share"] < 0.9 and np.isfinite(entry["others_gap_pp"])
    at = figures["planner_at_best_single_cost"]
    assert "footing" in at and at["predicted_cost_usd"] <= at["budget_usd_per_query"] * (1 + 1e-9)
    same = at["on_reference_queries"]  # secondary, paired: the plan where the best single was recorded
    assert MIN_RECORDED_QUERIES <= same["queries"] < report.n_test_queries
    assert same["quality_minus_reference_ci95_pp"][0] <= same["quality_minus_reference_pp"]
    lo, hi = at["quality_minus_reference_ci95_pp"]
    assert np.isfinite(lo) and lo <= at["quality_minus_reference_pp"] <= hi
    for router in ("planner", "random_mix", "threshold_router", "knn_router"):
        assert 0.0 <= figures["routers"][router]["aiq"] <= 1.0
        assert np.isfinite(figures["routers"][router]["apgr"])
    cal = figures["planner_calibration"]
    assert cal["plans"] >= 8 and np.isfinite(cal["max_abs_quality_error_pp"])
    assert np.isfinite(figures["forecast_resolution"]["query"]["slope"])
    assert figures["recorded_strategies"]["options"]
    assert all(isinstance(t["met"], bool) for t in figures["targets"].values())
    assert "where both were recorded" in report.policy("random_mix").note
    json.dumps(report.to_dict(), allow_nan=True)
    png = plot_quality_cost(report, tmp_path / "qc.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_policies_never_use_an_unrecorded_outcome(report: EvaluationReport, replay: Replay) -> None:
    """The planner, kNN router and oracle only pick options recorded on each query; every single model is
    its mean over the queries where it was recorded. (`evaluate` builds the module's replay: same folds.)"""
    assert report.n_test_queries == replay.n
    mask = replay.mask
    rows = np.arange(replay.n)
    for name in ("planner", "knn_router", "oracle"):
        for point in report.policy(name).points:
            assert mask[rows, point.choice].all(), name
    top = max(report.policy("planner").points, key=lambda p: p.quality)
    assert len(set(top.choice.tolist())) >= 2  # its favourite is missing somewhere: it takes another there
    with pytest.raises(ValueError, match="not recorded"):
        replay.realise(np.zeros(replay.n, dtype=np.intp))  # a single model is not recorded everywhere
    figures = report.figures
    for j, tier in enumerate(replay.tiers):
        recorded = mask[:, j]
        single = report.policy(tier).points[0]
        assert single.quality == pytest.approx(float(replay.realised_quality[recorded, j].mean()))
        assert single.cost == pytest.approx(float(replay.realised_cost[recorded, j].mean()))
        assert f"{int(recorded.sum())}/{replay.n}" in report.policy(tier).note
    assert figures["best_single"]["quality"] == max(s["quality"] for s in figures["single_models"].values())


def test_pair_routers_are_scored_where_weak_and_strong_are_both_recorded(replay: Replay) -> None:
    weak, strong = 0, replay.n_single - 1
    mix = policies.random_mix(replay, weak, strong)
    assert mix is not None
    both = replay.mask[:, weak] & replay.mask[:, strong]
    assert 0 < both.sum() < replay.n
    assert mix.points[0].quality == pytest.approx(float(replay.realised_quality[both, weak].mean()))
    assert mix.points[-1].quality == pytest.approx(float(replay.realised_quality[both, strong].mean()))
    assert f"{int(both.sum())}/{replay.n}" in mix.note


def test_bootstrap_interval_and_resolution_use_recorded_outcomes_only(replay: Replay) -> None:
    a = np.full(replay.n, 0, dtype=np.intp)
    b = np.full(replay.n, 1, dtype=np.intp)
    lo, hi = paired_ci(replay, a, b)
    diff = (
        replay.realised_quality[replay.mask[:, 0], 0].mean()
        - replay.realised_quality[replay.mask[:, 1], 1].mean()
    ) * 100
    assert lo <= diff <= hi and hi - lo < 30
    res = resolution(replay, best=0, contender_pp=100.0)
    assert np.isfinite(res["query"]["slope"]) and np.isfinite(res["contrast_vs_best_single"]["corr"])


def test_dense_frames_replay_complete_case_as_before(catalog: Catalog, dense: pd.DataFrame) -> None:
    replay = _replay(catalog, dense)
    assert replay.design == COMPLETE and replay.single_mask is None
    assert replay.mask[:, :TIERS].all() and replay.n == N_QUERIES
    assert not any("sparse logs" in n for n in replay.notes)
    singles = policies.single_models(replay)
    assert all(s.note == "" for s in singles)
    for j, s in enumerate(singles):
        assert s.points[0].quality == float(replay.realised_quality[np.arange(replay.n), j].mean())
    mix = policies.random_mix(replay, 0, 1)
    assert mix is not None and "where both" not in mix.note


@pytest.mark.parametrize("share", [0.15, 0.5])
def test_complete_case_when_it_keeps_95pct_of_the_outcomes(
    catalog: Catalog, dense: pd.DataFrame, share: float
) -> None:
    """Every tier on every query but one on part of them (GSM8K: 1 of 42 tiers on half the queries):
    complete case (that tier left out, as before) while that costs <= 5% of the recorded outcomes; with 5
    tiers, a tier on 15% holds 0.15 / 4.15 = 3.6% of them, on 50% 11% -> the masked design keeps it."""
    part = sorted(dense["tier"].unique())[1]
    ids = sorted(dense["query_id"].unique())[: round(share * N_QUERIES)]
    frame = dense[(dense["tier"] != part) | dense["query_id"].isin(ids)]
    replay = _replay(catalog, frame)
    assert replay.n == N_QUERIES
    if share < 0.2:
        assert replay.design == COMPLETE and part not in replay.tiers and replay.single_mask is None
        assert any("missing outcomes on > 5%" in n and part in n for n in replay.notes)
    else:
        assert replay.design == MASKED and part in replay.tiers
        single = replay.single_mask
        assert single is not None and single[:, replay.tiers.index(part)].sum() == len(ids)


def test_a_tier_recorded_on_too_few_queries_is_left_out_with_a_note(
    catalog: Catalog, sparse: pd.DataFrame
) -> None:
    rare = sorted(sparse["tier"].unique())[2]
    ids = sorted(sparse.loc[sparse["tier"] == rare, "query_id"].unique())[: MIN_RECORDED_QUERIES - 5]
    frame = sparse[(sparse["tier"] != rare) | sparse["query_id"].isin(ids)]
    replay = _replay(catalog, frame)
    assert replay.design == MASKED and rare not in replay.tiers and replay.n_single == TIERS - 1
    note = next(n for n in replay.notes if "fewer than" in n and "single pass" in n)
    assert f"{rare} ({MIN_RECORDED_QUERIES - 5}/" in note
    # a coverage bar of 70% leaves out every tier of 60%-coverage logs: no tier -> FailedPreconditionError
    from planner.errors import FailedPreconditionError

    with pytest.raises(FailedPreconditionError, match="recorded on fewer than"):
        _replay(catalog, sparse, min_tier_coverage=0.7)


def test_pair_routers_left_out_when_weak_and_strong_never_meet(catalog: Catalog, dense: pd.DataFrame) -> None:
    tiers = sorted(dense["tier"].unique())[:2]
    ids = sorted(dense["query_id"].unique())
    first, second = set(ids[: len(ids) // 2]), set(ids[len(ids) // 2 :])
    frame = dense[
        ((dense["tier"] == tiers[0]) & dense["query_id"].isin(first))
        | ((dense["tier"] == tiers[1]) & dense["query_id"].isin(second))
    ]
    report = evaluate(
        frame, catalog, CostModel(catalog), lambda tr: _prior(catalog).fit(tr), folds=2, simulate=False
    )
    names = {p.name for p in report.policies}
    assert "random_mix" not in names and "threshold_router" not in names and "planner" in names
    assert any("random_mix and threshold_router left out" in n for n in report.notes)
    assert report.figures["targets"]["aiq_vs_threshold_and_knn"]["met"] is False


def test_cli_evaluates_a_sparse_run_file(catalog: Catalog, tmp_path: Path) -> None:
    path = tmp_path / "sparse.csv"
    _thin(_demo(catalog), KEEP, seed=4).to_csv(path, index=False)
    result = CliRunner().invoke(
        app,
        ["evaluate-policy", "--runs", str(path), "--predictor", "prior", "--folds", "2", "--no-simulate",
         "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["figures"]["coverage"]["design"] == MASKED and "planner" in out["figures"]["routers"]


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31 - 1), st.floats(0.0, 1.0))
def test_plans_pick_recorded_options_when_any_column_may_be_missing(seed: int, budget_share: float) -> None:
    rng = np.random.default_rng(seed)
    n, m = 30, 5
    value, cost = rng.random((n, m)), rng.random((n, m)) + 0.01
    feasible = rng.random((n, m)) < 0.5
    feasible[np.arange(n), rng.integers(0, m, n)] = True  # at least one option per query, any column
    rows = np.arange(n)
    floor = float(np.where(feasible, cost, np.inf).min(axis=1).mean())
    budget = floor + budget_share * (float(np.where(feasible, cost, 0).max(axis=1).mean()) - floor)
    choice, _ = policies.plan_choice(value, cost, budget, feasible=feasible)
    assert feasible[rows, choice].all()
    for lam in (0.0, 1.0, 100.0):
        assert feasible[rows, policies.lagrangian_choice(value, cost, lam, feasible)].all()
