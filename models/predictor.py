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

With `interaction="calibrated"` the (query x tier) interaction of every forecast is scaled per tier by the
slope it shows out of fold on the training runs (`models.interaction`: inner query folds, each fitted as a
`raw` clone), so the per-query contrast between near-equal tiers -- what a planner acts on -- is trusted only
as far as it held out of sample; `raw` forecasts the success model as it is. Artifacts saved before this
parameter existed load as `raw`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, clone
from sklearn.utils.validation import check_is_fitted

from models import interaction as ia
from models.api import Forecast, Query
from models.data import index_of, plain_runs, prepare_runs, queries_from_frame, query_keys
from models.design import build_design, task_index
from models.features import QueryFeaturizer
from models.hotpath import CompiledPredictor, strategy_key
from models.level import tier_level_se
from models.recalibrate import fit_tier_platt
from models.response import ResponseFit, collect_evidence, fit_response, with_offset
from models.strategies import expected_quality, fit_correlation, strategy_tokens
from models.success import Cells, SuccessModel
from models.tokens import Z90, TokenModel
from planner.catalog import Strategy
from planner.errors import InvalidArgumentError

Progress = Callable[[float, str], None]

MIN_RECALIBRATION_RUNS = 20
"""Fewer runs than this cannot recalibrate anything honestly."""
INTERACTIONS = ("calibrated", "raw")
MIN_INTERACTION_QUERIES = 50
"""With fewer training queries the interaction is not calibrated (slopes 1: the raw forecast)."""


def _no_progress(fraction: float, message: str) -> None:
    return None


