"""The evaluation report: fit the predictor and its baselines on one split, score them side by side.

`compare` fits each named forecaster on the training runs (timing the fit), scores it on the held-out runs
with `models.evaluate.evaluate`, and returns a `Report` whose `to_dict()` is JSON-ready (NaN/inf become None).
Used by `planner evaluate` and `bench/predictors_quality.py`; the PNG comes from `models.plots`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from models.api import Forecaster
from models.baseline import PriorForecaster
from models.evaluate import Evaluation, evaluate, summary_rows
from models.predictor import DifficultyPredictor
from models.routers import KNNForecaster, MFForecaster
from planner.errors import InvalidArgumentError

BASELINES = ("prior", "knn", "mf")
"""Baselines `planner evaluate` can put beside the predictor."""


def make_forecaster(name: str, run_name_map: Mapping[str, str] | None, seed: int = 0) -> Any:
    """An unfitted forecaster by name: predictor, prior, knn or mf."""
    factories: dict[str, Callable[[], Any]] = {
        "predictor": lambda: DifficultyPredictor(run_name_map=run_name_map, random_state=seed),
        "prior": lambda: PriorForecaster(run_name_map=run_name_map),
        "knn": lambda: KNNForecaster(run_name_map=run_name_map, random_state=seed),
        "mf": lambda: MFForecaster(run_name_map=run_name_map, random_state=seed),
    }
    if name not in factories:
        raise InvalidArgumentError.for_field("forecaster", name, f"must be one of {sorted(factories)}")
    return factories[name]()


@dataclass(frozen=True)
class Report:
    """Side-by-side evaluation of several forecasters on one held-out split."""

    evaluations: tuple[Evaluation, ...]
    n_train_runs: int
    n_test_runs: int
    n_test_queries: int
    config: dict[str, Any] = field(default_factory=dict)

    def by_name(self, name: str) -> Evaluation:
        for ev in self.evaluations:
            if ev.name == name:
                return ev
        raise InvalidArgumentError.for_field("forecaster", name, "not in this report")

    def to_dict(self) -> dict[str, Any]:
        return json_safe(
            {
                "config": self.config,
                "n_train_runs": self.n_train_runs,
                "n_test_runs": self.n_test_runs,
                "n_test_queries": self.n_test_queries,
                "summary": summary_rows(self.evaluations),
                "evaluations": [ev.to_dict() for ev in self.evaluations],
            }
        )


def json_safe(obj: Any) -> Any:
    """`obj` with non-finite floats (NaN, +-inf) as None, nested dicts (keys as str) and lists, so that
    `json.dumps` writes standard JSON (which has no NaN or Infinity)."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def compare(
    train: pd.DataFrame,
    test: pd.DataFrame,
    forecasters: Mapping[str, Any],
    fitted: Mapping[str, Forecaster] | None = None,
    config: Mapping[str, Any] | None = None,
) -> Report:
    """Fit each of `forecasters` (unfitted estimators) on `train`, add the already `fitted` ones, and
    evaluate all on `test` (prepared frames), in the given order."""
    evaluations = []
    for name, model in forecasters.items():
        start = time.perf_counter()
        model.fit(train)
        fit_s = time.perf_counter() - start
        ev = evaluate(name, model, test)
        evaluations.append(_with_extra(ev, {"fit_s": fit_s}))
    for name, model in (fitted or {}).items():
        evaluations.append(evaluate(name, model, test))
    keys = test["task"].astype(str) + "\x1f" + test["query_id"].astype(str)
    return Report(
        evaluations=tuple(evaluations),
        n_train_runs=len(train),
        n_test_runs=len(test),
        n_test_queries=int(keys.nunique()),
        config=dict(config or {}),
    )


def _with_extra(ev: Evaluation, extra: Mapping[str, Any]) -> Evaluation:
    return Evaluation(
        name=ev.name,
        pooled=ev.pooled,
        per_tier=ev.per_tier,
        reliability=ev.reliability,
        tokens=ev.tokens,
        mean_tier_auc=ev.mean_tier_auc,
        extra={**ev.extra, **extra},
    )


def names_from(option: str | Sequence[str]) -> list[str]:
    """Baseline names from a comma-separated option (validated)."""
    names = [n.strip() for n in option.split(",")] if isinstance(option, str) else list(option)
    names = [n for n in names if n]
    bad = [n for n in names if n not in BASELINES]
    if bad:
        raise InvalidArgumentError.for_field("baselines", bad, f"each must be one of {list(BASELINES)}")
    return names
