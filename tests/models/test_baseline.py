"""PriorForecaster: per-tier prior accuracy and token quantiles satisfy the Forecaster contract."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.api import Forecaster, Query
from models.baseline import PriorForecaster
from planner.errors import InvalidArgumentError


def _runs() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "query_id": ["a", "b", "c", "a", "b", "c"],
            "model": ["big", "big", "big", "small", "small", "small"],
            "correct": [1, 1, 0, 0, 1, 0],
            "output_chars": [400, 800, 1200, 40, 80, 120],
            "prompt": ["x"] * 6,
        }
    )


def test_prior_forecaster_per_tier_means_and_shapes() -> None:
    model = PriorForecaster(prior_strength=0.0).fit(_runs())
    assert isinstance(model, Forecaster)
    assert model.tiers == ("big", "small")
    fc = model.forecast([Query(prompt="hello world"), Query(prompt_tokens=7)])
    np.testing.assert_allclose(fc.p_correct, [[2 / 3, 1 / 3]] * 2)
    assert fc.output_tokens_p50[0, 0] == 200.0
    assert np.all(fc.output_tokens_p90 >= fc.output_tokens_p50)
    assert fc.input_tokens.tolist() == [3.0, 7.0]


def test_prior_forecaster_maps_run_names_to_tiers() -> None:
    model = PriorForecaster(run_name_map={"big": "T", "small": "T"}).fit(_runs())
    assert model.tiers == ("T",)


def test_prior_forecaster_rejects_frames_without_outcome() -> None:
    with pytest.raises(InvalidArgumentError, match="correct"):
        PriorForecaster().fit(pd.DataFrame({"query_id": ["a"], "model": ["m"]}))


def test_prior_forecaster_on_gsm8k(gsm8k_small: pd.DataFrame) -> None:
    model = PriorForecaster().fit(gsm8k_small)
    fc = model.forecast([Query(prompt="What is 2+2?")])
    assert fc.p_correct.shape == (1, len(model.tiers))
    assert 0.4 < fc.p_correct.min() < fc.p_correct.max() < 1.0
