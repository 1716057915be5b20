"""Interaction calibration: how far to trust a forecaster's per-query differences *between* tiers.

A forecast's logit splits into an additive part -- a tier ability plus a query ease shared by all tiers --
and a (query x tier) interaction: "this query suits tier A better than tier B". The additive part decides how
much compute a query needs; the interaction decides *which* of several near-equal tiers gets it. A planner
acts on the interaction wherever tiers are close, so an interaction that is noise out of sample turns into
selection bias (plans that switch between near-equal tiers promise more than they deliver), even when each
tier's P(correct) is well calibrated on its own.

`InteractionCalibrated` wraps any forecaster factory. On its training runs it cross-fits the base forecaster
(inner query-level folds), splits each out-of-fold forecast into additive part p0 and interaction p - p0,
and fits per tier the least-squares slope of the realised residual (outcome - p0) on the predicted
interaction, clipped to [0, 1]: 1 keeps the interaction, 0 drops it (a tier with few out-of-fold cells is
shrunk towards the pooled slope). It then fits the base forecaster on all the runs and forecasts
p' = p0 + slope_t x (p - p0). Everything is learned from the training runs; no constant is set by hand
beyond the number of inner folds and the shrinkage weight.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from scipy.special import expit, logit

from models.api import Forecast, Forecaster, Query
from models.data import plain_runs, queries_from_frame
from planner.catalog import Strategy
from planner.evaluation.recorded import model_quality_fn
from planner.evaluation.replay import KEY, CrossFitForecaster, keyed, query_folds, query_key

EPS = 1e-4
SHRINK_CELLS = 200.0
"""Pseudo-cells pulling a tier's slope towards the pooled slope (a tier with few out-of-fold cells)."""


@dataclass(frozen=True)
class Additive:
    """The additive part of a forecast: per tier, ability + calibration offset (logit scale)."""

    tiers: tuple[str, ...]
    ability: np.ndarray

    @classmethod
    def fit(cls, tiers: Sequence[str], p: np.ndarray) -> Additive:
        logits = logit(np.clip(p, EPS, 1 - EPS))
        ease = logits.mean(axis=1, keepdims=True)
        ability = (logits - ease).mean(axis=0)
        for _ in range(25):  # offsets so that each tier's mean additive p matches its mean forecast p
            p0 = expit(ability[None, :] + ease)
            ability = ability + (logit(np.clip(p.mean(axis=0), EPS, 1 - EPS)) - logit(p0.mean(axis=0)))
        return cls(tuple(tiers), ability)

    def project(self, p: np.ndarray) -> np.ndarray:
        """p0 for forecasts `p` over `self.tiers` (columns in that order)."""
        ease = logit(np.clip(p, EPS, 1 - EPS)).mean(axis=1, keepdims=True)
        return np.asarray(expit(self.ability[None, :] + ease))


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
        self.slope_ = _slopes(p, self.additive_.project(p), y)
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


def _slopes(p: np.ndarray, p0: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-tier slope of (y - p0) on (p - p0) over observed cells, shrunk to the pooled slope, in [0, 1]."""
    seen = ~np.isnan(y)
    x = np.where(seen, p - p0, 0.0)
    r = np.where(seen, y - p0, 0.0)
    sxx, sxr = (x * x).sum(axis=0), (x * r).sum(axis=0)
    pooled = float(sxr.sum() / sxx.sum()) if sxx.sum() > 0 else 0.0
    mean_sxx = sxx / np.maximum(seen.sum(axis=0), 1)
    prior = SHRINK_CELLS * mean_sxx
    slope = (sxr + prior * pooled) / np.maximum(sxx + prior, 1e-300)
    return np.clip(slope, 0.0, 1.0)
