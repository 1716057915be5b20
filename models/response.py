"""Fitted strategy response: a per-strategy logit correction learned from logged runs of that strategy.

The closed forms of `models.strategies` turn a single-sample probability into a strategy's expected quality
under stated assumptions (binary answers, beta-binomial correlation, a Gaussian verifier, an assumed revision
rate). When the historical runs hold runs of a non-plain strategy (e.g. `vote3` or `cot` records), the
predictor keeps, per strategy name, the single-sample forecast of each such run and its observed score
(`StrategyEvidence`), and fits one logit offset `delta` so that sigmoid(logit(closed form) + delta) matches
the observed outcomes (1-D Newton on the log-loss with a ridge penalty pulling delta to 0, so a handful of
runs moves it little). When the runs hold no repeated samples to measure the intra-query correlation (the
predictor then assumes one), a multi-sample strategy with enough logged runs also gets the correlation that
explains its outcomes best (`fit_response`): how much a vote lifts strong tiers and sinks weak ones.
Strategies without logged runs keep the closed form unchanged (offset 0): an honest fallback, not a fit.
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

MIN_RHO_RUNS = 200
"""Runs of a multi-sample strategy needed before its correlation is fitted from them (`fit_response`)."""

RHO_GRID = np.round(np.linspace(0.0, 0.95, 39), 4)
"""Correlations `fit_response` tries (step 0.025)."""


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


@dataclass(frozen=True)
class ResponseFit:
    """The fitted response of one strategy: a logit offset and, for a multi-sample strategy whose runs
    identify it, the intra-query correlation to use instead of the predictor's own (None: keep that)."""

    offset: float = 0.0
    rho: float | None = None


def fit_response(evidence: StrategyEvidence, strategy: Strategy, fit_rho: bool) -> ResponseFit:
    """The offset (`fit_offset`) and -- with `fit_rho`, a strategy of two or more samples and at least
    `MIN_RHO_RUNS` runs -- the correlation on `RHO_GRID` that, with its own best offset, explains the logged
    outcomes best (penalised log-likelihood). The correlation sets how much a vote or a verifier amplifies:
    with answers close to independent, voting lifts a tier that is usually right and sinks one that is
    usually wrong, which one offset for every tier cannot express. It is an *effective* correlation,
    relative to the forecasts (their own error spreads a query's rate as correlation does), so it is fitted
    on them."""
    if not fit_rho or strategy.samples < 2 or evidence.n_runs < MIN_RHO_RUNS:
        return ResponseFit(fit_offset(evidence, strategy))
    best = (-np.inf, 0.0, 0.0)
    for rho in RHO_GRID:
        ev = StrategyEvidence(evidence.p_single, np.full_like(evidence.rho, rho), evidence.score)
        delta = fit_offset(ev, strategy)
        q = np.clip(with_offset(expected_quality(ev.p_single, strategy, ev.rho), delta), 1e-6, 1 - 1e-6)
        y = ev.score
        fit = float(np.sum(y * np.log(q) + (1 - y) * np.log1p(-q))) - 0.5 * OFFSET_PENALTY * delta**2
        if fit > best[0]:
            best = (fit, float(rho), delta)
    return ResponseFit(best[2], best[1])


def with_offset(q: np.ndarray, offset: float) -> np.ndarray:
    """sigmoid(logit(q) + offset); q unchanged when the offset is 0."""
    if offset == 0.0:
        return q
    return np.asarray(1.0 / (1.0 + np.exp(-(_logit(q) + offset))))


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
