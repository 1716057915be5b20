"""Neighbour ease: a query's ease estimated as the mean ease of its k most similar training queries.

Complements the linear (ridge) ease regression in `models.success`: cosine similarity over the standardised
query features catches local structure a linear map misses. `oof_neighbour_ease` gives out-of-fold estimates
for the training queries (each predicted from the other folds) so the success model can learn how much to
trust it; `NeighbourEase` keeps a bank of at most `MAX_BANK` training queries (unit-normalised features and
their ease) for prediction: one matrix product and a partial sort per batch, no scikit-learn call.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_BANK = 20000
"""Training queries kept in the bank (a seeded subsample beyond this bounds artifact size and latency)."""


def _unit(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return np.asarray(x / np.where(norm > 0, norm, 1.0))


def _mean_top_k(sim: np.ndarray, ease: np.ndarray, k: int) -> np.ndarray:
    k = min(k, sim.shape[1])
    if k == sim.shape[1]:
        return np.repeat(ease.mean(), sim.shape[0])
    idx = np.argpartition(-sim, k - 1, axis=1)[:, :k]
    return np.asarray(ease[idx].mean(axis=1))


@dataclass(frozen=True)
class NeighbourEase:
    """Unit-normalised features (float32) and ease of the banked training queries, and k."""

    bank: np.ndarray
    ease: np.ndarray
    k: int

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Mean ease of the k most cosine-similar banked queries, per row of `x` (similarities in float32:
        half the memory traffic of the (rows x bank) matrix)."""
        bank = self.bank if self.bank.dtype == np.float32 else self.bank.astype(np.float32)  # older artifacts
        sim = _unit(x).astype(np.float32) @ bank.T
        return _mean_top_k(sim, self.ease, self.k)


def build_bank(x: np.ndarray, ease: np.ndarray, k: int, seed: int = 0) -> NeighbourEase:
    rows = np.arange(len(x))
    if len(rows) > MAX_BANK:
        rows = np.sort(np.random.default_rng(seed).choice(rows, size=MAX_BANK, replace=False))
    bank = _unit(x[rows]).astype(np.float32)  # stored as float32: `predict` multiplies in float32
    return NeighbourEase(bank=bank, ease=np.asarray(ease[rows], dtype=float), k=k)


def oof_neighbour_ease(x: np.ndarray, ease: np.ndarray, fold: np.ndarray, k: int) -> np.ndarray:
    """Out-of-fold neighbour ease of every row: rows of fold f are predicted from the other folds' rows."""
    out = np.zeros(len(x))
    unit = _unit(x)
    for f in np.unique(fold):
        test, train = fold == f, fold != f
        out[test] = _mean_top_k(unit[test] @ unit[train].T, ease[train], k)
    return out
