"""RouteLLM-style matrix-factorisation baseline, adapted to pointwise success prediction.

logit P(correct | q, t) = b_t + u_t . (P x_q): a learned projection P of the query's features into a
rank-`rank` space, dotted with a learned tier embedding u_t (RouteLLM's MF router, which scores v_m . (W x_q)
from query embeddings). Trained by L-BFGS on the log-loss of the observed cells with an L2 penalty chosen from
`l2_grid` on a validation split of the training queries.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse
from scipy.optimize import minimize
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from models.success import Cells, _logloss, sigmoid


class MFSuccess(BaseEstimator):
    """Low-rank (query features x tier) logistic model; see the module docstring."""

    def __init__(
        self,
        rank: int = 8,
        l2_grid: tuple[float, ...] = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2),
        max_iter: int = 300,
        random_state: int = 0,
    ) -> None:
        self.rank = rank
        self.l2_grid = l2_grid
        self.max_iter = max_iter
        self.random_state = random_state

    def fit(self, x: np.ndarray, cells: Cells, n_tiers: int, n_tasks: int = 1) -> MFSuccess:
        self.n_tiers_ = n_tiers
        queries = np.unique(cells.query)
        rng = np.random.default_rng(self.random_state)
        val_q = rng.choice(queries, size=max(1, len(queries) // 5), replace=False)
        in_val = np.isin(cells.query, val_q)
        losses = {}
        for l2 in self.l2_grid:
            params = self._train(x, cells.subset(~in_val), l2)
            val = cells.subset(in_val)
            p = self._proba(params, x[val.query])[np.arange(len(val.score)), val.tier]
            losses[l2] = _logloss(val.score, p)
        self.l2_ = min(losses, key=losses.__getitem__)
        self.losses_ = losses
        self.proj_, self.tier_emb_, self.bias_ = self._train(x, cells, self.l2_)
        return self

    def _train(self, x: np.ndarray, cells: Cells, l2: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        d, r, nt, n = x.shape[1], self.rank, self.n_tiers_, len(cells.score)
        rng = np.random.default_rng(self.random_state)
        mean = np.clip(
            np.bincount(cells.tier, cells.score, nt) / np.maximum(np.bincount(cells.tier, None, nt), 1),
            0.02,
            0.98,
        )
        theta0 = np.concatenate(
            [rng.normal(0, 0.1, r * d), rng.normal(0, 0.1, nt * r), np.log(mean / (1 - mean))]
        )

        def unpack(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            return (
                theta[: r * d].reshape(r, d),
                theta[r * d : r * d + nt * r].reshape(nt, r),
                theta[r * d + nt * r :],
            )

        def loss_grad(theta: np.ndarray) -> tuple[float, np.ndarray]:
            proj, emb, bias = unpack(theta)
            h = x @ proj.T
            z = bias[cells.tier] + np.einsum("ij,ij->i", h[cells.query], emb[cells.tier])
            p = sigmoid(z)
            y = cells.score
            loss = -np.mean(y * np.log(p + 1e-12) + (1 - y) * np.log(1 - p + 1e-12))
            resid = (p - y) / n
            rmat = sparse.csr_matrix((resid, (cells.query, cells.tier)), shape=(x.shape[0], nt))
            g_h = rmat @ emb
            g_emb = rmat.T @ h + 2 * l2 * emb
            g_proj = g_h.T @ x + 2 * l2 * proj
            g_bias = np.bincount(cells.tier, resid, nt)
            loss += l2 * (np.sum(proj**2) + np.sum(emb**2))
            return float(loss), np.concatenate([g_proj.ravel(), np.asarray(g_emb).ravel(), g_bias])

        res = minimize(loss_grad, theta0, jac=True, method="L-BFGS-B", options={"maxiter": self.max_iter})
        return unpack(res.x)

    @staticmethod
    def _proba(params: tuple[np.ndarray, np.ndarray, np.ndarray], x: np.ndarray) -> np.ndarray:
        proj, emb, bias = params
        return sigmoid(bias[None, :] + (x @ proj.T) @ emb.T)

    def predict_proba_matrix(self, x: np.ndarray, task: np.ndarray | None = None) -> np.ndarray:
        check_is_fitted(self, "proj_")
        return self._proba((self.proj_, self.tier_emb_, self.bias_), x)
