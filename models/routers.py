"""Router-style baselines as forecasters: kNN (RouterBench) and matrix factorisation (RouteLLM).

Each fits the same featuriser and the same observed cells as `DifficultyPredictor` (`models.design`) and swaps
in its own success model (`models.knn.KNNSuccess`, `models.mf.MFSuccess`); output tokens are the per-tier
training quantiles (what those routers have). They satisfy `models.api.Forecaster`, so `models.evaluate` and
the planner's evaluation harness score them exactly like the predictor.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from models.api import Forecast, Query
from models.baseline import tier_token_quantiles
from models.data import prepare_runs
from models.design import build_design, task_index
from models.features import QueryFeaturizer
from models.knn import KNNSuccess
from models.mf import MFSuccess


class _CellForecaster(BaseEstimator):
    """Shared plumbing: featurise, fit `_success()` on the cells, per-tier token quantiles."""

    run_name_map: Mapping[str, str] | None
    n_components: int
    random_state: int

    def _success(self) -> KNNSuccess | MFSuccess:
        raise NotImplementedError

    def fit(self, runs: pd.DataFrame, y: object = None) -> _CellForecaster:
        frame = prepare_runs(runs, self.run_name_map)
        featurizer = QueryFeaturizer(n_components=self.n_components, random_state=self.random_state)
        d = build_design(frame, featurizer)
        self.featurizer_, self.tiers_, self.tasks_ = featurizer, d.tiers, d.tasks
        self.success_ = self._success().fit(d.x, d.cells, len(d.tiers), len(d.tasks))
        tokens = pd.Series(frame["output_tokens"].to_numpy(float)[d.plain])
        by_tier = tokens.groupby(d.cells.tier)
        self.output_p50_, self.output_p90_ = tier_token_quantiles(by_tier, range(len(d.tiers)))
        return self

    @property
    def tiers(self) -> tuple[str, ...]:
        check_is_fitted(self, "tiers_")
        return self.tiers_

    def forecast(self, queries: Sequence[Query]) -> Forecast:
        check_is_fitted(self, "success_")
        x = self.featurizer_.transform(queries)
        p = self.success_.predict_proba_matrix(x, task_index(self.tasks_, queries))
        ones = np.ones((len(queries), 1))
        return Forecast(
            tiers=self.tiers_,
            p_correct=p,
            output_tokens_p50=ones * self.output_p50_[None, :],
            output_tokens_p90=ones * self.output_p90_[None, :],
            input_tokens=np.array([q.input_tokens for q in queries], dtype=float),
        )


class KNNForecaster(_CellForecaster):
    """RouterBench-style kNN router over the predictor's features (k chosen on validation)."""

    def __init__(
        self, run_name_map: Mapping[str, str] | None = None, n_components: int = 32, random_state: int = 0
    ) -> None:
        self.run_name_map = run_name_map
        self.n_components = n_components
        self.random_state = random_state

    def _success(self) -> KNNSuccess:
        return KNNSuccess(random_state=self.random_state)


class MFForecaster(_CellForecaster):
    """RouteLLM-style matrix-factorisation router over the predictor's features (L2 chosen on validation)."""

    def __init__(
        self,
        run_name_map: Mapping[str, str] | None = None,
        n_components: int = 32,
        rank: int = 8,
        random_state: int = 0,
    ) -> None:
        self.run_name_map = run_name_map
        self.n_components = n_components
        self.rank = rank
        self.random_state = random_state

    def _success(self) -> MFSuccess:
        return MFSuccess(rank=self.rank, random_state=self.random_state)
