"""Which forecaster the evaluation trains: the learned difficulty predictor when installed, else the prior.

- `prior`: `models.baseline.PriorForecaster` (per-tier accuracy, query-blind);
- `difficulty`: `models.predictor.DifficultyPredictor` with its default parameters (what the server deploys);
- `difficulty+interaction`: the same with `interaction="calibrated"` (its (query x tier) interaction scaled
  per tier by the slope it shows out of fold on the training runs, `models.interaction`);
- `difficulty-raw`: the same with `interaction="raw"` (the success model's forecast as it is);
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
    DIFFICULTY_RAW = "difficulty-raw"


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

    model = DifficultyPredictor(run_name_map=dict(run_name_map))
    if kind is PredictorKind.DIFFICULTY_INTERACTION:
        model.set_params(interaction="calibrated")
    elif kind is PredictorKind.DIFFICULTY_RAW:
        model.set_params(interaction="raw")
    fitted: Forecaster = model.fit(train)
    return fitted
