"""Which forecaster the evaluation trains: the learned difficulty predictor when installed, else the prior.

- `prior`: `models.baseline.PriorForecaster` (per-tier accuracy, query-blind);
- `difficulty`: `models.predictor.DifficultyPredictor` as it is;
- `difficulty+interaction`: the same with its (query x tier) interaction scaled per tier by the slope it shows
  out of fold on the training runs (`planner.evaluation.interaction`);
- `auto`: `difficulty` when installed, else `prior`.
"""

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
    DIFFICULTY_INTERACTION = "difficulty+interaction"


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
        if kind is not PredictorKind.AUTO:
            raise FailedPreconditionError("models.predictor.DifficultyPredictor is not installed") from None
        return PriorForecaster(dict(run_name_map)).fit(train)

    def difficulty(frame: pd.DataFrame) -> Forecaster:
        model: Forecaster = DifficultyPredictor(run_name_map=dict(run_name_map)).fit(frame)
        return model

    if kind is PredictorKind.DIFFICULTY_INTERACTION:
        from planner.evaluation.interaction import InteractionCalibrated

        return InteractionCalibrated(difficulty).fit(train)

    return difficulty(train)
