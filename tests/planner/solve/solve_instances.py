"""Random allocation instances for the solver tests (a helper module, not a test module).

Quality rises concavely with cost; energy is a noisy multiple of cost.
"""

from __future__ import annotations

import numpy as np


def make_instance(
    n: int, m: int, seed: int = 0, dtype: type = np.float64
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(quality, cost, energy), each (n, m): concave-ish quality in cost, energy a noisy multiple of cost."""
    rng = np.random.default_rng(seed)
    cost = rng.lognormal(-6.0, 1.5, (n, m))
    quality = 1.0 - np.exp(-rng.gamma(2.0, 1.0, (n, m)) * np.log1p(cost * 1000.0) / 3.0)
    energy = cost * rng.uniform(500.0, 4000.0, (n, m))
    return quality.astype(dtype), cost.astype(dtype), energy.astype(dtype)


def between(a: np.ndarray, frac: float) -> float:
    """A total between the least (frac 0) and the most (frac 1) any plan can use of per-row values `a`."""
    lo, hi = float(a.min(axis=1).sum()), float(a.max(axis=1).sum())
    return lo + frac * (hi - lo)
