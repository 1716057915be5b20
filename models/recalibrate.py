"""Recalibration on a new task: a shrunk Platt correction of the trained calibration, per-tier offsets.

A predictor trained on one set of runs, applied to a new task, keeps its ranking (the featuriser and success
core transfer) but its probabilities drift: the task is harder or easier overall, and each tier's ability on
it moves differently. `fit_tier_platt` fits, on a small sample of the new task's runs (about 200), the map
p = sigmoid(a z' + b + d_t) of the trained calibrated logit z', by MAP (L-BFGS) with Gaussian priors centred
on "no change" (a = 1, b = 0, d_t = 0), so a small or uninformative sample moves the calibration little, a
tier with a handful of runs moves little and a tier with none not at all. Recalibrating twice starts again
from the trained calibration (no compounding).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize

from models.success import EPS, Calibrator

PRIOR_SD = np.array([0.3, 1.0])
"""Prior deviations of the slope (around 1) and intercept (around 0) of the correction, in logits."""

DEFAULT_TIER_SD = 0.5
"""Prior deviation of a tier's logit offset on a new task (in logits)."""


def fit_tier_platt(
    z: np.ndarray,
    tier: np.ndarray,
    y: np.ndarray,
    n_tiers: int,
    base: Calibrator | None = None,
    tier_sd: float = DEFAULT_TIER_SD,
) -> Calibrator:
    """MAP fit of sigmoid(a z' + b + d[tier]) to outcomes `y` in [0, 1], z' = logit(base(z)) (z without a
    base), with priors a ~ N(1, .3), b ~ N(0, 1), d ~ N(0, tier_sd): with no evidence it is the base map."""
    z, y = np.asarray(z, dtype=float), np.asarray(y, dtype=float)
    if base is not None:
        p0 = np.clip(base.apply(z), EPS, 1 - EPS)
        z = np.log(p0) - np.log1p(-p0)
    pen = np.concatenate([1.0 / (2.0 * PRIOR_SD**2), np.full(n_tiers, 1.0 / (2.0 * tier_sd**2))])
    center = np.concatenate([[1.0, 0.0], np.zeros(n_tiers)])

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        a, b, d = theta[0], theta[1], theta[2:]
        s = a * z + b + d[tier]
        r = 1.0 / (1.0 + np.exp(-s)) - y
        dev = theta - center
        nll = float(np.sum(np.logaddexp(0.0, s) - y * s)) + float(pen @ dev**2)
        grad = np.concatenate([[r @ z, r.sum()], np.bincount(tier, r, n_tiers)]) + 2 * pen * dev
        return nll, grad

    res = minimize(loss, center, jac=True, method="L-BFGS-B")
    a, b, shift = float(res.x[0]), float(res.x[1]), np.asarray(res.x[2:])
    return Calibrator("platt", a=a, b=b, tier_shift=shift, base=base)
