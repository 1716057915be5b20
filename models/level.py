"""Level uncertainty: how precisely the training runs pin down each tier's mean score, per task.

A forecaster's P(correct) for a tier rests on that tier's level -- its mean score -- learned from a finite
number of runs. The error of that level is shared by every query the forecast covers: if the runs happened to
flatter a tier, every forecast of it is too high together. A planner that picks, among near-equal tiers, the
one that looks best picks the flattered one more often than not (the winner's curse), so a plan's promise is
optimistic even when each forecast is unbiased (`planner.solve.optimism` corrects the promise for that).

`level_se_table` gives the standard error of each tier's level on the logit scale, per task, from the plain
runs: `sqrt(var / n) / (p (1 - p))`, the delta method applied to the mean score `p` of `n` runs with sample
variance `var` (for 0/1 outcomes `var` is about `p (1 - p)`; graded scores have less). `p` is smoothed by one
pseudo-success and one pseudo-failure so that 0% or 100% on a few runs gives a finite, wide error, and a
single run counts with the Bernoulli variance. A tier without runs on a task gets its pooled error over
every task (the last row), as a forecaster falls back to its pooled level there.

This ignores the shrinkage a forecaster applies to its levels. `DifficultyPredictor` shrinks each task x
tier offset towards the tier's shared level, so it reports the pooled row for every task (per-task errors
overcorrected its promises on multi-task logs; bench/RESULTS.md); `PriorForecaster` is query-blind and
pooled by construction.
"""

from __future__ import annotations

import numpy as np

MAX_SE = 4.0
"""Cap on a level's logit standard error (a tier known from one or two runs)."""


def _se(total: np.ndarray, square: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Logit-scale standard error of mean scores from per-cell sums, sums of squares and counts."""
    n = np.maximum(count, 1.0)
    p = (total + 1.0) / (count + 2.0)
    bern = p * (1.0 - p)
    mean = total / n
    sample_var = np.where(count >= 2, (square - n * mean**2) / np.maximum(n - 1.0, 1.0), bern)
    var = np.clip(sample_var, 1e-6, None)
    se = np.sqrt(var / n) / bern
    return np.where(count > 0, np.minimum(se, MAX_SE), np.nan)


def level_se_table(
    task: np.ndarray, tier: np.ndarray, score: np.ndarray, n_tasks: int, n_tiers: int
) -> np.ndarray:
    """Shape (n_tasks + 1, n_tiers): the logit standard error of each tier's mean score on each task (rows in
    task order) and pooled over every task (last row), from plain runs given as parallel arrays of task index,
    tier index and score. A tier with no runs at all gets `MAX_SE`."""
    task = np.asarray(task, dtype=np.intp)
    tier = np.asarray(tier, dtype=np.intp)
    score = np.asarray(score, dtype=float)
    if task.shape != tier.shape or task.shape != score.shape:
        raise ValueError(
            f"task, tier and score must have one shape, got {task.shape}, {tier.shape}, {score.shape}"
        )
    cells = task * n_tiers + tier

    def sums(weights: np.ndarray | None) -> np.ndarray:
        flat = np.bincount(cells, weights=weights, minlength=n_tasks * n_tiers)
        return np.asarray(flat, dtype=float).reshape(n_tasks, n_tiers)

    total, square, count = sums(score), sums(score**2), sums(None)
    per_task = _se(total, square, count)
    pooled = _se(total.sum(axis=0), square.sum(axis=0), count.sum(axis=0))
    pooled = np.where(np.isnan(pooled), MAX_SE, pooled)
    table = np.vstack([per_task, pooled[None, :]])
    return np.where(np.isnan(table), np.broadcast_to(pooled, table.shape), table)
