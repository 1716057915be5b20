"""The one-request hot path: a fitted predictor reduced to arrays, scoring every tier and strategy at once.

`CompiledPredictor.score(query, strategies)` featurises one query (`QueryFeaturizer.transform_one`), applies
the linear success core, its calibrator and the interaction calibration when fitted (`models.interaction`),
the token model, and the strategy response. Strategy response is
read from a table per strategy set, precomputed on a 1,025-point grid of the single-sample probability (closed
form, fitted correlation and fitted offset baked in) and linearly interpolated for all strategies and tiers in
one gather, so no closed form is evaluated per request. It holds no scikit-learn object and validates nothing:
the caller (`DifficultyPredictor.score_one`) builds it once after fit, load or recalibration.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from models import interaction as ia
from models.api import Query
from models.features import QueryFeaturizer
from models.response import ResponseFit, with_offset
from models.strategies import expected_quality
from models.success import Calibrator, CoreParams
from planner.catalog import Strategy

GRID_POINTS = 1025
"""Grid points of the single-sample probability in the strategy tables (interpolation error < 1e-4)."""


def strategy_key(strategy: Strategy) -> tuple[Any, ...]:
    """What the strategy response depends on (strategies are matched by these, not by identity)."""
    return (
        strategy.name,
        strategy.kind.value,
        strategy.samples,
        strategy.serial_steps,
        strategy.verifier_accuracy,
    )


@dataclass
class CompiledPredictor:
    """Arrays of a fitted `DifficultyPredictor` (see the module docstring); `tables` is its own cache."""

    featurizer: QueryFeaturizer
    core: CoreParams
    calibrator: Calibrator
    tasks: Mapping[str, int]
    token_w: np.ndarray
    token_c: np.ndarray
    token_z90: np.ndarray
    rho: np.ndarray
    response: Callable[[Strategy], ResponseFit]
    interaction_ability: np.ndarray | None = None
    """(tasks + 1, tiers) ability table of the interaction calibration (last row: unseen tasks), or None."""
    interaction_slope: np.ndarray | None = None
    tables: dict[tuple[Any, ...], np.ndarray] = field(default_factory=dict)

    def table(self, strategies: Sequence[Strategy]) -> np.ndarray:
        """Expected quality on the grid, shape (n_strategies, n_tiers, GRID_POINTS)."""
        key = tuple(strategy_key(s) for s in strategies)
        found = self.tables.get(key)
        if found is None:
            grid = np.broadcast_to(np.linspace(0.0, 1.0, GRID_POINTS), (len(self.rho), GRID_POINTS))
            rows = []
            for s in strategies:
                fit = self.response(s)
                rho = self.rho[:, None] if fit.rho is None else fit.rho
                rows.append(with_offset(expected_quality(grid, s, rho), fit.offset))
            found = np.stack(rows)
            self.tables[key] = found
        return found

    def score(self, query: Query, strategies: Sequence[Strategy] = ()) -> dict[str, np.ndarray]:
        x = self.featurizer.transform_one(query)
        task = self.tasks.get(query.task, -1)
        z = self.core.logits(x[None, :], np.array([task]))[0]
        p = self.calibrator.apply(z)
        if self.interaction_slope is not None and self.interaction_ability is not None:
            p = ia.apply_one(p, self.interaction_ability[task], self.interaction_slope)
        mu = float(x @ self.token_w) + self.token_c
        out = {
            "p_correct": p,
            "output_tokens_p50": np.exp(mu),
            "output_tokens_p90": np.exp(mu + self.token_z90),
        }
        if strategies:
            q = self.interpolate(p, strategies)
            for i, s in enumerate(strategies):
                out[s.name] = q[i]
        return out

    def interpolate(self, p: np.ndarray, strategies: Sequence[Strategy]) -> np.ndarray:
        """Expected quality of each strategy for single-sample probabilities `p` of shape (..., n_tiers),
        read from the table: shape (n_strategies, ...) + p.shape[-1:]."""
        table = self.table(strategies)
        pos = np.clip(p, 0.0, 1.0) * (GRID_POINTS - 1)
        i0 = np.minimum(pos.astype(np.intp), GRID_POINTS - 2)
        w = pos - i0
        cols = np.arange(p.shape[-1])
        return table[:, cols, i0] * (1.0 - w) + table[:, cols, i0 + 1] * w
