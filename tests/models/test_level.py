"""Level uncertainty (`models.level`) and the level errors forecasters attach to their forecasts."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest

from models.api import Forecast, Query
from models.baseline import PriorForecaster
from models.data import queries_from_frame
from models.level import MAX_SE, tier_level_se
from models.predictor import DifficultyPredictor


def test_binary_scores_follow_the_delta_method() -> None:
    # tier 0: 90 of 100 right; tier 1: 60 of 100
    score = np.r_[np.ones(90), np.zeros(10), np.ones(60), np.zeros(40)]
    tier = np.r_[np.zeros(100, int), np.ones(100, int)]
    se = tier_level_se(tier, score, 2)
    assert se.shape == (2,)
    for j, p in enumerate((0.9, 0.6)):
        var = p * (1 - p) * 100 / 99  # sample variance
        ps = (100 * p + 1) / 102  # smoothed mean
        assert se[j] == pytest.approx(np.sqrt(var / 100) / (ps * (1 - ps)), rel=1e-9)


def test_more_runs_narrow_the_error_and_graded_scores_are_tighter() -> None:
    rng = np.random.default_rng(0)
    few = tier_level_se(np.zeros(50, int), rng.random(50) < 0.8, 1)
    many = tier_level_se(np.zeros(5000, int), rng.random(5000) < 0.8, 1)
    assert many[0] < few[0] / 5
    graded = tier_level_se(np.zeros(500, int), rng.uniform(0.7, 0.9, 500), 1)
    binary = tier_level_se(np.zeros(500, int), rng.random(500) < 0.8, 1)
    assert graded[0] < binary[0] / 3


def test_extremes_stay_finite_and_unseen_tiers_get_the_cap() -> None:
    se = tier_level_se(np.array([0, 0, 0, 1]), np.array([1.0, 1.0, 1.0, 0.0]), 3)
    assert np.all(np.isfinite(se)) and 0 < se[0] <= MAX_SE and 0 < se[1] <= MAX_SE
    assert se[2] == MAX_SE  # no runs at all


def test_mismatched_arrays_are_rejected() -> None:
    with pytest.raises(ValueError, match="one shape"):
        tier_level_se(np.zeros(2, int), np.zeros(3), 1)


def test_forecast_takes_level_errors_with_their_groups_only() -> None:
    base = dict(
        tiers=("a", "b"),
        p_correct=np.full((2, 2), 0.5),
        output_tokens_p50=np.ones((2, 2)),
        output_tokens_p90=np.ones((2, 2)),
        input_tokens=np.ones(2),
    )
    Forecast(**base, level_se=np.ones((2, 2)), level_group=np.zeros(2, int))
    with pytest.raises(ValueError, match="both or neither"):
        Forecast(**base, level_se=np.ones((2, 2)))
    with pytest.raises(ValueError, match="level_se has shape"):
        Forecast(**base, level_se=np.ones((2, 3)), level_group=np.zeros(2, int))


@pytest.fixture(scope="module")
def fitted(gsm8k_small: pd.DataFrame) -> DifficultyPredictor:
    return DifficultyPredictor(n_components=16, interaction="raw").fit(gsm8k_small)


def test_predictor_forecasts_carry_pooled_level_errors(
    fitted: DifficultyPredictor, gsm8k_small: pd.DataFrame
) -> None:
    assert fitted.level_se_.shape == (len(fitted.tiers_),)
    queries = [*queries_from_frame(gsm8k_small)[:3], Query(prompt="x", task="never-seen")]
    fc = fitted.forecast(queries)
    assert fc.level_se is not None and fc.level_group is not None
    for i in range(4):  # every task, seen or not: the tier's pooled error, one shared group
        np.testing.assert_allclose(fc.level_se[i], fitted.level_se_)
    assert not fc.level_group.any()
    one = fitted.forecast(queries[:1])  # the one-query hot path gives the same
    assert one.level_se is not None
    np.testing.assert_allclose(one.level_se[0], fc.level_se[0])
    # 400 queries per tier: a level is known to about a tenth of a logit, tighter for tiers near 50%
    assert 0.05 < float(np.median(fitted.level_se_)) < 0.4
    runs = gsm8k_small[gsm8k_small["tier"] == fitted.tiers_[0]]
    p = (runs["score"].sum() + 1) / (len(runs) + 2)
    assert fitted.level_se_[0] == pytest.approx(np.sqrt(runs["score"].var() / len(runs)) / (p * (1 - p)))


def test_recalibration_takes_its_level_errors_from_the_new_runs(
    fitted: DifficultyPredictor, gsm8k_small: pd.DataFrame
) -> None:
    recal = copy.deepcopy(fitted).recalibrate(gsm8k_small.sample(300, random_state=0))
    covered = sorted(set(gsm8k_small.sample(300, random_state=0)["tier"]))
    j = fitted.tiers_.index(covered[0])
    assert recal.level_se_[j] > 2 * fitted.level_se_[j]  # few runs per tier: a wider error


def test_artifacts_without_level_errors_forecast_without_them(
    fitted: DifficultyPredictor, gsm8k_small: pd.DataFrame
) -> None:
    old = copy.deepcopy(fitted)
    del old.__dict__["level_se_"]
    fc = old.forecast(queries_from_frame(gsm8k_small)[:2])
    assert fc.level_se is None and fc.level_group is None


def test_prior_forecaster_gives_one_pooled_group(gsm8k_small: pd.DataFrame) -> None:
    prior = PriorForecaster().fit(gsm8k_small)
    for n in (1, 3):
        fc = prior.forecast(queries_from_frame(gsm8k_small)[:n])
        assert fc.level_se is not None and fc.level_group is not None
        assert fc.level_se.shape == (n, len(prior.tiers_)) and not fc.level_group.any()
        np.testing.assert_allclose(fc.level_se[0], prior.level_se_)
