"""Neighbour ease: mean ease of the k most cosine-similar banked queries (float32 bank, float64 read)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from models.neighbours import build_bank, oof_neighbour_ease


def test_predict_is_the_mean_ease_of_the_nearest_k() -> None:
    rng = np.random.default_rng(0)
    x, ease = rng.normal(size=(200, 6)), rng.normal(size=200)
    bank = build_bank(x, ease, k=5)
    assert bank.bank.dtype == np.float32
    queries = rng.normal(size=(7, 6))
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    sims = (queries / np.linalg.norm(queries, axis=1, keepdims=True)) @ unit.T
    expected = np.array([ease[np.argsort(-row)[:5]].mean() for row in sims])
    np.testing.assert_allclose(bank.predict(queries), expected, rtol=1e-6)
    old = replace(bank, bank=bank.bank.astype(np.float64))  # an artifact saved before the float32 bank
    np.testing.assert_allclose(old.predict(queries), bank.predict(queries))


def test_out_of_fold_rows_never_see_their_own_fold() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(60, 4))
    ease = np.where(np.arange(60) < 30, 10.0, -10.0)
    fold = (np.arange(60) >= 30).astype(int)  # each fold holds one ease value only
    oof = oof_neighbour_ease(x, ease, fold, k=3)
    np.testing.assert_allclose(oof[:30], -10.0)
    np.testing.assert_allclose(oof[30:], 10.0)
