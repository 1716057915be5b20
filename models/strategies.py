"""Strategy response: expected quality of a test-time strategy from the single-sample success probability.

Samples of one query are correlated (a hard question stays hard on every try), so repeated samples are
modelled as beta-binomial: the per-query success rate is Beta with mean p and intra-query correlation `rho`
(rho = 0: independent samples, the pass@k closed forms; rho -> 1: every sample gives the same answer).
- single / chain_of_thought: p (no run data says how much chain of thought adds on top of the logged runs);
- majority_vote(N): P(more than N/2 of N samples correct), ties counted half (binary-answer view: wrong
  answers are assumed to agree, which is pessimistic when wrong answers scatter);
- best_of_n(N, verifier v): a verifier whose scores put a correct sample above an incorrect one with
  probability v (Gaussian score model, separation sqrt(2) Phi^-1(v)) picks among the k correct and N - k wrong
  samples;
- prm_search(width, depth): approximated as best-of-(width x depth) with the process reward model as verifier;
- revision(k): a Markov chain per round: a wrong answer is fixed with probability fix * p, a right one broken
  with probability break * (1 - p) (`RevisionResponse`; defaults are assumptions, not fitted).
  `fit_correlation` estimates rho from runs that hold several samples of the same (query, tier) by the method
  of moments, given per-query forecasts; without repeated samples it returns the documented default with
  `source = "default"` so the caller can tell an assumption from a fit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import pandas as pd
from scipy.special import betaln, gammaln, ndtr, ndtri

from planner.catalog import Strategy, StrategyKind

DEFAULT_RHO = 0.3
"""Intra-query correlation assumed when the runs hold no repeated samples (an assumption, not a fit)."""

MIN_QUERIES_PER_TIER = 30
"""Queries with repeated samples a tier needs before it gets its own correlation estimate."""

_P_EPS = 1e-6


@dataclass(frozen=True)
class RevisionResponse:
    """Per-round transition rates of sequential revision, scaled by the single-sample probability."""

    fix: float = 0.25
    breaks: float = 0.05


@dataclass(frozen=True)
class CorrelationFit:
    """Fitted (or default) intra-query correlation per tier, with where it came from."""

    rho: float = DEFAULT_RHO
    per_tier: dict[str, float] = field(default_factory=dict)
    n_queries: int = 0
    source: str = "default"

    def for_tiers(self, tiers: tuple[str, ...]) -> np.ndarray:
        return np.array([self.per_tier.get(t, self.rho) for t in tiers], dtype=float)


def _log_binom(n: int, k: np.ndarray) -> np.ndarray:
    return gammaln(n + 1) - gammaln(k + 1) - gammaln(n - k + 1)


def count_pmf(p: np.ndarray, n: int, rho: np.ndarray | float) -> np.ndarray:
    """P(k of n samples correct), shape p.shape + (n + 1,): beta-binomial, binomial where rho ~ 0."""
    p = np.clip(np.asarray(p, dtype=float), _P_EPS, 1 - _P_EPS)[..., None]
    r = np.clip(np.broadcast_to(np.asarray(rho, dtype=float), p.shape[:-1])[..., None], 0.0, 0.999)
    k = np.arange(n + 1, dtype=float)
    binom = np.exp(_log_binom(n, k) + k * np.log(p) + (n - k) * np.log1p(-p))
    scale = np.where(r > 1e-6, (1 - r) / np.maximum(r, 1e-6), 1.0)
    a, b = p * scale, (1 - p) * scale
    beta = np.exp(_log_binom(n, k) + betaln(k + a, n - k + b) - betaln(a, b))
    return np.where(r > 1e-6, beta, binom)


def majority_weights(n: int) -> np.ndarray:
    k = np.arange(n + 1)
    return np.where(2 * k > n, 1.0, np.where(2 * k == n, 0.5, 0.0))


@lru_cache(maxsize=256)
def verifier_weights(n: int, accuracy: float) -> np.ndarray:
    """P(the verifier's top sample is correct | k of n correct), k = 0..n, under the Gaussian score model."""
    d = np.sqrt(2.0) * float(ndtri(min(max(accuracy, 0.5), 1 - 1e-9)))
    u = np.linspace(-9.0, 9.0 + d, 4001)
    du = u[1] - u[0]
    pdf_c = np.exp(-0.5 * (u - d) ** 2) / np.sqrt(2 * np.pi)
    cdf_c, cdf_w = ndtr(u - d), ndtr(u)
    out = np.zeros(n + 1)
    out[n] = 1.0
    for k in range(1, n):
        out[k] = float(np.sum(k * pdf_c * cdf_c ** (k - 1) * cdf_w ** (n - k)) * du)
    return np.clip(out, 0.0, 1.0)


def expected_quality(
    p_single: np.ndarray,
    strategy: Strategy,
    rho: np.ndarray | float = DEFAULT_RHO,
    revision: RevisionResponse | None = None,
) -> np.ndarray:
    """Expected P(correct) of `strategy` given single-sample probabilities (same shape as `p_single`).

    `rho` broadcasts against `p_single` (e.g. one value per tier for an (n_queries, n_tiers) array).
    """
    p = np.clip(np.asarray(p_single, dtype=float), 0.0, 1.0)
    kind = strategy.kind
    if kind in (StrategyKind.SINGLE, StrategyKind.CHAIN_OF_THOUGHT):
        return p.copy()
    if kind is StrategyKind.MAJORITY_VOTE:
        return count_pmf(p, strategy.samples, rho) @ majority_weights(strategy.samples)
    if kind in (StrategyKind.BEST_OF_N, StrategyKind.PRM_SEARCH):
        n = strategy.samples * (strategy.serial_steps if kind is StrategyKind.PRM_SEARCH else 1)
        if n == 1:
            return p.copy()
        return count_pmf(p, n, rho) @ verifier_weights(n, round(strategy.verifier_accuracy, 6))
    rev = revision or RevisionResponse()
    q = p.copy()
    for _ in range(strategy.serial_steps):
        q = q * (1 - rev.breaks * (1 - p)) + (1 - q) * rev.fix * p
    return q


def fit_correlation(runs: pd.DataFrame, p_hat: np.ndarray | None = None) -> CorrelationFit:
    """Method-of-moments intra-query correlation from runs holding >= 2 samples of one (query, tier).

    `runs` is a prepared frame (`models.data.prepare_runs`) of single-sample runs; `p_hat` the forecast per
    row
    (tier means when None). E[s(s-1)] = m(m-1)(p^2 + rho p(1-p)) for s correct out of m samples.
    """
    frame = runs[["query_id", "tier", "score"]].copy()
    if p_hat is None:
        p_hat = frame.groupby("tier")["score"].transform("mean").to_numpy()
    frame["p"] = np.clip(np.asarray(p_hat, dtype=float), _P_EPS, 1 - _P_EPS)
    groups = frame.groupby(["query_id", "tier"]).agg(m=("score", "size"), s=("score", "sum"), p=("p", "mean"))
    groups = groups[groups["m"] >= 2].reset_index()
    if groups.empty:
        return CorrelationFit()
    mm1 = groups["m"] * (groups["m"] - 1)
    groups["num"] = groups["s"] * (groups["s"] - 1) - mm1 * groups["p"] ** 2
    groups["den"] = mm1 * groups["p"] * (1 - groups["p"])
    total = float(np.clip(groups["num"].sum() / max(groups["den"].sum(), 1e-12), 0.0, 0.99))
    per_tier = {}
    for tier, g in groups.groupby("tier"):
        if len(g) >= MIN_QUERIES_PER_TIER:
            per_tier[str(tier)] = float(np.clip(g["num"].sum() / max(g["den"].sum(), 1e-12), 0.0, 0.99))
    return CorrelationFit(rho=total, per_tier=per_tier, n_queries=len(groups), source="fitted")


def strategy_tokens(p50: np.ndarray, p90: np.ndarray, strategy: Strategy) -> tuple[np.ndarray, np.ndarray]:
    """(p50, p90) of all output tokens a strategy generates (samples x rounds x multipliers, verifier
    included).

    Per-sample tokens are log-normal (from p50/p90); the sum of n of them is approximated by Fenton-Wilkinson.
    """
    n = strategy.samples * strategy.serial_steps
    scale = strategy.token_multiplier * (1.0 + strategy.verifier_cost)
    mu = np.log(np.maximum(p50, 1e-9))
    sigma = np.maximum(np.log(np.maximum(p90, 1e-9)) - mu, 0.0) / 1.2815515655446004
    mean1 = np.exp(mu + sigma**2 / 2)
    var1 = (np.exp(sigma**2) - 1) * mean1**2
    mean, var = n * mean1, n * var1
    s2 = np.log1p(var / np.maximum(mean, 1e-12) ** 2)
    mu_n = np.log(np.maximum(mean, 1e-12)) - s2 / 2
    return scale * np.exp(mu_n), scale * np.exp(mu_n + 1.2815515655446004 * np.sqrt(s2))
