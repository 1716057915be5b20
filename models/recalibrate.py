"""Recalibration on a new task: a Platt map of the trained logits with shrunk per-tier offsets.

A predictor trained on one set of runs, applied to a new task, keeps its ranking (the featuriser and success
core transfer) but its probabilities drift: the task is harder or easier overall, and each tier's ability on
it moves differently. `fit_tier_platt` refits, on a small sample of the new task's runs (about 200), the map p
= sigmoid(a z + b + d_t) of the trained logit z, with a global slope a and intercept b and one offset d_t per
tier pulled to 0 by a Gaussian prior of deviation `prior_sd` (MAP by L-BFGS), so a tier with a handful of runs
moves little and a tier with none not at all. Isotonic is used instead only with thousands of runs.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize

from models.success import Calibrator

DEFAULT_PRIOR_SD = 0.5
"""Prior deviation of a tier's logit offset on a new task (in logits)."""


def fit_tier_platt(
    z: np.ndarray, tier: np.ndarray, y: np.ndarray, n_tiers: int, prior_sd: float = DEFAULT_PRIOR_SD
) -> Calibrator:
    """MAP fit of sigmoid(a z + b + d[tier]) to outcomes `y` in [0, 1] (see the module docstring)."""
    z, y = np.asarray(z, dtype=float), np.asarray(y, dtype=float)
    penalty = 1.0 / (2.0 * prior_sd**2)

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        a, b, d = theta[0], theta[1], theta[2:]
        s = a * z + b + d[tier]
        p = 1.0 / (1.0 + np.exp(-s))
        nll = float(np.sum(np.logaddexp(0.0, s) - y * s)) + penalty * float(d @ d)
        r = p - y
        grad = np.concatenate([[r @ z, r.sum()], np.bincount(tier, r, n_tiers) + 2 * penalty * d])
        return nll, grad

    theta0 = np.concatenate([[1.0, 0.0], np.zeros(n_tiers)])
    res = minimize(loss, theta0, jac=True, method="L-BFGS-B")
    return Calibrator("platt", a=float(res.x[0]), b=float(res.x[1]), tier_shift=np.asarray(res.x[2:]))
