"""Which forecaster the evaluation trains: the learned difficulty predictor when installed, else the prior."""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

import pandas as pd

from models.api import Forecaster
from models.baseline import PriorForecaster
from planner.errors import FailedPreconditionError, InvalidArgumentError


class PredictorKind(StrEnum):
    AUTO = "auto"
    PRIOR = "prior"
    DIFFICULTY = "difficulty"


def fit_forecaster(
    kind: PredictorKind | str, train: pd.DataFrame, run_name_map: Mapping[str, str]
) -> Forecaster:
    """Fit the chosen forecaster on a prepared training frame."""
    try:
        kind = PredictorKind(kind)
    except ValueError:
        raise InvalidArgumentError.for_field(
            "predictor", kind, f"must be one of {[k.value for k in PredictorKind]}"
        ) from None
    if kind is PredictorKind.PRIOR:
        return PriorForecaster(dict(run_name_map)).fit(train)
    try:
        from models.predictor import DifficultyPredictor
    except ImportError:
        if kind is PredictorKind.DIFFICULTY:
            raise FailedPreconditionError("models.predictor.DifficultyPredictor is not installed") from None
        return PriorForecaster(dict(run_name_map)).fit(train)
    model: Forecaster = DifficultyPredictor(run_name_map=dict(run_name_map)).fit(train)
    return model
