"""Strategy response: closed forms, correlation, fitted offsets, token quantiles (Hypothesis invariants)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.response import StrategyEvidence, fit_offset
from models.strategies import count_pmf, expected_quality, fit_correlation, strategy_tokens
from planner.catalog import Strategy, StrategyKind

VOTE5 = Strategy(name="vote5", kind=StrategyKind.MAJORITY_VOTE, samples=5)
BON8 = Strategy(name="bon8", kind=StrategyKind.BEST_OF_N, samples=8, verifier_accuracy=0.85)
PRM = Strategy(name="prm", kind=StrategyKind.PRM_SEARCH, samples=4, serial_steps=2, verifier_accuracy=0.8)
REVISE = Strategy(name="revise2", kind=StrategyKind.REVISION, serial_steps=2)
COT = Strategy(name="cot", kind=StrategyKind.CHAIN_OF_THOUGHT, token_multiplier=2.5)
ALL = (Strategy(name="single"), COT, VOTE5, BON8, PRM, REVISE)

probs = st.lists(st.floats(0.0, 1.0), min_size=1, max_size=20).map(np.array)


@given(p=probs, rho=st.floats(0.0, 0.95))
@settings(max_examples=60, deadline=None)
def test_qualities_are_probabilities_of_the_same_shape(p: np.ndarray, rho: float) -> None:
    for s in ALL:
        q = expected_quality(p, s, rho)
        assert q.shape == p.shape
        assert np.all((q >= -1e-9) & (q <= 1 + 1e-9))


@given(rho=st.floats(0.0, 0.9))
@settings(max_examples=30, deadline=None)
def test_qualities_are_monotone_in_p(rho: float) -> None:
    p = np.linspace(0.01, 0.99, 50)
    for s in ALL:
        assert np.all(np.diff(expected_quality(p, s, rho)) >= -1e-9), s.name


def test_independent_majority_vote_is_the_binomial_tail() -> None:
    p = 0.7
    exact = sum(math.comb(5, k) * p**k * (1 - p) ** (5 - k) for k in range(3, 6))
    assert expected_quality(np.array([p]), VOTE5, 0.0)[0] == pytest.approx(exact, abs=1e-9)


def test_fully_correlated_samples_add_nothing() -> None:
    p = np.array([0.2, 0.6, 0.9])
    np.testing.assert_allclose(expected_quality(p, VOTE5, 0.999), p, atol=0.02)


def test_verifier_helps_and_correlation_hurts() -> None:
    p = np.array([0.5])
    assert expected_quality(p, BON8, 0.0)[0] > expected_quality(p, BON8, 0.5)[0] > p[0]


def test_count_pmf_sums_to_one() -> None:
    pmf = count_pmf(np.array([[0.3, 0.8]]), 6, np.array([0.0, 0.4]))
    np.testing.assert_allclose(pmf.sum(axis=-1), 1.0, atol=1e-9)


def test_fit_correlation_recovers_a_simulated_rho() -> None:
    rng = np.random.default_rng(0)
    n_q, m, p, rho = 3000, 4, 0.6, 0.35
    scale = (1 - rho) / rho
    rate = rng.beta(p * scale, (1 - p) * scale, size=n_q)
    rows = [(f"q{i}", "t", float(rng.random() < rate[i]), s) for i in range(n_q) for s in range(m)]
    frame = pd.DataFrame(rows, columns=["query_id", "tier", "score", "sample_index"])
    fit = fit_correlation(frame, np.full(len(frame), p))
    assert fit.source == "fitted"
    assert abs(fit.rho - rho) < 0.05
    assert abs(fit.per_tier["t"] - rho) < 0.05


def test_fit_correlation_without_repeats_is_the_default() -> None:
    frame = pd.DataFrame({"query_id": ["a", "b"], "tier": ["t", "t"], "score": [1.0, 0.0]})
    assert fit_correlation(frame).source == "default"


def test_fit_offset_recovers_a_logit_shift() -> None:
    rng = np.random.default_rng(1)
    p = rng.uniform(0.2, 0.9, size=4000)
    z = np.log(p) - np.log1p(-p)
    y = (rng.random(4000) < 1 / (1 + np.exp(-(z + 0.8)))).astype(float)
    ev = StrategyEvidence(p_single=p, rho=np.zeros(4000), score=y)
    assert abs(fit_offset(ev, COT) - 0.8) < 0.15


def test_strategy_tokens_scale_with_samples() -> None:
    p50, p90 = np.array([100.0]), np.array([180.0])
    one50, one90 = strategy_tokens(p50, p90, Strategy(name="single"))
    np.testing.assert_allclose([one50[0], one90[0]], [100.0, 180.0], rtol=1e-6)
    v50, v90 = strategy_tokens(p50, p90, VOTE5)
    assert 4 * 100 < v50[0] < 6 * 100 and v90[0] > v50[0]
    c50, _ = strategy_tokens(p50, p90, COT)
    assert c50[0] == pytest.approx(250.0)
