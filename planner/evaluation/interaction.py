"""Interaction calibration on the evaluation side, for any forecaster (`InteractionCalibrated`).

The method lives in `models.interaction` and is built into the deployed predictor:
`models.predictor.DifficultyPredictor(interaction="calibrated")` (what `--predictor difficulty+interaction`
fits, `planner.evaluation.forecasters`). This wrapper applies the same calibration to any forecaster factory
(a prior, a router, a fixed table in tests): it cross-fits the base forecaster on inner query-level folds,
splits each out-of-fold forecast into its additive part p0 (tier ability + query ease, logit scale) and the
interaction p - p0, fits per tier the slope of the realised residual (outcome - p0) on the predicted
interaction (empirical-Bayes shrunk to the pooled slope, clipped to [0, 1]), fits the base forecaster on all
the runs and forecasts p' = p0 + slope_t x (p - p0). One ability row for all tasks (the predictor keeps one
per task); the abilities come from the out-of-fold forecasts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from models import interaction as ia
from models.api import Forecast, Forecaster, Query
from models.data import plain_runs, queries_from_frame
from planner.catalog import Strategy
from planner.evaluation.recorded import model_quality_fn
from planner.evaluation.replay import KEY, CrossFitForecaster, keyed, query_folds, query_key


@dataclass(frozen=True)
class Additive:
    """The additive part of a forecast: per tier, ability + calibration offset (logit scale)."""

    tiers: tuple[str, ...]
    ability: np.ndarray

    @classmethod
    def fit(cls, tiers: Sequence[str], p: np.ndarray) -> Additive:
        return cls(tuple(tiers), ia.fit_ability(p, np.zeros(len(p), dtype=np.intp), 0))

    def project(self, p: np.ndarray) -> np.ndarray:
        """p0 for forecasts `p` over `self.tiers` (columns in that order)."""
        return ia.additive(p, self.ability, np.zeros(len(p), dtype=np.intp))


class InteractionCalibrated:
    """A forecaster whose (query x tier) interaction is scaled per tier by its out-of-fold slope."""

    def __init__(
        self,
        factory: Callable[[pd.DataFrame], Forecaster],
        inner_folds: int = 3,
        seed: int = 0,
        fixed_slope: float | None = None,
    ) -> None:
        self.factory = factory
        self.inner_folds = inner_folds
        self.seed = seed
        self.fixed_slope = fixed_slope

    def fit(self, runs: pd.DataFrame) -> InteractionCalibrated:
        """Fit the slopes out of fold (or take `fixed_slope` for every tier: 0 = additive forecast only)."""
        runs = keyed(runs)
        plain = plain_runs(runs)
        queries = queries_from_frame(plain)
        if self.fixed_slope is not None:
            self.base_ = self.factory(runs)
            tiers = tuple(self.base_.tiers)
            self.additive_ = Additive.fit(tiers, self.base_.forecast(queries).p_correct)
            self.slope_ = np.full(len(tiers), float(np.clip(self.fixed_slope, 0.0, 1.0)))
            return self
        inner = CrossFitForecaster.fit(query_folds(runs, self.inner_folds, self.seed), self.factory)
        tiers = inner.tiers
        p = inner.forecast(queries).p_correct
        table = plain.groupby([KEY, "tier"])["score"].mean().unstack("tier")
        y = table.reindex(index=[query_key(q) for q in queries], columns=list(tiers)).to_numpy(float)
        self.additive_ = Additive.fit(tiers, p)
        self.slope_ = ia.fit_slopes(p, self.additive_.project(p), y)
        self.base_ = self.factory(runs)
        return self

    @property
    def tiers(self) -> tuple[str, ...]:
        return tuple(self.base_.tiers)

    def forecast(self, queries: Sequence[Query]) -> Forecast:
        fc = self.base_.forecast(queries)
        cols = [fc.tiers.index(t) for t in self.additive_.tiers if t in fc.tiers]
        if len(cols) != len(self.additive_.tiers):
            return fc
        p = fc.p_correct[:, cols]
        p0 = self.additive_.project(p)
        out = fc.p_correct.copy()
        out[:, cols] = np.clip(p0 + self.slope_[None, :] * (p - p0), 0.0, 1.0)
        return replace(fc, p_correct=out)

    def quality_fn(self, p_single: np.ndarray, strategy: Strategy) -> np.ndarray:
        """The wrapped forecaster's strategy response (the calibration changes only P(correct))."""
        return model_quality_fn(self.base_)(p_single, strategy)

    def slopes(self) -> dict[str, float]:
        return {t: float(s) for t, s in zip(self.additive_.tiers, self.slope_, strict=True)}

    def __str__(self) -> str:
        return f"{type(self.base_).__name__}+interaction-calibration"
