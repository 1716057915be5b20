"""Output-token quantiles per (query, tier) for one plain sample: a log-normal model with shared query
effects.

log(output tokens) = c_t + x . w + noise_t, noise_t ~ N(0, sigma_t^2): ridge regression over all tiers at once
(tier intercepts, query-feature slopes shared across tiers), and a per-tier residual spread shrunk towards the
pooled spread. p50 = exp(mu), p90 = exp(mu + 1.2816 sigma_t). Tiers without any token counts get the
`default_tokens` median with the pooled spread. Strategy effects on tokens are applied by `models.strategies`.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.linear_model import Ridge
from sklearn.utils.validation import check_is_fitted

Z90 = 1.2815515655446004
"""The standard normal 90th percentile."""


class TokenModel(BaseEstimator):
    """Log-normal output-token model; see the module docstring."""

    def __init__(self, alpha: float = 10.0, shrink_runs: float = 20.0, default_tokens: float = 256.0) -> None:
        self.alpha = alpha
        self.shrink_runs = shrink_runs
        self.default_tokens = default_tokens

    def fit(
        self, x: np.ndarray, query: np.ndarray, tier: np.ndarray, tokens: np.ndarray, n_tiers: int
    ) -> TokenModel:
        ok = np.isfinite(tokens) & (tokens > 0)
        self.n_tiers_ = n_tiers
        self.w_ = np.zeros(x.shape[1])
        self.c_ = np.full(n_tiers, np.log(self.default_tokens))
        self.sigma_ = np.full(n_tiers, 0.7)
        if ok.sum() < 2:
            return self
        q, t, y = query[ok], tier[ok], np.log(tokens[ok])
        onehot = np.zeros((len(t), n_tiers))
        onehot[np.arange(len(t)), t] = 1.0
        reg = Ridge(alpha=self.alpha, fit_intercept=True).fit(np.hstack([onehot, x[q]]), y)
        coef = np.asarray(reg.coef_, dtype=float)
        seen = np.bincount(t, minlength=n_tiers) > 0
        self.c_ = np.where(seen, coef[:n_tiers] + reg.intercept_, np.log(self.default_tokens))
        self.w_ = coef[n_tiers:]
        resid = y - reg.predict(np.hstack([onehot, x[q]]))
        pooled = float(np.sqrt(np.mean(resid**2)))
        n = np.bincount(t, minlength=n_tiers).astype(float)
        ss = np.bincount(t, resid**2, minlength=n_tiers)
        self.sigma_ = np.sqrt((ss + self.shrink_runs * pooled**2) / (n + self.shrink_runs))
        return self

    def log_mean(self, x: np.ndarray) -> np.ndarray:
        """mu = E[log tokens], shape (n_queries, n_tiers)."""
        check_is_fitted(self, "w_")
        return (x @ self.w_)[:, None] + self.c_[None, :]

    def quantiles(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(p50, p90) output tokens, each (n_queries, n_tiers)."""
        mu = self.log_mean(x)
        return np.exp(mu), np.exp(mu + Z90 * self.sigma_[None, :])
