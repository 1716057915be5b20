"""DifficultyPredictor: estimator and Forecaster contracts, strategies, hot path, recalibration."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from models.api import Forecaster, Query
from models.data import queries_from_frame
from models.features import SMALL_BATCH
from models.predictor import DifficultyPredictor
from planner.catalog import Strategy, StrategyKind
from planner.errors import InvalidArgumentError

VOTE3 = Strategy(name="vote3", kind=StrategyKind.MAJORITY_VOTE, samples=3)
BON4 = Strategy(name="bon4", kind=StrategyKind.BEST_OF_N, samples=4, verifier_accuracy=0.8)
SINGLE = Strategy(name="single")


@pytest.fixture(scope="module")
def fitted(gsm8k_small: pd.DataFrame) -> DifficultyPredictor:
    return DifficultyPredictor(n_components=16).fit(gsm8k_small)


def test_estimator_contract_clone_params_and_not_fitted() -> None:
    # parametrize_with_checks feeds numeric X arrays; this estimator is fitted on a runs frame (text, ids,
    # tiers), so the generic checks do not apply. The contract parts that do are tested here.
    model = DifficultyPredictor(n_components=8, random_state=3)
    assert clone(model).get_params() == model.get_params()
    assert "run_name_map" in model.get_params()
    assert not [k for k in vars(model) if k.endswith("_")]
    with pytest.raises(NotFittedError):
        model.forecast([Query(prompt="x")])
    with pytest.raises(NotFittedError):
        _ = model.tiers


def test_forecast_satisfies_the_forecaster_contract(
    fitted: DifficultyPredictor, gsm8k_small: pd.DataFrame
) -> None:
    assert isinstance(fitted, Forecaster)
    queries = queries_from_frame(gsm8k_small)[:50]
    fc = fitted.forecast(queries)
    assert fc.tiers == fitted.tiers == tuple(sorted(gsm8k_small["tier"].unique()))
    assert fc.p_correct.shape == (50, len(fitted.tiers))
    assert np.all((fc.p_correct > 0) & (fc.p_correct < 1))
    assert np.all(fc.output_tokens_p90 >= fc.output_tokens_p50)
    assert np.all(fc.output_tokens_p50 > 0)


def test_score_one_matches_batch_forecast(fitted: DifficultyPredictor, gsm8k_small: pd.DataFrame) -> None:
    query, other = queries_from_frame(gsm8k_small)[7:9]
    fc = fitted.forecast([query, other])  # the batch path (one query alone takes the hot path)
    np.testing.assert_allclose(fitted.forecast_batch([query]).p_correct[0], fc.p_correct[0], rtol=1e-9)
    one = fitted.score_one(query, (SINGLE, VOTE3, BON4))
    alone = fitted.forecast([query])
    np.testing.assert_allclose(alone.p_correct[0], fc.p_correct[0], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(alone.output_tokens_p90[0], fc.output_tokens_p90[0], rtol=1e-9)
    np.testing.assert_allclose(one["p_correct"], fc.p_correct[0], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(one["output_tokens_p50"], fc.output_tokens_p50[0], rtol=1e-9)
    np.testing.assert_allclose(one["vote3"], fitted.quality(fc, VOTE3)[0], atol=1e-12)
    np.testing.assert_allclose(fitted.quality(fc, VOTE3), fitted.exact_quality(fc, VOTE3), atol=1e-4)
    np.testing.assert_allclose(one["bon4"], fitted.exact_quality(fc, BON4)[0], atol=1e-4)


def test_unseen_query_and_task_get_a_sensible_forecast(fitted: DifficultyPredictor) -> None:
    fc = fitted.forecast(
        [Query(prompt="", task="never-seen"), Query(prompt="Write a haiku.", tags=("poetry",))]
    )
    assert np.all(np.isfinite(fc.p_correct)) and np.all(np.isfinite(fc.output_tokens_p50))


def test_quality_is_monotone_in_samples_and_keeps_shape(fitted: DifficultyPredictor) -> None:
    fc = fitted.forecast([Query(prompt="What is 3 + 4?"), Query(prompt="A train leaves at 3pm ...")])
    single = fitted.quality(fc, SINGLE)
    bon = fitted.quality(fc, BON4)
    assert single.shape == bon.shape == fc.p_correct.shape
    np.testing.assert_allclose(single, fc.p_correct)
    assert np.all(bon >= single - 1e-9)


def test_fit_reports_progress(gsm8k_small: pd.DataFrame) -> None:
    seen: list[float] = []
    DifficultyPredictor(n_components=4, mf_rank=0, calibration="none").fit(
        gsm8k_small, progress=lambda f, _m: seen.append(f)
    )
    assert seen[0] == 0.0 and seen[-1] == 1.0 and seen == sorted(seen)


def test_recalibrate_needs_enough_runs(fitted: DifficultyPredictor, gsm8k_small: pd.DataFrame) -> None:
    with pytest.raises(InvalidArgumentError, match="recalibration"):
        fitted.recalibrate(gsm8k_small.head(5))  # refused before anything is changed


def test_strategy_tokens_per_query_and_tier(fitted: DifficultyPredictor) -> None:
    fc = fitted.forecast([Query(prompt="What is 3 + 4?", prompt_tokens=10)])
    single = fitted.tokens(fc, SINGLE)
    np.testing.assert_allclose(single["output_p50"], fc.output_tokens_p50, rtol=1e-6)
    np.testing.assert_allclose(single["input"], 10.0)
    vote = fitted.tokens(fc, VOTE3)
    assert np.all(vote["output_p50"] > 2 * fc.output_tokens_p50)
    assert np.all(vote["output_p90"] >= vote["output_p50"])
    np.testing.assert_allclose(vote["input"], 30.0)


def test_small_and_large_batches_vectorise_text_alike(
    fitted: DifficultyPredictor, gsm8k_small: pd.DataFrame
) -> None:
    texts = [q.prompt for q in queries_from_frame(gsm8k_small)[:40]] + ["", "zzz qqq unknownword", "7 + 5"]
    featurizer = fitted.featurizer_
    rows = np.array([featurizer._text_row(t) for t in texts])
    np.testing.assert_allclose(rows, featurizer._text_sparse(texts), rtol=1e-10, atol=1e-12)
    assert len(texts) > SMALL_BATCH  # `_text` takes the sparse path here and the row path for small batches
    small, large = featurizer._text(texts[:5]), featurizer._text(texts)
    np.testing.assert_allclose(small, large[:5], rtol=1e-10, atol=1e-12)