class DifficultyPredictor(BaseEstimator):
    """Per-query, per-tier success probability and output tokens learned from historical runs.

    Parameters are plain values (scikit-learn contract): `run_name_map` maps run-record model names to tiers
    (`Catalog.run_name_map()`), `n_components` the text SVD width, `calibration` one of
    auto/none/platt/isotonic,
    `mf_rank` / `mf_weight` the low-rank (query x tier) term of the success model, `interaction` one of
    calibrated/raw (see the module docstring) with `interaction_folds` inner query folds,
    `fit_strategy_correlation` whether a logged multi-sample strategy may fit its own intra-query correlation
    (`models.response.fit_response`), `random_state` the seed.
    """

    def __init__(
        self,
        run_name_map: Mapping[str, str] | None = None,
        n_components: int = 32,
        max_text_features: int = 20000,
        calibration: str = "auto",
        mf_rank: int = 4,
        mf_weight: float = 0.5,
        neighbours: int = 25,
        interaction: str = "calibrated",
        interaction_folds: int = 3,
        fit_strategy_correlation: bool = True,
        random_state: int = 0,
    ) -> None:
        self.run_name_map = run_name_map
        self.n_components = n_components
        self.max_text_features = max_text_features
        self.calibration = calibration
        self.mf_rank = mf_rank
        self.mf_weight = mf_weight
        self.neighbours = neighbours
        self.interaction = interaction
        self.interaction_folds = interaction_folds
        self.fit_strategy_correlation = fit_strategy_correlation
        self.random_state = random_state

    # ---- fitting ----------------------------------------------------------------------------------------
    def fit(
        self, runs: pd.DataFrame, y: object = None, *, progress: Progress | None = None
    ) -> DifficultyPredictor:
        """Fit on a runs frame in the canonical run columns; `progress(fraction, message)` reports stages."""
        report = progress or _no_progress
        self._check_interaction_params()
        report(0.0, "preparing runs")
        frame = prepare_runs(runs, self.run_name_map)
        report(0.1, f"featurising {frame['query_id'].nunique()} queries")
        featurizer = QueryFeaturizer(
            n_components=self.n_components,
            max_text_features=self.max_text_features,
            random_state=self.random_state,
        )
        d = build_design(frame, featurizer)
        self.featurizer_, self.tiers_, self.tasks_ = featurizer, d.tiers, d.tasks
        cells = d.cells
        report(0.3, f"fitting success model on {len(cells.score)} runs x {len(self.tiers_)} tiers")
        self.success_ = SuccessModel(
            calibration=self.calibration,
            mf_rank=self.mf_rank,
            mf_weight=self.mf_weight,
            neighbours=self.neighbours,
            random_state=self.random_state,
        ).fit(d.x, cells, len(self.tiers_), len(self.tasks_))
        report(0.8, "fitting token model")
        tokens = frame["output_tokens"].to_numpy(float)[d.plain]
        self.tokens_ = TokenModel().fit(d.x, cells.query, cells.tier, tokens, len(self.tiers_))
        q_task = task_index(self.tasks_, d.queries)
        self.level_se_ = tier_level_se(cells.tier, cells.score, len(self.tiers_))  # pooled over tasks
        p_rows = self.success_.predict_proba_matrix(d.x, q_task)
        self.__dict__.pop("interaction_ability_", None)  # a refit starts raw
        self.__dict__.pop("interaction_slope_", None)
        if self.interaction == "calibrated":
            report(0.82, f"calibrating the query x tier interaction on {self.interaction_folds} inner folds")
            self._fit_interaction(frame, d.queries, d.cells, p_rows, q_task)
            p_rows = self._interact(p_rows, q_task)
        report(0.9, "fitting strategy response")
        self.correlation_ = fit_correlation(frame[d.plain], p_rows[cells.query, cells.tier])
        rho = self.correlation_.for_tiers(self.tiers_)[d.run_tier]
        p_all = p_rows[d.run_query, d.run_tier]
        self.evidence_ = collect_evidence(frame, p_all, rho, self.random_state)
        self.n_queries_ = len(d.queries)
        self.n_runs_ = len(frame)
        self._compile()
        report(1.0, "done")
        return self

    def recalibrate(self, runs: pd.DataFrame) -> DifficultyPredictor:
        """Refit only the probability calibrator (and the token scale) on runs of a new task; returns self.

        The featuriser, success core and token slopes stay as trained; the calibrator becomes a Platt map with
        shrunk per-tier offsets (`models.recalibrate`), for which about 200 plain runs on known tiers suffice;
        output tokens get one log-scale shift (median log ratio). Parts shared with the original fit are
        copied, not mutated.
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
        self.success_ = copy.copy(self.success_)  # never mutate parts shared with the original fit
        trained = self.success_.calibrator_
        base = trained.base if trained.base is not None else trained  # recalibrate from the trained map
        self.success_.calibrator_ = fit_tier_platt(rows, t, score, len(self.tiers_), base=base)
        ability = self.__dict__.get("interaction_ability_")
        if ability is not None:  # follow the per-tier shifts of the new calibrator
            after = self.success_.calibrator_.apply(z)
            self.interaction_ability_ = ia.shift_ability(ability, trained.apply(z), after)
        tokens = frame["output_tokens"].to_numpy(float)
        ok = np.isfinite(tokens) & (tokens > 0)
        if ok.sum() >= MIN_RECALIBRATION_RUNS:
            shift = float(np.median(np.log(tokens[ok]) - self.tokens_.log_mean(x)[q[ok], t[ok]]))
            self.tokens_ = copy.copy(self.tokens_)
            self.tokens_.c_ = self.tokens_.c_ + shift
        self._recalibrate_level_se(t, score)
        self.recalibrated_on_ = len(frame)
        self._compile()
        return self

    # ---- forecasting ------------------------------------------------------------------------------------
    @property
    def tiers(self) -> tuple[str, ...]:
        check_is_fitted(self, "tiers_")
        return self.tiers_

    def forecast(self, queries: Sequence[Query]) -> Forecast:
        """Vectorised forecast for a batch of queries (the `Forecaster` protocol); a single query takes the
        compiled hot path (`score_one`: same figures, no scikit-learn validation or sparse matrices)."""
        if len(queries) == 1 and "_fast" in self.__dict__:
            one = self._compiled().score(queries[0])
            return Forecast(
                tiers=self.tiers_,
                p_correct=one["p_correct"][None, :],
                output_tokens_p50=one["output_tokens_p50"][None, :],
                output_tokens_p90=one["output_tokens_p90"][None, :],
                input_tokens=np.array([queries[0].input_tokens], dtype=float),
                **self._levels(1),
            )
        return self.forecast_batch(queries)

    def forecast_batch(self, queries: Sequence[Query]) -> Forecast:
        """The vectorised path `forecast` takes for two or more queries (featuriser, success model and token
        model over the whole batch), whatever the batch size."""
        check_is_fitted(self, "success_")
        x = self.featurizer_.transform(queries)
        task = self._task_index(queries)
        p = self._interact(self.success_.predict_proba_matrix(x, task), task)
        p50, p90 = self.tokens_.quantiles(x)
        return Forecast(
            tiers=self.tiers_,
            p_correct=p,
            output_tokens_p50=p50,
            output_tokens_p90=p90,
            input_tokens=np.array([q.input_tokens for q in queries], dtype=float),
            **self._levels(len(queries)),
        )

    def quality(self, forecast: Forecast, strategy: Strategy) -> np.ndarray:
        """Expected P(correct) of `strategy` per (query, tier) of `forecast`: the closed form with the fitted
        intra-query correlation, corrected by the logit offset fitted from logged runs of the strategy."""
        check_is_fitted(self, "correlation_")
        if forecast.tiers == self.tiers_:  # the precomputed table: one gather, within 1e-4 of the closed form
            return self._compiled().interpolate(forecast.p_correct, (strategy,))[0]
        return self.exact_quality(forecast, strategy)

    def exact_quality(self, forecast: Forecast, strategy: Strategy) -> np.ndarray:
        """`quality` evaluated by the closed form itself (no table)."""
        fit = self.strategy_response(strategy)
        rho = self.correlation_.for_tiers(forecast.tiers) if fit.rho is None else fit.rho
        return with_offset(expected_quality(forecast.p_correct, strategy, rho), fit.offset)

    def quality_fn(self, p_single: np.ndarray, strategy: Strategy) -> np.ndarray:
        """Tier-agnostic strategy response with this predictor's fits, for callers that pass probability
        columns without tier names (`planner.options.OptionSet.build(quality_fn=predictor.quality_fn)`): the
        closed form with the pooled fitted correlation (or the strategy's own) and its fitted offset."""
        fit = self.strategy_response(strategy)
        rho = self.correlation_.rho if fit.rho is None else fit.rho
        return with_offset(expected_quality(p_single, strategy, rho), fit.offset)

    def tokens(self, forecast: Forecast, strategy: Strategy) -> dict[str, np.ndarray]:
        """Tokens of `strategy` per (query, tier): `input` (the prompt read once per sample and round; a
        revision round also re-reads the previous answer's p50), `output_p50` / `output_p90` of everything
        generated (samples x rounds x token multiplier, verifier included; see
        `models.strategies.strategy_tokens`)."""
        p50, p90 = strategy_tokens(forecast.output_tokens_p50, forecast.output_tokens_p90, strategy)
        calls = strategy.samples * strategy.serial_steps
        reread = (strategy.serial_steps - 1) * strategy.samples * forecast.output_tokens_p50
        return {
            "input": calls * forecast.input_tokens[:, None] + reread,
            "output_p50": p50,
            "output_p90": p90,
        }

    def strategy_offset(self, strategy: Strategy) -> float:
        """The fitted logit correction for `strategy` (0.0 when the runs hold no runs of it)."""
        return self.strategy_response(strategy).offset

    def strategy_response(self, strategy: Strategy) -> ResponseFit:
        """The fitted response of `strategy` from its logged runs (`models.response.fit_response`): its
        logit offset and, with `fit_strategy_correlation` while the correlation is only assumed (no repeated
        samples in the runs), its own correlation; no correction when the runs hold no runs of it."""
        check_is_fitted(self, "evidence_")
        cache: dict[tuple[Any, ...], ResponseFit] = self.__dict__.setdefault("_response_cache", {})
        key = strategy_key(strategy)
        if key not in cache:
            ev = self.evidence_.get(strategy.name)
            fit_rho = self.fit_strategy_correlation and self.correlation_.source == "default"
            cache[key] = ResponseFit() if ev is None else fit_response(ev, strategy, fit_rho)
        return cache[key]

    def score_one(self, query: Query, strategies: Sequence[Strategy] = ()) -> dict[str, np.ndarray]:
        """The hot path for one request: arrays over tiers of p_correct, output_tokens_p50/p90 and, under
        each strategy's name, its expected quality (as `quality`, from the precomputed table). Plain numpy
        on compiled arrays: no scikit-learn validation per call."""
        return self._compiled().score(query, strategies)

    def interaction_slopes(self) -> dict[str, float]:
        """Per-tier slope of the (query x tier) interaction (1.0 everywhere when `raw` or an old artifact)."""
        check_is_fitted(self, "tiers_")
        slope = self.__dict__.get("interaction_slope_")
        values = np.ones(len(self.tiers_)) if slope is None else slope
        return {t: float(s) for t, s in zip(self.tiers_, values, strict=True)}

    # ---- internals --------------------------------------------------------------------------------------
    def _levels(self, n: int) -> dict[str, np.ndarray]:
        """`level_se` / `level_group` of a forecast of `n` queries: each tier's pooled level error, one group
        (every task shares the tier levels' errors); none for artifacts saved without them."""
        level = self.__dict__.get("level_se_")
        if level is None:
            return {}
        return {"level_se": np.broadcast_to(level, (n, len(level))), "level_group": np.zeros(n, np.intp)}

    def _recalibrate_level_se(self, tier: np.ndarray, score: np.ndarray) -> None:
        """After recalibration a tier's level comes from the recalibration runs (one pooled Platt map):
        their error, for the tiers they cover."""
        level = self.__dict__.get("level_se_")
        if level is None:
            return
        fresh = tier_level_se(tier, score, len(self.tiers_))
        covered = np.bincount(tier, minlength=len(self.tiers_)) > 0
        self.level_se_ = np.where(covered, fresh, level)

    def _task_index(self, queries: Sequence[Query]) -> np.ndarray:
        return task_index(self.tasks_, queries)

    def _check_interaction_params(self) -> None:
        if self.interaction not in INTERACTIONS:
            raise InvalidArgumentError.for_field("interaction", self.interaction, f"one of {INTERACTIONS}")
        if not isinstance(self.interaction_folds, int) or self.interaction_folds < 2:
            raise InvalidArgumentError.for_field("interaction_folds", self.interaction_folds, "an int >= 2")

    def _interact(self, p: np.ndarray, task: np.ndarray) -> np.ndarray:
        """`p` with the fitted interaction calibration applied (unchanged when none is fitted)."""
        slope = self.__dict__.get("interaction_slope_")
        if slope is None:
            return p
        return ia.apply(p, self.interaction_ability_, slope, task)

    def _fit_interaction(
        self, frame: pd.DataFrame, queries: list[Query], cells: Cells, p: np.ndarray, task: np.ndarray
    ) -> None:
        """Per-tier slopes from out-of-fold forecasts of `raw` clones fitted on inner query folds; abilities
        from this fit's own forecasts `p` of the training queries (so tier means are unchanged)."""
        nq, nt = p.shape
        self.interaction_ability_ = ia.fit_ability(p, task, len(self.tasks_))
        if nq < max(MIN_INTERACTION_QUERIES, 2 * self.interaction_folds):
            self.interaction_slope_ = np.ones(nt)
            return
        fold = np.random.default_rng(self.random_state).permutation(nq) % self.interaction_folds
        keys = query_keys(frame)
        run_fold = fold[index_of(keys, list(dict.fromkeys(keys)))]
        oof = p.copy()
        held = np.zeros((nq, nt), dtype=bool)
        for f in range(self.interaction_folds):
            inner = clone(self).set_params(interaction="raw").fit(frame[run_fold != f])
            rows = np.flatnonzero(fold == f)
            fc = inner.forecast_batch([queries[int(i)] for i in rows])
            for j, tier in enumerate(self.tiers_):
                if tier in fc.tiers:
                    oof[rows, j] = fc.p_correct[:, fc.tiers.index(tier)]
                    held[rows, j] = True
        y = _cell_means(cells, nq, nt)
        y[~held] = np.nan
        p0 = ia.additive(oof, ia.fit_ability(oof, task, len(self.tasks_)), task)
        self.interaction_slope_ = ia.fit_slopes(oof, p0, y)

    def _compiled(self) -> CompiledPredictor:
        fast: CompiledPredictor | None = self.__dict__.get("_fast")
        return fast if fast is not None else self._compile()

    def _compile(self) -> CompiledPredictor:
        check_is_fitted(self, "success_")
        self.__dict__["_response_cache"] = {}
        fast = CompiledPredictor(
            featurizer=self.featurizer_,
            core=self.success_.core_,
            calibrator=self.success_.calibrator_,
            tasks={t: i for i, t in enumerate(self.tasks_)},
            token_w=self.tokens_.w_,
            token_c=self.tokens_.c_,
            token_z90=Z90 * self.tokens_.sigma_,
            rho=self.correlation_.for_tiers(self.tiers_),
            response=self.strategy_response,
            interaction_ability=self.__dict__.get("interaction_ability_"),
            interaction_slope=self.__dict__.get("interaction_slope_"),
        )
        self.__dict__["_fast"] = fast
        return fast

    def __getstate__(self) -> dict[str, Any]:
        state = dict(super().__getstate__())
        state.pop("_fast", None)
        state.pop("_response_cache", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Artifacts saved before the interaction parameters existed load as `raw` (what they were)."""
        state = dict(state)
        state.setdefault("interaction", "raw")
        state.setdefault("interaction_folds", 3)
        state.setdefault("fit_strategy_correlation", False)  # older artifacts: offsets-only response
        super().__setstate__(state)


def _cell_means(cells: Cells, n_queries: int, n_tiers: int) -> np.ndarray:
    """Mean observed score per (query, tier), NaN where nothing was observed."""
    flat = cells.query * n_tiers + cells.tier
    total = np.bincount(flat, weights=cells.score, minlength=n_queries * n_tiers)
    count = np.bincount(flat, minlength=n_queries * n_tiers)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan).reshape(n_queries, n_tiers)
