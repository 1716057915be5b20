"""Interaction calibration inside `DifficultyPredictor`: slopes follow out-of-fold evidence, the batch and the
compiled one-query paths agree, skops artifacts keep it, and artifacts saved before it existed load as raw."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from scipy.special import expit

from models import interaction as ia
from models import persist
from models.api import Query
from models.data import prepare_runs, queries_from_frame
from models.predictor import DifficultyPredictor
from planner.errors import InvalidArgumentError

TIERS = ("a", "b", "c", "d")
GROUPS = (["alpha", "apple", "atlas", "amber"], ["beta", "berry", "basin", "birch"])
SKILL = np.array([[1.5, -1.5, 1.0, -1.0], [-1.5, 1.5, -1.0, 1.0]])
"""Logit skill of each tier on each word group: the real (query x tier) interaction of `_frame`."""
SMALL: dict[str, Any] = {"n_components": 4, "mf_rank": 2, "neighbours": 10}


def _frame(real: bool, n: int = 300, seed: int = 0) -> pd.DataFrame:
    """Runs of `n` queries x 4 tiers; each prompt's words come from one group. With `real`, a tier's skill
    depends on the prompt's group (an interaction the features reveal); else on a coin flip per query (a
    pure-noise interaction: nothing in the query predicts it)."""
    rng = np.random.default_rng(seed)
    ability = np.array([0.5, 0.5, 0.0, 0.3])
    rows = []
    for q in range(n):
        group = int(rng.integers(2))
        ease = rng.normal(0.5, 1.0)
        words = [str(w) for w in rng.choice(GROUPS[group], size=5)] + ["hard"] * int(ease < 0)
        skill = SKILL[group if real else int(rng.integers(2))]
        p = expit(ability + ease + skill)
        for j, tier in enumerate(TIERS):
            rows.append(
                {
                    "query_id": f"q{q}",
                    "model": tier,
                    "prompt": " ".join(words),
                    "correct": int(rng.random() < p[j]),
                    "output_chars": 400,
                }
            )
    return prepare_runs(pd.DataFrame(rows))


@pytest.fixture(scope="module")
def real_fit() -> DifficultyPredictor:
    return DifficultyPredictor(**SMALL, interaction="calibrated").fit(_frame(real=True))


@pytest.fixture(scope="module")
def noise_fit() -> DifficultyPredictor:
    return DifficultyPredictor(**SMALL, interaction="calibrated").fit(_frame(real=False))


# ---- the slope estimator on fixed tables ------------------------------------------------------------------
def _table_world(spurious: bool, n: int = 3000, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ease = rng.normal(1.0, 1.5, size=(n, 1))
    interaction = rng.normal(0.0, 1.0, size=(n, 3))
    ability = np.array([0.0, 0.3, -0.3])
    truth = expit(ability + ease + interaction)
    y = (rng.random(truth.shape) < truth).astype(float)
    p = expit(ability + ease + rng.permutation(interaction)) if spurious else truth
    p0 = ia.additive(p, ia.fit_ability(p, np.zeros(n, dtype=np.intp), 0), np.zeros(n, dtype=np.intp))
    return p, p0, y


@pytest.mark.parametrize("spurious", [False, True])
def test_fit_slopes_keep_a_real_interaction_and_drop_a_spurious_one(spurious: bool) -> None:
    slopes = ia.fit_slopes(*_table_world(spurious))
    if spurious:
        assert slopes.max() < 0.15
    else:
        assert slopes.min() > 0.85


def test_unobserved_cells_are_ignored_and_no_interaction_gives_zero_slopes() -> None:
    p, p0, y = _table_world(False)
    y[::2, 0] = np.nan
    assert ia.fit_slopes(p, p0, y).min() > 0.8
    assert (ia.fit_slopes(p0, p0, y) == 0.0).all()  # no predicted interaction: nothing to keep


def test_additive_part_keeps_every_tier_mean_and_one_query_matches_the_batch() -> None:
    p, _, _ = _table_world(False, n=500)
    task = np.array([0, 1] * 250)
    ability = ia.fit_ability(p, task, 2)
    assert ability.shape == (3, 3)
    p0 = ia.additive(p, ability, task)
    for k in (0, 1):
        np.testing.assert_allclose(p0[task == k].mean(axis=0), p[task == k].mean(axis=0), atol=1e-6)
    slope = np.array([0.2, 0.5, 1.0])
    batch = ia.apply(p, ability, slope, task)
    one = np.stack([ia.apply_one(p[i], ability[task[i]], slope) for i in range(20)])
    np.testing.assert_allclose(one, batch[:20], rtol=0, atol=1e-12)


# ---- inside the predictor -------------------------------------------------------------------------------
def test_predictor_slopes_near_one_for_a_real_interaction(real_fit: DifficultyPredictor) -> None:
    slopes = np.array(list(real_fit.interaction_slopes().values()))
    assert slopes.min() > 0.8


def test_predictor_slopes_near_zero_for_a_noise_interaction(
    real_fit: DifficultyPredictor, noise_fit: DifficultyPredictor
) -> None:
    slopes = np.array(list(noise_fit.interaction_slopes().values()))
    assert slopes.max() < 0.2
    assert slopes.mean() < np.mean(list(real_fit.interaction_slopes().values())) - 0.6


def test_batch_and_compiled_one_query_paths_agree_with_calibration(noise_fit: DifficultyPredictor) -> None:
    assert noise_fit.interaction == "calibrated" and min(noise_fit.interaction_slopes().values()) < 1.0
    queries = queries_from_frame(_frame(real=False, n=30, seed=7))
    queries.append(Query(query_id="unseen-task", prompt="alpha beta", task="elsewhere"))
    batch = noise_fit.forecast_batch(queries)
    for i, q in enumerate(queries):
        one = noise_fit.score_one(q)
        np.testing.assert_allclose(one["p_correct"], batch.p_correct[i], rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(noise_fit.forecast([q]).p_correct[0], batch.p_correct[i], rtol=1e-9)


def test_calibration_moves_forecasts_towards_the_additive_part(noise_fit: DifficultyPredictor) -> None:
    raw = DifficultyPredictor(**SMALL, interaction="raw").fit(_frame(real=False))
    queries = queries_from_frame(_frame(real=False))
    p_raw, p_cal = raw.forecast_batch(queries).p_correct, noise_fit.forecast_batch(queries).p_correct
    assert "interaction_slope_" not in vars(raw)
    np.testing.assert_allclose(p_cal.mean(axis=0), p_raw.mean(axis=0), atol=0.01)  # tier means kept
    task = np.zeros(len(queries), dtype=np.intp)
    spread_raw = np.std(p_raw - ia.additive(p_raw, noise_fit.interaction_ability_, task))
    spread_cal = np.std(p_cal - ia.additive(p_raw, noise_fit.interaction_ability_, task))
    assert spread_cal < spread_raw


def test_calibrated_artifact_round_trip(noise_fit: DifficultyPredictor) -> None:
    data = persist.dumps(noise_fit)
    assert persist.untrusted_types(data) == []
    loaded = persist.loads(data)
    assert loaded.interaction_slopes() == noise_fit.interaction_slopes()
    queries = queries_from_frame(_frame(real=False, n=10, seed=3))
    np.testing.assert_array_equal(
        loaded.forecast_batch(queries).p_correct, noise_fit.forecast_batch(queries).p_correct
    )
    np.testing.assert_allclose(
        loaded.score_one(queries[0])["p_correct"], noise_fit.score_one(queries[0])["p_correct"]
    )


def test_artifact_saved_before_the_parameter_existed_loads_as_raw() -> None:
    import copy

    frame = _frame(real=False, n=120)
    raw = DifficultyPredictor(**SMALL, interaction="raw").fit(frame)
    old = copy.deepcopy(raw)
    for name in ("interaction", "interaction_folds"):
        del old.__dict__[name]  # the state an artifact of the previous class held
    loaded = persist.loads(sio.dumps(old))
    assert loaded.get_params()["interaction"] == "raw"
    assert set(loaded.interaction_slopes().values()) == {1.0}
    queries = queries_from_frame(frame)[:10]
    expected = raw.forecast_batch(queries).p_correct
    np.testing.assert_allclose(loaded.forecast_batch(queries).p_correct, expected)
    np.testing.assert_allclose(loaded.score_one(queries[0])["p_correct"], expected[0])


def test_recalibration_keeps_the_paths_equal_and_copies_the_ability(noise_fit: DifficultyPredictor) -> None:
    import copy

    model = copy.deepcopy(noise_fit)
    before = model.interaction_ability_
    new_task = _frame(real=False, n=60, seed=11).assign(task="new")
    model.recalibrate(new_task)
    assert model.interaction_ability_ is not before
    queries = queries_from_frame(new_task.assign(query_id=new_task["query_id"] + "x"))[:10]
    batch = model.forecast_batch(queries).p_correct
    one = np.stack([model.score_one(q)["p_correct"] for q in queries])
    np.testing.assert_allclose(one, batch, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize(("name", "value"), [("interaction", "shrunk"), ("interaction_folds", 1)])
def test_bad_interaction_parameters_are_rejected(name: str, value: object) -> None:
    with pytest.raises(InvalidArgumentError, match=name):
        DifficultyPredictor().set_params(**{name: value}).fit(_frame(real=True, n=60))
