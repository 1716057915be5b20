"""Level uncertainty: how precisely the training runs pin down each tier's mean score.

A forecaster's P(correct) for a tier rests on that tier's level -- its mean score -- learned from a finite
number of runs. The error of that level is shared by every query the forecast covers: if the runs happened to
flatter a tier, every forecast of it is too high together. A planner that picks, among near-equal tiers, the
one that looks best picks the flattered one more often than not (the winner's curse), so a plan's promise is
optimistic even when each forecast is unbiased (`planner.solve.optimism` corrects the promise for that).

`tier_level_se` gives the standard error of each tier's level on the logit scale from its plain runs:
`sqrt(var / n) / (p (1 - p))`, the delta method applied to the mean score `p` of `n` runs with sample
variance `var` (for 0/1 outcomes `var` is about `p (1 - p)`; graded scores have less). `p` is smoothed by one
pseudo-success and one pseudo-failure so that 0% or 100% on a few runs gives a finite, wide error, and a
single run counts with the Bernoulli variance.

The error is pooled over tasks. `DifficultyPredictor` shrinks each task x tier offset towards the tier's
shared level, and per-task errors overcorrected its promises on multi-task logs (by three times on an
8-task log; bench/RESULTS.md). `PriorForecaster` is query-blind and pooled by construction.
"""

from __future__ import annotations

import numpy as np

MAX_SE = 4.0
"""Cap on a level's logit standard error (a tier known from one or two runs, or from none)."""


def tier_level_se(tier: np.ndarray, score: np.ndarray, n_tiers: int) -> np.ndarray:
    """Shape (n_tiers,): the logit standard error of each tier's mean score, from plain runs given as
    parallel arrays of tier index and score; `MAX_SE` for a tier without runs."""
    tier = np.asarray(tier, dtype=np.intp)
    score = np.asarray(score, dtype=float)
    if tier.shape != score.shape:
        raise ValueError(f"tier and score must have one shape, got {tier.shape} and {score.shape}")
    count = np.bincount(tier, minlength=n_tiers).astype(float)
    total = np.bincount(tier, weights=score, minlength=n_tiers)
    square = np.bincount(tier, weights=score**2, minlength=n_tiers)
    n = np.maximum(count, 1.0)
    p = (total + 1.0) / (count + 2.0)
    bern = p * (1.0 - p)
    mean = total / n
    sample_var = np.where(count >= 2, (square - n * mean**2) / np.maximum(n - 1.0, 1.0), bern)
    se = np.sqrt(np.clip(sample_var, 1e-6, None) / n) / bern
    return np.where(count > 0, np.minimum(se, MAX_SE), MAX_SE)
