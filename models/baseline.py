"""The simplest forecaster: per-tier prior accuracy and per-tier output-token quantiles.

It ignores the query entirely, so every query gets the same forecast for a tier. It is the baseline every
learned predictor must beat, and a safe fallback the planner can use before any predictor is trained.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from models.api import Forecast, Query
from models.data import plain_runs, prepare_runs
from models.level import tier_level_se

DEFAULT_OUTPUT_TOKENS = 256.0
"""Output tokens assumed for a tier whose runs carry no output length."""


def tier_token_quantiles(tokens: Any, index: Any) -> tuple[np.ndarray, np.ndarray]:
    """Per-tier p50 / p90 of output tokens from `tokens` grouped by tier, in the order of `index`.

    A tier without token counts gets `DEFAULT_OUTPUT_TOKENS` as p50 and twice its p50 as p90; p90 >= p50.
    """
    p50 = tokens.quantile(0.5).reindex(index).fillna(DEFAULT_OUTPUT_TOKENS).to_numpy(float)
    p90 = tokens.quantile(0.9).reindex(index).to_numpy(float)
    return p50, np.where(np.isnan(p90), 2.0 * p50, np.maximum(p90, p50))


class PriorForecaster(BaseEstimator):
    """Per-tier mean score (shrunk to the overall mean by `prior_strength` pseudo-runs) and token quantiles.

    Fit on a runs DataFrame in the canonical run columns (see `models.data.prepare_runs`).
    """

    def __init__(self, run_name_map: Mapping[str, str] | None = None, prior_strength: float = 2.0) -> None:
        self.run_name_map = run_name_map
        self.prior_strength = prior_strength

    def fit(self, runs: pd.DataFrame, y: object = None) -> PriorForecaster:
        frame = plain_runs(prepare_runs(runs, self.run_name_map))
        overall = float(frame["score"].mean())
        grouped = frame.groupby("tier", sort=True)
        counts = grouped["score"].count()
        sums = grouped["score"].sum()
        self.tiers_ = tuple(str(t) for t in counts.index)
        self.p_correct_ = ((sums + self.prior_strength * overall) / (counts + self.prior_strength)).to_numpy(
            float
        )
        self.n_runs_ = counts.to_numpy(int)
        tier = pd.Categorical(frame["tier"], categories=counts.index).codes
        self.level_se_ = tier_level_se(tier, frame["score"].to_numpy(float), len(counts))
        tok = grouped["output_tokens"]
        self.output_p50_, self.output_p90_ = tier_token_quantiles(tok, counts.index)
        self.output_mean_ = tok.mean().reindex(counts.index).fillna(DEFAULT_OUTPUT_TOKENS).to_numpy(float)
        return self

    @property
    def tiers(self) -> tuple[str, ...]:
        check_is_fitted(self, "tiers_")
        return self.tiers_

    def forecast(self, queries: Sequence[Query]) -> Forecast:
        if not hasattr(self, "tiers_"):  # check_is_fitted's own checks cost more than this forecast
            check_is_fitted(self, "tiers_")
        n = len(queries)
        level = self.__dict__.get("level_se_")  # None: fitted before level errors existed
        rows = (self.p_correct_, self.output_p50_, self.output_p90_) + (() if level is None else (level,))
        if n == 1:  # the Route hot path: read-only views of the fitted rows, no copies
            arrays = tuple(a[None, :] for a in rows)
            for view in arrays:
                view.flags.writeable = False
        else:
            ones = np.ones((n, 1))
            arrays = tuple(ones * a[None, :] for a in rows)
        levels = {} if level is None else {"level_se": arrays[3], "level_group": np.zeros(n, dtype=np.intp)}
        return Forecast(
            tiers=self.tiers_,
            p_correct=arrays[0],
            output_tokens_p50=arrays[1],
            output_tokens_p90=arrays[2],
            input_tokens=np.array([q.input_tokens for q in queries], dtype=float),
            **levels,
        )

    def predict_proba_runs(self, runs: pd.DataFrame) -> np.ndarray:
        """P(correct) for each (query, tier) row of a prepared runs frame (unknown tiers get the mean)."""
        check_is_fitted(self, "tiers_")
        lookup = dict(zip(self.tiers_, self.p_correct_, strict=True))
        default = float(np.mean(self.p_correct_))
        return np.array([lookup.get(t, default) for t in runs["tier"]], dtype=float)
