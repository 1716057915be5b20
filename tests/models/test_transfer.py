"""Recalibration on a new task, strategy offsets from logged strategy runs, several samples per query."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest

from models.api import Query
from models.data import prepare_runs, queries_from_frame
from models.evaluate import evaluate, split_queries
from models.predictor import DifficultyPredictor
from planner.catalog import load_catalog
from planner.demo import demo_records


@pytest.fixture(scope="module")
def demo() -> pd.DataFrame:
    catalog = load_catalog()
    return prepare_runs(pd.DataFrame(demo_records(catalog, 900, seed=3)), catalog.run_name_map())


@pytest.fixture(scope="module")
def fitted(demo: pd.DataFrame) -> DifficultyPredictor:
    return DifficultyPredictor(n_components=8, mf_rank=2).fit(demo[demo["task"] != "reasoning"])


def test_repeated_samples_and_strategy_runs_are_used(fitted: DifficultyPredictor) -> None:
    assert fitted.correlation_.source == "fitted"
    assert set(fitted.evidence_) == {"cot", "vote3"}
    catalog = load_catalog()
    cot = next(s for s in catalog.strategies if s.name == "cot")
    assert fitted.strategy_offset(cot) > 0.1  # the demo's chain of thought adds +0.4 logits
    unseen = next(s for s in catalog.strategies if s.name == "bon8")
    assert fitted.strategy_offset(unseen) == 0.0
    p = np.array([[0.3, 0.6], [0.8, 0.9]])
    assert np.all(fitted.quality_fn(p, cot) > p)  # tier-agnostic form for planner.options
    assert fitted.quality_fn(p, unseen).shape == p.shape


def test_recalibration_on_200_runs_of_a_new_task_helps(
    fitted: DifficultyPredictor, demo: pd.DataFrame
) -> None:
    new = demo[(demo["task"] == "reasoning") & (demo["strategy"] == "single")].copy()
    # the new task is much harder than anything in training: 40% of its successes turn into failures
    rng = np.random.default_rng(0)
    new["score"] = new["score"] * (rng.random(len(new)) < 0.6)
    pool, test = split_queries(new, 0.5, seed=0)
    before = evaluate("before", fitted, test)
    recal = copy.deepcopy(fitted).recalibrate(pool.sample(200, random_state=0))
    after = evaluate("after", recal, test)
    assert after.pooled.log_loss < before.pooled.log_loss - 0.05
    assert after.pooled.ece < before.pooled.ece / 2
    assert recal.recalibrated_on_ == 200
    # the original is untouched (recalibrate copies what it changes)
    assert evaluate("again", fitted, test).pooled.log_loss == pytest.approx(before.pooled.log_loss)
    np.testing.assert_allclose(
        recal.score_one(_first_query(test))["p_correct"], recal.forecast([_first_query(test)]).p_correct[0]
    )


def _first_query(frame: pd.DataFrame) -> Query:
    return queries_from_frame(frame)[0]


def test_recalibrated_predictor_with_strategy_evidence_round_trips(
    fitted: DifficultyPredictor, demo: pd.DataFrame
) -> None:
    from models import persist

    new = demo[(demo["task"] == "reasoning") & (demo["strategy"] == "single")]
    recal = copy.deepcopy(fitted).recalibrate(new.head(300))
    loaded = persist.loads(persist.dumps(recal))
    queries = queries_from_frame(new)[:10]
    np.testing.assert_array_equal(loaded.forecast(queries).p_correct, recal.forecast(queries).p_correct)
    cot = next(s for s in load_catalog().strategies if s.name == "cot")
    assert loaded.strategy_offset(cot) == pytest.approx(recal.strategy_offset(cot))
