"""RouterBench-style kNN baseline: a new query's success on a tier is the (smoothed) success of its nearest
training queries on that tier, in the same feature space as the main predictor.

`k` is chosen from `k_grid` by log-loss on a validation split of the training queries, so the baseline gets
the same tuning budget as the model it is compared with.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.neighbors import NearestNeighbors
from sklearn.utils.validation import check_is_fitted

from models.success import Cells, _logloss


class KNNSuccess(BaseEstimator):
    """P(correct | query, tier) = (sum of neighbour scores on the tier + m * tier prior) / (neighbours seen
    + m)."""

    def __init__(
        self, k_grid: tuple[int, ...] = (10, 25, 50, 100), smoothing: float = 5.0, random_state: int = 0
    ) -> None:
        self.k_grid = k_grid
        self.smoothing = smoothing
        self.random_state = random_state

    def fit(self, x: np.ndarray, cells: Cells, n_tiers: int, n_tasks: int = 1) -> KNNSuccess:
        self.n_tiers_ = n_tiers
        queries = np.unique(cells.query)
        rng = np.random.default_rng(self.random_state)
        val_q = rng.choice(queries, size=max(1, len(queries) // 5), replace=False)
        in_val = np.isin(cells.query, val_q)
        losses = {}
        for k in self.k_grid:
            self._store(x, cells.subset(~in_val), k)
            val = cells.subset(in_val)
            p = self._predict(x[val.query])[np.arange(len(val.score)), val.tier]
            losses[k] = _logloss(val.score, p)
        self.k_ = min(losses, key=losses.__getitem__)
        self.losses_ = losses
        self._store(x, cells, self.k_)
        return self

    def _store(self, x: np.ndarray, cells: Cells, k: int) -> None:
        queries = np.unique(cells.query)
        pos = np.full(x.shape[0], -1)
        pos[queries] = np.arange(len(queries))
        sums = np.zeros((len(queries), self.n_tiers_))
        counts = np.zeros((len(queries), self.n_tiers_))
        np.add.at(sums, (pos[cells.query], cells.tier), cells.score)
        np.add.at(counts, (pos[cells.query], cells.tier), 1.0)
        self.sums_, self.counts_ = sums, counts
        total = counts.sum(axis=0)
        overall = sums.sum() / max(1.0, total.sum())
        self.prior_ = np.where(total > 0, sums.sum(axis=0) / np.maximum(total, 1), overall)
        self.index_ = NearestNeighbors(n_neighbors=min(k, len(queries)), metric="cosine").fit(x[queries])

    def _predict(self, x: np.ndarray) -> np.ndarray:
        _, ind = self.index_.kneighbors(x)
        num = self.sums_[ind].sum(axis=1) + self.smoothing * self.prior_
        return num / (self.counts_[ind].sum(axis=1) + self.smoothing)

    def predict_proba_matrix(self, x: np.ndarray, task: np.ndarray | None = None) -> np.ndarray:
        check_is_fitted(self, "index_")
        return np.clip(self._predict(x), 1e-4, 1 - 1e-4)
