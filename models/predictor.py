"""`DifficultyPredictor`: the learned forecaster the planner uses (featuriser + success + tokens +
strategies).

Fit it on a runs frame in the canonical run columns (`planner.store.RunStore.load_frame()`); it then
forecasts, for any batch of `models.api.Query`, the calibrated single-sample P(correct) per tier and
output-token p50/p90 (`forecast`, the `Forecaster` protocol), and the expected quality of a strategy
(`quality`). Strategy response is the closed form of `models.strategies` with the intra-query correlation
fitted from repeated samples when the runs hold them, corrected by a per-strategy logit offset fitted from
logged runs of that strategy when present (`models.response`). `recalibrate` refits only the calibrator (and
the token scale) on a small sample of runs of a new task. `score_one` is the hot path: plain numpy on compiled
arrays, no scikit-learn validation per call.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from models.api import Forecast, Query
from models.data import PLAIN_STRATEGY, index_of, plain_runs, prepare_runs, queries_from_frame, query_keys
from models.features import FastFeaturizer, QueryFeaturizer
from models.response import StrategyEvidence, collect_evidence, fit_offset
from models.strategies import CorrelationFit, expected_quality, fit_correlation
from models.success import Calibrator, Cells, SuccessModel, fit_calibrator, sigmoid
from models.tokens import Z90, TokenModel
from planner.catalog import Strategy
from planner.errors import InvalidArgumentError

Progress = Callable[[float, str], None]

MIN_RECALIBRATION_RUNS = 20
"""Fewer runs than this cannot recalibrate anything honestly."""

ISOTONIC_RECALIBRATION_RUNS = 2000
"""From this many runs on, recalibration may pick isotonic; below it only Platt (two parameters) is tried."""


def _no_progress(fraction: float, message: str) -> None:
    return None


class DifficultyPredictor(BaseEstimator):
    """Per-query, per-tier success probability and output tokens learned from historical runs.

    Parameters are plain values (scikit-learn contract): `run_name_map` maps run-record model names to tiers
    (`Catalog.run_name_map()`), `n_components` the text SVD width, `calibration` one of
    auto/none/platt/isotonic,
    `mf_rank` / `mf_weight` the low-rank (query x tier) term of the success model, `random_state` the seed.
    """

    def __init__(
        self,
        run_name_map: Mapping[str, str] | None = None,
        n_components: int = 32,
        max_text_features: int = 20000,
        calibration: str = "auto",
        mf_rank: int = 4,
        mf_weight: float = 0.5,
        random_state: int = 0,
    ) -> None:
        self.run_name_map = run_name_map
        self.n_components = n_components
        self.max_text_features = max_text_features
        self.calibration = calibration
        self.mf_rank = mf_rank
        self.mf_weight = mf_weight
        self.random_state = random_state

    # ---- fitting ----------------------------------------------------------------------------------------
    def fit(
        self, runs: pd.DataFrame, y: object = None, *, progress: Progress | None = None
    ) -> DifficultyPredictor:
        """Fit on a runs frame in the canonical run columns; `progress(fraction, message)` reports stages."""
        report = progress or _no_progress
        report(0.0, "preparing runs")
        frame = prepare_runs(runs, self.run_name_map)
        plain = plain_runs(frame)
        queries = queries_from_frame(frame)
        keys = query_keys(frame)
        vocabulary = list(dict.fromkeys(keys))
        self.tiers_ = tuple(sorted(frame["tier"].unique()))
        self.tasks_ = tuple(sorted(frame["task"].unique()))
        report(0.1, f"featurising {len(queries)} queries")
        self.featurizer_ = QueryFeaturizer(
            n_components=self.n_components,
            max_text_features=self.max_text_features,
            random_state=self.random_state,
        ).fit(queries)
        x = self.featurizer_.transform(queries)
        is_plain = (frame["strategy"] == PLAIN_STRATEGY).to_numpy() if len(plain) < len(frame) else None
        mask = np.ones(len(frame), dtype=bool) if is_plain is None else is_plain
        cells = Cells(
            query=index_of(keys[mask], vocabulary),
            tier=index_of(plain["tier"], self.tiers_),
            task=index_of(plain["task"], self.tasks_),
            score=plain["score"].to_numpy(float),
        )
        report(0.3, f"fitting success model on {len(cells.score)} runs x {len(self.tiers_)} tiers")
        self.success_ = SuccessModel(
            calibration=self.calibration,
            mf_rank=self.mf_rank,
            mf_weight=self.mf_weight,
            random_state=self.random_state,
        ).fit(x, cells, len(self.tiers_), len(self.tasks_))
        report(0.8, "fitting token model")
        self.tokens_ = TokenModel().fit(
            x, cells.query, cells.tier, plain["output_tokens"].to_numpy(float), len(self.tiers_)
        )
        report(0.9, "fitting strategy response")
        p_rows = self.success_.predict_proba_matrix(x, self._task_index(queries))
        self.correlation_ = fit_correlation(plain, p_rows[cells.query, cells.tier])
        all_q = index_of(keys, vocabulary)
        all_t = index_of(frame["tier"], self.tiers_)
        rho = self.correlation_.for_tiers(self.tiers_)
        self.evidence_ = collect_evidence(frame, p_rows[all_q, all_t], rho[all_t], self.random_state)
        self.n_runs_ = len(frame)
        self.n_queries_ = len(queries)
        self._compile()
        report(1.0, "done")
        return self

    def recalibrate(self, runs: pd.DataFrame) -> DifficultyPredictor:
        """Refit only the probability calibrator (and the token scale) on runs of a new task; returns self.

        The featuriser, success core and token slopes stay as trained; a small sample (about 200 plain runs on
        known tiers) is enough for the two-parameter Platt map chosen below ~2,000 runs.
        """
        check_is_fitted(self, "success_")
        frame = plain_runs(prepare_runs(runs, self.run_name_map))
        frame = frame[frame["tier"].isin(self.tiers_)]
        if len(frame) < MIN_RECALIBRATION_RUNS:
            raise InvalidArgumentError.for_field(
                "runs",
                len(frame),
                f"recalibration needs >= {MIN_RECALIBRATION_RUNS} plain runs on known tiers",
            )
        queries = queries_from_frame(frame)
        keys = query_keys(frame)
        vocabulary = list(dict.fromkeys(keys))
        x = self.featurizer_.transform(queries)
        z = self.success_.logits(x, self._task_index(queries))
        q, t = index_of(keys, vocabulary), index_of(frame["tier"], self.tiers_)
        rows = z[q, t]
        score = frame["score"].to_numpy(float)
        method = "isotonic" if len(frame) >= ISOTONIC_RECALIBRATION_RUNS else "platt"
        self.success_.calibrator_ = fit_calibrator(method, rows, score)
        tokens = frame["output_tokens"].to_numpy(float)
        ok = np.isfinite(tokens) & (tokens > 0)
        if ok.sum() >= MIN_RECALIBRATION_RUNS:
            shift = float(np.median(np.log(tokens[ok]) - self.tokens_.log_mean(x)[q[ok], t[ok]]))
            self.tokens_.c_ = self.tokens_.c_ + shift
        self.recalibrated_on_ = len(frame)
        self._compile()
        return self

    # ---- forecasting ------------------------------------------------------------------------------------
    @property
    def tiers(self) -> tuple[str, ...]:
        check_is_fitted(self, "tiers_")
        return self.tiers_

    def forecast(self, queries: Sequence[Query]) -> Forecast:
        """Vectorised forecast for a batch of queries (the `Forecaster` protocol)."""
        check_is_fitted(self, "success_")
        x = self.featurizer_.transform(queries)
        p = self.success_.predict_proba_matrix(x, self._task_index(queries))
        p50, p90 = self.tokens_.quantiles(x)
        return Forecast(
            tiers=self.tiers_,
            p_correct=p,
            output_tokens_p50=p50,
            output_tokens_p90=p90,
            input_tokens=np.array([q.input_tokens for q in queries], dtype=float),
        )

    def quality(self, forecast: Forecast, strategy: Strategy) -> np.ndarray:
        """Expected P(correct) of `strategy` per (query, tier) of `forecast`: closed form with the fitted
        intra-query correlation, corrected by the logit offset fitted from logged runs of the strategy."""
        check_is_fitted(self, "correlation_")
        rho = self.correlation_.for_tiers(forecast.tiers)
        q = expected_quality(forecast.p_correct, strategy, rho)
        offset = self.strategy_offset(strategy)
        if offset == 0.0:
            return q
        z = np.log(np.clip(q, 1e-6, 1 - 1e-6)) - np.log1p(-np.clip(q, 1e-6, 1 - 1e-6))
        return sigmoid(z + offset)

    def strategy_offset(self, strategy: Strategy) -> float:
        """The fitted logit correction for `strategy` (0.0 when the runs hold no runs of it)."""
        check_is_fitted(self, "evidence_")
        key = (
            strategy.name,
            strategy.kind.value,
            strategy.samples,
            strategy.serial_steps,
            strategy.verifier_accuracy,
        )
        cache: dict[tuple[Any, ...], float] = self.__dict__.setdefault("_offset_cache", {})
        if key not in cache:
            ev = self.evidence_.get(strategy.name)
            cache[key] = 0.0 if ev is None else fit_offset(ev, strategy)
        return cache[key]

    def score_one(self, query: Query, strategies: Sequence[Strategy] = ()) -> dict[str, np.ndarray]:
        """The hot path for one request: p_correct, p50, p90 over tiers and, per strategy name, its
        quality."""
        fast: _Compiled = self.__dict__.get("_fast") or self._compile()
        x = fast.features.transform_one(query)
        z = fast.logits(x, self._task_of(query.task))
        p = self.success_.calibrator_.apply(z)
        mu = float(x @ fast.token_w) + fast.token_c
        out = {
            "p_correct": p,
            "output_tokens_p50": np.exp(mu),
            "output_tokens_p90": np.exp(mu + fast.token_z90),
        }
        for s in strategies:
            out[s.name] = self._quality_row(p, s, fast.rho)
        return out

    # ---- internals --------------------------------------------------------------------------------------
    def _quality_row(self, p: np.ndarray, strategy: Strategy, rho: np.ndarray) -> np.ndarray:
        q = expected_quality(p, strategy, rho)
        offset = self.strategy_offset(strategy)
        if offset == 0.0:
            return q
        qc = np.clip(q, 1e-6, 1 - 1e-6)
        return sigmoid(np.log(qc) - np.log1p(-qc) + offset)

    def _task_of(self, task: str) -> int:
        tasks = self.tasks_
        return tasks.index(task) if task in tasks else -1

    def _task_index(self, queries: Sequence[Query]) -> np.ndarray:
        lookup = {t: i for i, t in enumerate(self.tasks_)}
        return np.array([lookup.get(q.task, -1) for q in queries], dtype=int)

    def _compile(self) -> _Compiled:
        fast = _Compiled.build(self)
        self.__dict__["_fast"] = fast
        self.__dict__["_offset_cache"] = {}
        return fast

    def __getstate__(self) -> dict[str, Any]:
        state = dict(super().__getstate__())
        state.pop("_fast", None)
        state.pop("_offset_cache", None)
        return state


class _Compiled:
    """Plain arrays of a fitted predictor for the one-query hot path (rebuilt after fit, load,
    recalibrate)."""

    def __init__(self, features: FastFeaturizer, predictor: DifficultyPredictor) -> None:
        core = predictor.success_.core_
        self.features = features
        self.core = core
        self.token_w = predictor.tokens_.w_
        self.token_c = predictor.tokens_.c_
        self.token_z90 = Z90 * predictor.tokens_.sigma_
        self.rho = predictor.correlation_.for_tiers(predictor.tiers_)

    @classmethod
    def build(cls, predictor: DifficultyPredictor) -> _Compiled:
        return cls(predictor.featurizer_.compile(), predictor)

    def logits(self, x: np.ndarray, task: int) -> np.ndarray:
        return self.core.logits(x[None, :], np.array([task]))[0]


__all__ = ["Calibrator", "CorrelationFit", "DifficultyPredictor", "StrategyEvidence"]
