"""Fitted strategy response (`models.response.fit_response`): the correlation of a multi-sample strategy
fitted from its logged outcomes when the runs cannot measure it, and when it is left alone."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from models.data import queries_from_frame
from models.predictor import DifficultyPredictor
from models.response import MIN_RHO_RUNS, StrategyEvidence, fit_response
from models.strategies import DEFAULT_RHO, expected_quality
from planner.catalog import Strategy, StrategyKind

VOTE5 = Strategy(name="vote5", kind=StrategyKind.MAJORITY_VOTE, samples=5)
COT = Strategy(name="cot", kind=StrategyKind.CHAIN_OF_THOUGHT)


def _vote_runs(rho: float, n: int, seed: int = 0) -> StrategyEvidence:
    """Majority-of-5 outcomes of queries whose single-sample rates spread over (0.1, 0.95), drawn with
    beta-binomial correlation `rho` around the forecast."""
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.1, 0.95, n)
    if rho > 0:
        a, b = p * (1 - rho) / rho, (1 - p) * (1 - rho) / rho
        rate = rng.beta(a, b)
    else:
        rate = p
    correct = rng.binomial(5, rate)
    score = (correct >= 3).astype(float)
    return StrategyEvidence(p, np.full(n, DEFAULT_RHO), score)


@pytest.mark.parametrize("true_rho", [0.0, 0.3, 0.7])
def test_the_correlation_of_vote_outcomes_is_recovered(true_rho: float) -> None:
    ev = _vote_runs(true_rho, 4000)
    fit = fit_response(ev, VOTE5, fit_rho=True)
    assert fit.rho is not None and abs(fit.offset) < 0.3
    if true_rho < 0.5:  # a high correlation is weakly identified (votes then barely move p either way)
        assert abs(fit.rho - true_rho) <= 0.1
    q = expected_quality(ev.p_single, VOTE5, fit.rho)
    q = 1 / (1 + np.exp(-(np.log(q / (1 - q)) + fit.offset)))
    for lo, hi in ((0.1, 0.35), (0.35, 0.7), (0.7, 0.95)):  # calibrated where it matters: per p band
        band = (ev.p_single >= lo) & (ev.p_single < hi)
        assert abs(float(q[band].mean() - ev.score[band].mean())) < 0.03


def _mean_quality(ev: StrategyEvidence, rows: np.ndarray, rho: float, offset: float) -> float:
    q = expected_quality(ev.p_single[rows], VOTE5, rho)
    return float(np.mean(1 / (1 + np.exp(-(np.log(q / (1 - q)) + offset)))))


def test_independent_votes_sink_weak_tiers_once_the_correlation_is_fitted() -> None:
    """With independent samples a vote of a usually-wrong tier is wrong more often than one sample: the
    assumed correlation with an offset cannot say so, the fitted correlation can."""
    ev = _vote_runs(0.0, 4000, seed=1)
    weak = np.flatnonzero(ev.p_single < 0.3)
    observed = float(ev.score[weak].mean())
    assert observed < float(ev.p_single[weak].mean()) - 0.05  # voting sank them
    fit = fit_response(ev, VOTE5, fit_rho=True)
    assumed = fit_response(ev, VOTE5, fit_rho=False)
    assert fit.rho is not None and assumed.rho is None
    assert abs(_mean_quality(ev, weak, fit.rho, fit.offset) - observed) < 0.02
    assert abs(_mean_quality(ev, weak, DEFAULT_RHO, assumed.offset) - observed) > 0.04


def test_few_runs_single_samples_or_a_measured_correlation_keep_the_offset_only() -> None:
    few = _vote_runs(0.0, MIN_RHO_RUNS - 1)
    assert fit_response(few, VOTE5, fit_rho=True).rho is None
    ev = _vote_runs(0.0, 1000)
    assert fit_response(ev, COT, fit_rho=True).rho is None  # one sample: no correlation to fit
    assert fit_response(ev, VOTE5, fit_rho=False).rho is None


def test_the_predictor_uses_a_fitted_vote_correlation_on_every_path(gsm8k_small: pd.DataFrame) -> None:
    """Single-sample runs (no repeated samples: the correlation is only assumed) plus logged 5-vote runs drawn
    with independent samples: the predictor fits the vote's own correlation and uses it in `quality`, the
    closed form and the one-query hot path alike; with the fit turned off (or an older artifact) it keeps
    the offset only."""
    rng = np.random.default_rng(0)
    plain = gsm8k_small.drop_duplicates(["query_id", "tier"])  # hosted copies would measure a correlation
    rate = plain.groupby("tier")["score"].transform("mean").to_numpy()
    votes = plain.sample(1500, random_state=0).copy()
    r = rate[plain.index.get_indexer(votes.index)]
    votes["score"] = (rng.binomial(5, r) >= 3).astype(float)
    votes["correct"] = votes["score"].astype(int)
    votes["strategy"] = "vote5"
    runs = pd.concat([plain, votes], ignore_index=True)
    fitted = DifficultyPredictor(n_components=16, interaction="raw").fit(runs)
    assert fitted.correlation_.source == "default"
    fit = fitted.strategy_response(VOTE5)
    assert fit.rho is not None and fit.rho < DEFAULT_RHO  # independent samples: less than the assumption
    queries = queries_from_frame(plain)[:3]
    fc = fitted.forecast(queries)
    exact = fitted.exact_quality(fc, VOTE5)
    np.testing.assert_allclose(fitted.quality(fc, VOTE5), exact, atol=1e-4)  # the table path
    np.testing.assert_allclose(fitted.score_one(queries[0], (VOTE5,))["vote5"], exact[0], atol=1e-4)
    off = clone(fitted).set_params(fit_strategy_correlation=False).fit(runs)
    assert off.strategy_response(VOTE5).rho is None
    state = fitted.__getstate__()
    del state["fit_strategy_correlation"]
    old = DifficultyPredictor.__new__(DifficultyPredictor)
    old.__setstate__(state)
    assert old.fit_strategy_correlation is False and old.strategy_response(VOTE5).rho is None
