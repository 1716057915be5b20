"""Evaluation of forecasters on held-out queries: per-tier AUC, Brier, log-loss, ECE, reliability, token
error.

Pure functions over prepared run frames (`models.data.prepare_runs`) and any `models.api.Forecaster`:
`split_queries` makes a query-level split (a query's runs all land on one side), `drop_cells` removes a random
share of (query, tier) cells from a training frame, `evaluate` scores one forecaster on a test frame and
returns an `Evaluation` (per-tier and pooled figures, reliability bins, token error). The CLI (`planner
evaluate`) and `bench/predictors_*.py` print these side by side for the predictor and its baselines.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from models.api import Forecaster
from models.data import index_of, plain_runs, queries_from_frame, query_keys

N_BINS = 10
"""Equal-width probability bins for ECE and the reliability diagram."""

_EPS = 1e-6


@dataclass(frozen=True)
class BinaryScores:
    """Probability-forecast figures for one set of (prediction, outcome) pairs."""

    n: int
    base_rate: float
    auc: float | None
    brier: float
    log_loss: float
    ece: float


@dataclass(frozen=True)
class Reliability:
    """Reliability diagram data: per bin, mean forecast, observed frequency and count."""

    mean_p: tuple[float, ...]
    observed: tuple[float, ...]
    count: tuple[int, ...]


@dataclass(frozen=True)
class TokenScores:
    """Output-token forecast error: median absolute log error of p50, share of runs at or below p90."""

    n: int
    median_abs_log_error: float
    p90_coverage: float


@dataclass(frozen=True)
class Evaluation:
    """One forecaster on one test frame."""

    name: str
    pooled: BinaryScores
    per_tier: dict[str, BinaryScores]
    reliability: Reliability
    tokens: TokenScores | None
    mean_tier_auc: float
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def split_queries(
    runs: pd.DataFrame, test_fraction: float = 0.3, seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, test): a seeded query-level split of a prepared frame; `test_fraction` of the queries test."""
    keys = query_keys(runs)
    unique = np.array(list(dict.fromkeys(keys)))
    rng = np.random.default_rng(seed)
    test = set(rng.choice(unique, size=round(test_fraction * len(unique)), replace=False).tolist())
    in_test = keys.isin(test).to_numpy()
    return runs[~in_test].reset_index(drop=True), runs[in_test].reset_index(drop=True)


def drop_cells(runs: pd.DataFrame, fraction: float, seed: int = 0) -> pd.DataFrame:
    """The frame without a seeded random `fraction` of its (query, tier) cells (all runs of each)."""
    cell = query_keys(runs) + "\x1f" + runs["tier"].astype(str)
    unique = np.array(list(dict.fromkeys(cell)))
    rng = np.random.default_rng(seed)
    dropped = set(rng.choice(unique, size=round(fraction * len(unique)), replace=False).tolist())
    return runs[~cell.isin(dropped).to_numpy()].reset_index(drop=True)


def binary_scores(y: np.ndarray, p: np.ndarray, n_bins: int = N_BINS) -> BinaryScores:
    """AUC (None when one class is absent), Brier, log-loss and ECE of forecasts `p` for outcomes `y`."""
    y = np.asarray(y, dtype=float)
    p = np.clip(np.asarray(p, dtype=float), _EPS, 1 - _EPS)
    hard = y >= 0.5
    auc = float(roc_auc_score(hard, p)) if 0 < hard.sum() < len(hard) else None
    return BinaryScores(
        n=len(y),
        base_rate=float(y.mean()),
        auc=auc,
        brier=float(np.mean((p - y) ** 2)),
        log_loss=float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))),
        ece=expected_calibration_error(y, p, n_bins),
    )


def _bins(p: np.ndarray, n_bins: int) -> np.ndarray:
    return np.minimum((np.asarray(p) * n_bins).astype(int), n_bins - 1)


def expected_calibration_error(y: np.ndarray, p: np.ndarray, n_bins: int = N_BINS) -> float:
    """Sum over equal-width bins of (bin share) x |mean forecast - observed frequency|."""
    b = _bins(p, n_bins)
    count = np.bincount(b, minlength=n_bins).astype(float)
    gap = np.abs(np.bincount(b, p, n_bins) - np.bincount(b, y, n_bins))
    return float(gap.sum() / max(count.sum(), 1.0))


def reliability(y: np.ndarray, p: np.ndarray, n_bins: int = N_BINS) -> Reliability:
    b = _bins(p, n_bins)
    count = np.bincount(b, minlength=n_bins)
    safe = np.maximum(count, 1)
    mean_p = np.bincount(b, p, n_bins) / safe
    observed = np.bincount(b, y, n_bins) / safe
    return Reliability(
        mean_p=tuple(float(v) for v in mean_p),
        observed=tuple(float(v) for v in observed),
        count=tuple(int(v) for v in count),
    )


def token_scores(actual: np.ndarray, p50: np.ndarray, p90: np.ndarray) -> TokenScores | None:
    ok = np.isfinite(actual) & (actual > 0)
    if not ok.any():
        return None
    err = np.abs(np.log(actual[ok]) - np.log(np.maximum(p50[ok], 1e-9)))
    return TokenScores(
        n=int(ok.sum()),
        median_abs_log_error=float(np.median(err)),
        p90_coverage=float(np.mean(actual[ok] <= p90[ok])),
    )


def evaluate(name: str, forecaster: Forecaster, test: pd.DataFrame) -> Evaluation:
    """Score `forecaster` on the plain runs of a prepared test frame whose tier the forecaster knows."""
    frame = plain_runs(test)
    frame = frame[frame["tier"].isin(forecaster.tiers)]
    keys = query_keys(frame)
    fc = forecaster.forecast(queries_from_frame(frame))
    q = index_of(keys, list(dict.fromkeys(keys)))
    t = index_of(frame["tier"], fc.tiers)
    p = fc.p_correct[q, t]
    y = frame["score"].to_numpy(float)
    tiers = frame["tier"].to_numpy()
    per_tier = {str(tier): binary_scores(y[tiers == tier], p[tiers == tier]) for tier in sorted(set(tiers))}
    aucs = [s.auc for s in per_tier.values() if s.auc is not None]
    tokens = token_scores(
        frame["output_tokens"].to_numpy(float), fc.output_tokens_p50[q, t], fc.output_tokens_p90[q, t]
    )
    return Evaluation(
        name=name,
        pooled=binary_scores(y, p),
        per_tier=per_tier,
        reliability=reliability(y, p),
        tokens=tokens,
        mean_tier_auc=float(np.mean(aucs)) if aucs else float("nan"),
    )


def summary_rows(evaluations: Sequence[Evaluation]) -> list[dict[str, Any]]:
    """One flat row per forecaster: the headline figures."""
    rows = []
    for ev in evaluations:
        rows.append(
            {
                "forecaster": ev.name,
                "mean_tier_auc": ev.mean_tier_auc,
                "pooled_auc": ev.pooled.auc,
                "brier": ev.pooled.brier,
                "log_loss": ev.pooled.log_loss,
                "ece": ev.pooled.ece,
                "token_mdale": ev.tokens.median_abs_log_error if ev.tokens else None,
                "token_p90_coverage": ev.tokens.p90_coverage if ev.tokens else None,
                **ev.extra,
            }
        )
    return rows
