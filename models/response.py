"""Fitted strategy response: a per-strategy logit correction learned from logged runs of that strategy.

The closed forms of `models.strategies` turn a single-sample probability into a strategy's expected quality
under stated assumptions (binary answers, beta-binomial correlation, a Gaussian verifier, an assumed revision
rate). When the historical runs hold runs of a non-plain strategy (e.g. `vote3` or `cot` records), the
predictor keeps, per strategy name, the single-sample forecast of each such run and its observed score
(`StrategyEvidence`), and fits one logit offset `delta` so that sigmoid(logit(closed form) + delta) matches
the observed outcomes (1-D Newton on the log-loss with a ridge penalty pulling delta to 0, so a handful of
runs moves it little). Strategies without logged runs keep the closed form unchanged (offset 0): an honest
fallback, not a fit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from models.data import PLAIN_STRATEGY
from models.strategies import expected_quality
from planner.catalog import Strategy

MIN_EVIDENCE_RUNS = 20
"""Runs of a strategy needed before its offset is fitted."""

MAX_EVIDENCE_RUNS = 5000
"""Runs kept per strategy (a seeded subsample beyond this)."""

OFFSET_PENALTY = 2.0
"""Ridge penalty on the offset, in units of pseudo-runs' curvature (keeps tiny samples close to 0)."""


@dataclass(frozen=True)
class StrategyEvidence:
    """Logged runs of one strategy: the single-sample forecast, the correlation used, the observed score."""

    p_single: np.ndarray
    rho: np.ndarray
    score: np.ndarray

    @property
    def n_runs(self) -> int:
        return len(self.score)


def collect_evidence(
    frame: pd.DataFrame, p_rows: np.ndarray, rho_rows: np.ndarray, seed: int = 0
) -> dict[str, StrategyEvidence]:
    """Evidence per non-plain strategy name of a prepared frame; `p_rows`/`rho_rows` align with its rows
    (NaN where the run's tier is unknown)."""
    out: dict[str, StrategyEvidence] = {}
    strategy = frame["strategy"].to_numpy()
    rng = np.random.default_rng(seed)
    for name in sorted(set(strategy) - {PLAIN_STRATEGY}):
        rows = np.flatnonzero((strategy == name) & np.isfinite(p_rows))
        if len(rows) < MIN_EVIDENCE_RUNS:
            continue
        if len(rows) > MAX_EVIDENCE_RUNS:
            rows = np.sort(rng.choice(rows, size=MAX_EVIDENCE_RUNS, replace=False))
        out[str(name)] = StrategyEvidence(
            p_single=np.asarray(p_rows[rows], dtype=float),
            rho=np.asarray(rho_rows[rows], dtype=float),
            score=frame["score"].to_numpy(float)[rows],
        )
    return out


def _logit(q: np.ndarray) -> np.ndarray:
    q = np.clip(q, 1e-6, 1 - 1e-6)
    return np.asarray(np.log(q) - np.log1p(-q))


def fit_offset(evidence: StrategyEvidence, strategy: Strategy, iterations: int = 25) -> float:
    """The logit offset that best explains the logged outcomes of `strategy` on top of its closed form."""
    z = _logit(expected_quality(evidence.p_single, strategy, evidence.rho))
    y = evidence.score
    delta = 0.0
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-(z + delta)))
        grad = float(np.sum(p - y)) + OFFSET_PENALTY * delta
        hess = float(np.sum(p * (1 - p))) + OFFSET_PENALTY
        step = grad / hess
        delta -= step
        if abs(step) < 1e-8:
            break
    return float(delta)
