"""Interaction calibration: how far to trust a forecast's per-query differences *between* tiers.

A forecast's logit splits into an additive part -- a tier ability (per task) plus a query ease shared by all
tiers, `p0 = sigmoid(ability[task, t] + mean_t logit p)` -- and a (query x tier) interaction `p - p0`: "this
query suits tier A better than tier B". The additive part decides how much compute a query needs; the
interaction decides *which* of several near-equal tiers gets it. A planner acts on the interaction wherever
tiers are close, so an interaction that is noise out of sample becomes selection bias (plans that switch
between near-equal tiers promise more than they deliver) even when each tier's P(correct) is calibrated.

The calibrated forecast is `p' = p0 + slope_t (p - p0)`, clipped to [0, 1], with `slope_t` the per-tier
least-squares slope of the realised residual (outcome - p0) on the predicted interaction over out-of-fold
forecasts (`fit_slopes`), shrunk towards the pooled slope by empirical Bayes and clipped to [0, 1]:
1 keeps the interaction, 0 keeps only the additive part. Abilities are fitted so that each tier's mean
additive p equals its mean forecast p (`fit_ability`), so the calibration leaves each tier's mean forecast
(and its calibration) unchanged on the queries it was fitted on. Row `-1` of an ability table is the pooled
row used for tasks the predictor has not seen. Plain numpy, shared by the batch and the one-query hot path.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit, logit

EPS = 1e-4
ABILITY_ITERATIONS = 25
"""Fixed-point steps matching each tier's mean additive p to its mean forecast p."""


def _logit(p: np.ndarray) -> np.ndarray:
    return np.asarray(logit(np.clip(p, EPS, 1 - EPS)))


def _ability_one(p: np.ndarray) -> np.ndarray:
    """Per-tier ability of one group of forecasts `p` (queries, tiers)."""
    logits = _logit(p)
    ease = logits.mean(axis=1, keepdims=True)
    ability = (logits - ease).mean(axis=0)
    target = _logit(p.mean(axis=0))
    for _ in range(ABILITY_ITERATIONS):
        ability = ability + (target - _logit(expit(ability[None, :] + ease).mean(axis=0)))
    return np.asarray(ability)


def fit_ability(p: np.ndarray, task: np.ndarray, n_tasks: int) -> np.ndarray:
    """Ability table, shape (n_tasks + 1, tiers): one row per task (fitted on that task's queries, the pooled
    row where a task has none) and the pooled row last (all queries)."""
    pooled = _ability_one(p)
    table = np.tile(pooled, (n_tasks + 1, 1))
    for k in range(n_tasks):
        rows = task == k
        if rows.any():
            table[k] = _ability_one(p[rows])
    return table


def additive(p: np.ndarray, ability: np.ndarray, task: np.ndarray) -> np.ndarray:
    """p0 of forecasts `p` (queries, tiers): ability row of each query's task (-1: pooled) + its ease."""
    ease = _logit(p).mean(axis=-1, keepdims=True)
    return expit(ability[task] + ease)


def apply(p: np.ndarray, ability: np.ndarray, slope: np.ndarray, task: np.ndarray) -> np.ndarray:
    """Calibrated forecasts p0 + slope (p - p0) for `p` of shape (queries, tiers), clipped to [0, 1]."""
    p0 = additive(p, ability, task)
    return np.clip(p0 + slope * (p - p0), 0.0, 1.0)


def apply_one(p: np.ndarray, ability_row: np.ndarray, slope: np.ndarray) -> np.ndarray:
    """`apply` for one query's forecast `p` over tiers (the hot path: a handful of vector operations)."""
    pc = np.clip(p, EPS, 1 - EPS)
    ease = float(np.mean(np.log(pc) - np.log1p(-pc)))
    p0 = 1.0 / (1.0 + np.exp(-(ability_row + ease)))
    return np.clip(p0 + slope * (p - p0), 0.0, 1.0)


def fit_slopes(p: np.ndarray, p0: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-tier slope of (y - p0) on (p - p0) over observed cells (y not NaN), shrunk towards the pooled slope
    by empirical Bayes, clipped to [0, 1].

    Each tier's least-squares slope b_t has sampling variance v_t = residual variance / sum (p - p0)^2 (large
    for a tier whose predicted interaction is small). The pooled slope is their precision-weighted mean, the
    spread of the true slopes around it tau^2 the DerSimonian-Laird estimate, and each tier's slope the
    posterior mean (tau^2 b_t + v_t pooled) / (tau^2 + v_t): per-tier slopes only as far as the data tell
    the tiers apart (all equal to the pooled slope when they do not)."""
    seen = ~np.isnan(y) & ~np.isnan(p)
    x = np.where(seen, p - p0, 0.0)
    r = np.where(seen, y - p0, 0.0)
    sxx, sxr = (x * x).sum(axis=0), (x * r).sum(axis=0)
    n = seen.sum(axis=0)
    ok = (sxx > 0) & (n > 2)
    if not ok.any():
        return np.zeros(p.shape[1])
    b = sxr[ok] / sxx[ok]
    resid = np.where(seen[:, ok], (r[:, ok] - b[None, :] * x[:, ok]) ** 2, 0.0).sum(axis=0) / (n[ok] - 1)
    w = sxx[ok] / np.maximum(resid, 1e-12)  # 1 / v_t
    pooled = float((w * b).sum() / w.sum())
    q = float((w * (b - pooled) ** 2).sum())
    scale = float(w.sum() - (w * w).sum() / w.sum())
    tau2 = max(0.0, (q - (len(b) - 1)) / scale) if scale > 0 else 0.0
    slope = np.full(p.shape[1], pooled)
    slope[ok] = (tau2 * b + pooled / w) / (tau2 + 1.0 / w)
    return np.asarray(np.clip(slope, 0.0, 1.0))


def shift_ability(ability: np.ndarray, p_before: np.ndarray, p_after: np.ndarray) -> np.ndarray:
    """The ability table after a recalibration that moved forecasts `p_before` to `p_after` (same queries):
    each tier's mean logit change, less the change shared by all tiers (that part moves the ease)."""
    delta = (_logit(p_after) - _logit(p_before)).mean(axis=0)
    return np.asarray(ability + (delta - delta.mean())[None, :])
