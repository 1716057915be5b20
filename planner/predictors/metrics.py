"""Held-out metrics of a forecaster on stored runs: Brier score, log loss, AUC, expected calibration error per
tier and overall, and the output-token p50 error and p90 coverage (scikit-learn's metrics where it has them).

Only plain single-sample runs on tiers the forecaster knows are scored: that is what `Forecast.p_correct` and
the token quantiles describe. A run's label for AUC is `score >= 0.5`; Brier, log loss and ECE use the score.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score

from models.api import Forecaster
from models.data import plain_runs, queries_from_frame
from models.report import json_safe

ECE_BINS = 10
"""Equal-width bins, as `models.evaluate` uses."""
EPS = 1e-6


@dataclass(frozen=True)
class TierMetrics:
    tier: str
    n: int
    brier: float
    auc: float
    ece: float
    base_rate: float


@dataclass(frozen=True)
class EvaluationMetrics:
    """Held-out quality of a forecaster (NaN where a figure is undefined, e.g. AUC with one class)."""

    n: int
    brier: float
    log_loss: float
    auc: float
    ece: float
    baseline_brier: float = math.nan
    token_mape: float = 0.0
    token_p90_coverage: float = math.nan
    per_tier: tuple[TierMetrics, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (NaN becomes None)."""
        return json_safe(asdict(self))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EvaluationMetrics:
        tiers = tuple(TierMetrics(**{k: _num(v) for k, v in t.items()}) for t in data.get("per_tier", ()))
        scalars = {k: _num(v) for k, v in data.items() if k != "per_tier" and k in cls.__dataclass_fields__}
        return cls(**scalars, per_tier=tiers)


def _num(value: Any) -> Any:
    return math.nan if value is None else value


@dataclass(frozen=True)
class Scored:
    """Per-run forecasts and outcomes of the scorable runs of a frame."""

    tier: np.ndarray
    score: np.ndarray
    p: np.ndarray
    tokens: np.ndarray
    p50: np.ndarray
    p90: np.ndarray


def score_runs(forecaster: Forecaster, prepared: pd.DataFrame) -> Scored:
    """Forecast every plain run of a prepared frame whose tier the forecaster knows."""
    runs = plain_runs(prepared)
    runs = runs[runs["tier"].isin(forecaster.tiers)]
    if runs.empty:
        empty = np.zeros(0)
        return Scored(np.zeros(0, dtype=object), empty, empty, empty, empty, empty)
    queries = queries_from_frame(runs)
    forecast = forecaster.forecast(queries)
    q_index = {q.query_id: i for i, q in enumerate(queries)}
    t_index = {t: i for i, t in enumerate(forecast.tiers)}
    qi = runs["query_id"].map(q_index).to_numpy(int)
    ti = runs["tier"].map(t_index).to_numpy(int)
    return Scored(
        tier=runs["tier"].to_numpy(object),
        score=runs["score"].to_numpy(float),
        p=np.clip(forecast.p_correct[qi, ti], EPS, 1 - EPS),
        tokens=runs["output_tokens"].to_numpy(float),
        p50=forecast.output_tokens_p50[qi, ti],
        p90=forecast.output_tokens_p90[qi, ti],
    )


def expected_calibration_error(p: np.ndarray, y: np.ndarray, bins: int = ECE_BINS) -> float:
    """Run-weighted mean |mean forecast - mean outcome| over equal-width probability bins."""
    if len(p) == 0:
        return math.nan
    which = np.minimum((p * bins).astype(int), bins - 1)
    counts = np.bincount(which, minlength=bins)
    gap = np.abs(np.bincount(which, p, bins) - np.bincount(which, y, bins))
    return float(gap.sum() / counts.sum())


def _auc(y: np.ndarray, p: np.ndarray) -> float:
    labels = y >= 0.5
    if labels.all() or not labels.any():
        return math.nan
    return float(roc_auc_score(labels, p))


def _tier_metrics(s: Scored) -> tuple[TierMetrics, ...]:
    out = []
    for tier in sorted(set(s.tier.tolist())):
        m = s.tier == tier
        y, p = s.score[m], s.p[m]
        out.append(
            TierMetrics(
                tier=str(tier),
                n=int(m.sum()),
                brier=float(brier_score_loss(y >= 0.5, p)) if _binary(y) else _brier(y, p),
                auc=_auc(y, p),
                ece=expected_calibration_error(p, y),
                base_rate=float(y.mean()),
            )
        )
    return tuple(out)


def _binary(y: np.ndarray) -> bool:
    return bool(np.all((y == 0) | (y == 1)))


def _brier(y: np.ndarray, p: np.ndarray) -> float:
    return float(np.mean((p - y) ** 2)) if len(y) else math.nan


def _token_figures(s: Scored) -> tuple[float, float]:
    ok = np.isfinite(s.tokens) & (s.tokens > 0)
    if not ok.any():
        return 0.0, math.nan
    t = s.tokens[ok]
    mape = float(np.mean(np.abs(s.p50[ok] - t) / t))
    return mape, float(np.mean(t <= s.p90[ok]))


def holdout_metrics(
    forecaster: Forecaster, prepared: pd.DataFrame, baseline: Forecaster | None = None
) -> EvaluationMetrics:
    """Metrics of `forecaster` on the runs of a prepared frame; `baseline_brier` from `baseline` on the same
    runs (NaN without one)."""
    s = score_runs(forecaster, prepared)
    if len(s.p) == 0:
        return EvaluationMetrics(n=0, brier=math.nan, log_loss=math.nan, auc=math.nan, ece=math.nan)
    mape, coverage = _token_figures(s)
    pooled, per_tier = _models_figures(forecaster, prepared) or _own_figures(s)
    return EvaluationMetrics(
        **pooled,
        baseline_brier=_baseline_brier(baseline, prepared, s),
        token_mape=mape,
        token_p90_coverage=coverage,
        per_tier=per_tier,
    )


Figures = tuple[dict[str, Any], tuple[TierMetrics, ...]]


def _own_figures(s: Scored) -> Figures:
    pooled = {
        "n": len(s.p),
        "brier": _brier(s.score, s.p),
        "log_loss": float(log_loss(s.score >= 0.5, s.p, labels=[False, True]))
        if _binary(s.score)
        else _soft_log_loss(s.score, s.p),
        "auc": _auc(s.score, s.p),
        "ece": expected_calibration_error(s.p, s.score),
    }
    return pooled, _tier_metrics(s)


def _models_figures(forecaster: Forecaster, prepared: pd.DataFrame) -> Figures | None:
    """The probability figures of `models.evaluate.evaluate` (the same numbers `planner evaluate` and the
    models benchmarks report), or None when that module is not installed."""
    try:
        from models.evaluate import evaluate
    except ImportError:
        return None
    ev = evaluate("candidate", forecaster, prepared)

    def auc(value: float | None) -> float:
        return math.nan if value is None else float(value)

    p = ev.pooled
    pooled = {"n": p.n, "brier": p.brier, "log_loss": p.log_loss, "auc": auc(p.auc), "ece": p.ece}
    tiers = tuple(
        TierMetrics(tier, t.n, t.brier, auc(t.auc), t.ece, t.base_rate)
        for tier, t in sorted(ev.per_tier.items())
    )
    return pooled, tiers


def _soft_log_loss(y: np.ndarray, p: np.ndarray) -> float:
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def _baseline_brier(baseline: Forecaster | None, prepared: pd.DataFrame, s: Scored) -> float:
    if baseline is None:
        return math.nan
    b = score_runs(baseline, prepared)
    return _brier(b.score, b.p)
