"""The replay with recorded non-single strategies (cot, majority vote) from the seeded demo history.

Real catalog, cost model, forecasters and solver; the demo records cot on ~15% and vote3 (with its extra
single samples) on ~20% of the queries of every tier."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.baseline import PriorForecaster
from models.data import prepare_runs
from models.predictor import DifficultyPredictor
from planner.catalog import Catalog, StrategyKind, load_catalog
from planner.demo import demo_records
from planner.errors import FailedPreconditionError
from planner.evaluation import policies
from planner.evaluation.harness import EvaluationReport, evaluate
from planner.evaluation.plots import plot_quality_cost
from planner.evaluation.recorded import MIN_STRATEGY_QUERIES
from planner.evaluation.replay import CrossFitForecaster, Replay, build_replay, keyed, query_folds
from simulator.costmodel import CostModel

N_QUERIES = 240
TIERS = 4


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


@pytest.fixture(scope="module")
def runs(catalog: Catalog) -> pd.DataFrame:
    """Demo runs of the first few demo tiers (single, cot and vote3)."""
    frame = pd.DataFrame(demo_records(catalog, N_QUERIES, seed=3))
    keep = sorted(frame["tier"].unique())[:TIERS]
    return prepare_runs(frame[frame["tier"].isin(keep)], catalog.run_name_map())


def _prior(catalog: Catalog) -> PriorForecaster:
    return PriorForecaster(catalog.run_name_map())


@pytest.fixture(scope="module")
def replay(catalog: Catalog, runs: pd.DataFrame) -> Replay:
    splits = query_folds(keyed(runs), 2, seed=0)
    forecaster = CrossFitForecaster.fit(splits, lambda tr: _prior(catalog).fit(tr))
    test = pd.concat([s.test for s in splits], ignore_index=True)
    return build_replay(catalog, CostModel(catalog), forecaster, test)


@pytest.fixture(scope="module")
def report(catalog: Catalog, runs: pd.DataFrame) -> EvaluationReport:
    def difficulty(train: pd.DataFrame) -> DifficultyPredictor:
        return DifficultyPredictor(run_name_map=catalog.run_name_map()).fit(train)

    return evaluate(runs, catalog, CostModel(catalog), difficulty, folds=2, n_budgets=8, simulate=False)


def test_replay_offers_recorded_strategies_where_recorded(replay: Replay, runs: pd.DataFrame) -> None:
    assert replay.n == N_QUERIES and replay.n_single == TIERS
    strategies = {replay.options.options[j].strategy for j in replay.strategy_columns()}
    assert strategies == {"cot", "vote3"}
    assert [o.strategy for o in replay.options.options[:TIERS]] == ["single"] * TIERS
    mask = replay.mask
    assert mask[:, :TIERS].all()
    for j in replay.strategy_columns():
        covered = int(mask[:, j].sum())
        assert MIN_STRATEGY_QUERIES <= covered < replay.n
        assert np.isnan(replay.realised_quality[~mask[:, j], j]).all()
        assert np.isfinite(replay.realised_cost[mask[:, j], j]).all()
        assert np.isfinite(replay.predicted.quality[:, j]).all()
    # realised quality of (query, tier, strategy) = the recorded score of that run
    j = replay.strategy_columns()[0]
    option = replay.options.options[j]
    recorded = keyed(runs)[(runs["tier"] == option.tier) & (runs["strategy"] == option.strategy)]
    score = recorded.groupby("query_key")["score"].mean()
    rows = np.flatnonzero(mask[:, j])
    keys = [f"{replay.queries[i].task}\x1f{replay.queries[i].query_id}" for i in rows]
    np.testing.assert_allclose(replay.realised_quality[rows, j], score.reindex(keys).to_numpy(float))
    with pytest.raises(ValueError, match="not recorded"):
        replay.realise(np.full(replay.n, j, dtype=np.intp))


def test_strategy_cost_is_the_cost_model_at_the_recorded_total_tokens(
    replay: Replay, runs: pd.DataFrame, catalog: Catalog
) -> None:
    cost_model = CostModel(catalog)
    frame = keyed(runs)
    for j in replay.strategy_columns():
        option = replay.options.options[j]
        strategy = next(s for s in catalog.strategies if s.name == option.strategy)
        i = int(np.flatnonzero(replay.mask[:, j])[0])
        query = replay.queries[i]
        run = frame[
            (frame["query_key"] == f"{query.task}\x1f{query.query_id}")
            & (frame["tier"] == option.tier)
            & (frame["strategy"] == option.strategy)
        ]
        total = float(run["output_tokens"].mean())
        expected = cost_model.option_cost(
            catalog.tier(option.tier),
            strategy,
            next(t for t in catalog.targets if t.name == option.target),
            np.array([float(query.input_tokens)]),
            np.array([total / strategy.output_multiplier]),
        ).usd[0]
        assert replay.realised_cost[i, j] == pytest.approx(expected, rel=1e-9)
        # the demo records vote-k / cot totals as k / 3 plain answers: the same cost basis as the single pass
        single = replay.tiers.index(option.tier)
        assert replay.realised_cost[i, j] > replay.realised_cost[i, single]


def test_single_pass_prediction_is_the_forecast_and_strategies_use_the_response(replay: Replay) -> None:
    cols = [replay.forecast.tiers.index(t) for t in replay.tiers]
    np.testing.assert_allclose(
        replay.predicted.quality[:, :TIERS], np.clip(replay.forecast.p_correct[:, cols], 0, 1)
    )
    kinds = [replay.options.strategies[int(i)].kind for i in replay.options.strategy_of]
    votes = [j for j in replay.strategy_columns() if kinds[j] is StrategyKind.MAJORITY_VOTE]
    assert votes
    for j in replay.strategy_columns():  # the prior has no fitted response: cot's closed form is the forecast
        if kinds[j] is StrategyKind.CHAIN_OF_THOUGHT:
            single = replay.tiers.index(replay.options.options[j].tier)
            np.testing.assert_allclose(replay.predicted.quality[:, j], replay.predicted.quality[:, single])
    for j in votes:  # majority vote over 3 beats one sample where one sample is right more often than not
        single = replay.tiers.index(replay.options.options[j].tier)
        p = replay.predicted.quality[:, single]
        assert (replay.predicted.quality[p > 0.6, j] > p[p > 0.6]).all()


def test_planner_can_pick_strategies_and_baselines_stay_single(
    report: EvaluationReport, tmp_path: Path
) -> None:
    names = {p.name for p in report.policies}
    assert {"planner", "oracle", "uniform_self_consistency_realised", "knn_router"} <= names
    sc = report.policy("uniform_self_consistency_realised")
    assert sc.realised is True and len(sc.points) == TIERS and "vote3" in sc.note
    by_option = {o["option"]: o for o in report.figures["recorded_strategies"]["options"]}
    for point in sc.points:  # a vote recorded on part of the queries: the mean over those queries
        assert any(o["quality"] == pytest.approx(point.quality) for o in by_option.values())
    assert "uniform_self_consistency_realised" in report.figures["routers"]
    singles = [p for p in report.policies if p.kind == "single"]
    assert len(singles) == TIERS
    figures = report.figures["recorded_strategies"]
    assert {o["option"].split("/")[1].split("@")[0] for o in figures["options"]} == {"cot", "vote3"}
    top = figures["planner_strategy_share"]["at_highest_realised_quality"]
    assert top["queries_on_recorded_strategies"] > 0
    # every swept plan of the planner only uses strategies where they were recorded (realise checks)
    # and the oracle, over every recorded option, is at least as good as every single model
    oracle = report.policy("oracle").points[0]
    assert all(oracle.quality >= s.points[0].quality for s in singles)
    assert "recorded strategies" in " ".join(report.notes)
    assert "favours self-consistency" in " ".join(report.notes)  # votes recorded on part of the queries
    json.dumps(report.to_dict(), allow_nan=True)
    png = plot_quality_cost(report, tmp_path / "qc.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_single_only_frames_replay_as_before(catalog: Catalog, runs: pd.DataFrame) -> None:
    plain = runs[runs["strategy"] == "single"]
    splits = query_folds(keyed(plain), 2, seed=0)
    forecaster = CrossFitForecaster.fit(splits, lambda tr: _prior(catalog).fit(tr))
    test = pd.concat([s.test for s in splits], ignore_index=True)
    replay = build_replay(catalog, CostModel(catalog), forecaster, test)
    assert replay.available is None and replay.feasible is None
    assert len(replay.options) == replay.n_single == TIERS
    assert not replay.strategy_columns() and policies.uniform_self_consistency_realised(replay) is None
    cols = [replay.forecast.tiers.index(t) for t in replay.tiers]
    np.testing.assert_allclose(replay.predicted.quality, np.clip(replay.forecast.p_correct[:, cols], 0, 1))


def test_strategies_below_the_coverage_floor_are_left_out_and_noted(
    catalog: Catalog, runs: pd.DataFrame
) -> None:
    splits = query_folds(keyed(runs), 2, seed=0)
    forecaster = CrossFitForecaster.fit(splits, lambda tr: _prior(catalog).fit(tr))
    test = pd.concat([s.test for s in splits], ignore_index=True)
    replay = build_replay(catalog, CostModel(catalog), forecaster, test, min_strategy_coverage=0.5)
    assert not replay.strategy_columns()
    assert any("fewer than 120 of the 240" in n for n in replay.notes)


def test_one_priced_tier_raises_failed_precondition(catalog: Catalog, runs: pd.DataFrame) -> None:
    keep = sorted(runs["tier"].unique())[0]
    frame = runs.assign(tier=[t if t == keep else f"mystery-{t}" for t in runs["tier"]])
    with pytest.raises(FailedPreconditionError, match=r"at least 2 priced tiers.*1 remained"):
        evaluate(
            frame, catalog, CostModel(catalog), lambda tr: _prior(catalog).fit(tr), folds=2, simulate=False
        )


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31 - 1), st.floats(0.0, 1.0))
def test_plans_never_pick_an_unrecorded_option(seed: int, budget_share: float) -> None:
    rng = np.random.default_rng(seed)
    n, m = 30, 5
    value, cost = rng.random((n, m)), rng.random((n, m)) + 0.01
    feasible = rng.random((n, m)) < 0.4
    feasible[:, 0] = True  # the single pass is recorded everywhere
    rows = np.arange(n)
    floor = float(np.where(feasible, cost, np.inf).min(axis=1).mean())
    budget = floor + budget_share * (float(cost.max(axis=1).mean()) - floor)
    choice, _ = policies.plan_choice(value, cost, budget, feasible=feasible)
    assert feasible[rows, choice].all()
    assert feasible[rows, policies.lagrangian_choice(value, cost, 0.0, feasible)].all()
    grid = policies.budget_grid(cost, value, 4, feasible=feasible)
    assert grid[0] == pytest.approx(floor)


def test_interaction_calibrated_forecaster_keeps_the_base_strategy_response(
    catalog: Catalog, runs: pd.DataFrame
) -> None:
    from models.strategies import expected_quality
    from planner.evaluation.interaction import InteractionCalibrated
    from planner.evaluation.recorded import model_quality_fn

    model = InteractionCalibrated(lambda tr: _prior(catalog).fit(tr), fixed_slope=0.0).fit(runs)
    vote = next(s for s in catalog.strategies if s.name == "vote3")
    p = np.linspace(0.05, 0.95, 7)
    np.testing.assert_allclose(model_quality_fn(model)(p, vote), expected_quality(p, vote))
