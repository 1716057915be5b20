"""Predictor registry and lifecycle: train (background, with progress), evaluate, version, promote, roll back,
list, recalibrate for a new task; and the service's active predictor (loaded at start, hot-swapped on promote,
kept in sync with the store by a poller). Used by the CLI (`planner train`, `planner predictors ...`) and
`PredictorService`."""

from planner.predictors.active import ActivePredictor, install, load_active_predictor, startup_predictor
from planner.predictors.kinds import PredictorKind, default_kind, parse_kind, spec_for
from planner.predictors.lifecycle import (
    DEFAULT_HOLDOUT,
    Evaluation,
    TrainConfig,
    TrainingCancelledError,
    TrainProgress,
    TrainResult,
    TrainStage,
    evaluate_version,
    list_versions,
    load_version,
    promote_version,
    rollback_target,
    rollback_version,
    train_predictor,
)
from planner.predictors.metrics import EvaluationMetrics, TierMetrics
from planner.predictors.recalibrate import Recalibration, recalibrate_version

__all__ = [
    "DEFAULT_HOLDOUT",
    "ActivePredictor",
    "Evaluation",
    "EvaluationMetrics",
    "PredictorKind",
    "Recalibration",
    "TierMetrics",
    "TrainConfig",
    "TrainProgress",
    "TrainResult",
    "TrainStage",
    "TrainingCancelledError",
    "default_kind",
    "evaluate_version",
    "install",
    "list_versions",
    "load_active_predictor",
    "load_version",
    "parse_kind",
    "promote_version",
    "recalibrate_version",
    "rollback_target",
    "rollback_version",
    "spec_for",
    "startup_predictor",
    "train_predictor",
]
