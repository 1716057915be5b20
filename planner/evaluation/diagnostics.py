"""Diagnostics of an evaluation: calibration of each plan, paired bootstrap intervals, forecast resolution.

Each works on a `Replay` and the per-query choices of policies; on sparse logs (outcomes missing where a
tier was not recorded, `planner.evaluation.coverage`) each uses the recorded outcomes only (said per
function); on dense logs they are exactly the dense computations.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from planner.evaluation.policies import Point
from planner.evaluation.replay import Replay


def paired_ci(
    replay: Replay,
    a: np.ndarray,
    b: np.ndarray,
    level: float = 0.95,
    draws: int = 2000,
    seed: int = 0,
    rows: np.ndarray | None = None,
) -> list[float]:
    """Bootstrap interval (over queries, paired) of the realised mean quality of choice `a` minus `b`, in
    points: how much of a difference between two plans on the same queries is sampling noise. `rows`: only
    those queries (each choice recorded on every one of them). Where a choice is not recorded on every query
    (sparse logs), each resample compares the means of `a` and `b` over the resampled queries where each is
    recorded."""
    tail = (1 - level) / 2 * 100
    if rows is not None:
        diff = replay.realised_quality[rows, a[rows]] - replay.realised_quality[rows, b[rows]]
        idx = np.random.default_rng(seed).integers(0, rows.size, size=(draws, rows.size))
        means = diff[idx].mean(axis=1) * 100
        return [float(np.percentile(means, tail)), float(np.percentile(means, 100 - tail))]
    rows = np.arange(replay.n)
    idx = np.random.default_rng(seed).integers(0, replay.n, size=(draws, replay.n))
    if replay.available is not None and not (
        replay.available[rows, a].all() and replay.available[rows, b].all()
    ):
        means = (_resampled_mean(replay, a, idx) - _resampled_mean(replay, b, idx)) * 100
        return [float(np.nanpercentile(means, tail)), float(np.nanpercentile(means, 100 - tail))]
    diff = replay.realised_quality[rows, a] - replay.realised_quality[rows, b]
    means = diff[idx].mean(axis=1) * 100
    return [float(np.percentile(means, tail)), float(np.percentile(means, 100 - tail))]


def _resampled_mean(replay: Replay, choice: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Per bootstrap resample (rows of `idx`), the choice's mean over the resampled queries recording it."""
    rows = np.arange(replay.n)
    q = replay.realised_quality[rows, choice]
    seen = np.isfinite(q)[idx]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(seen, np.nan_to_num(q)[idx], 0.0).sum(axis=1) / seen.sum(axis=1)


def calibration(points: tuple[Point, ...], replay: Replay) -> dict[str, Any]:
    """Predicted vs realised mean quality (points) and spend (relative) of each plan, with the sampling
    standard error of a plan's realised mean quality if its predictions were exact (the noise floor).
    The predicted quality is the promise adjusted for selection optimism; `unadjusted_*` are the same
    figures for the forecasts' own mean (the promise before that adjustment)."""
    rows = np.arange(replay.n)
    signed = np.array([((p.predicted_quality or 0.0) - p.quality) * 100 for p in points])
    raw = signed + np.array([p.optimism * 100 for p in points])
    dq = np.abs(signed)
    ds = np.array([abs((p.predicted_cost or 0.0) - p.cost) / p.cost for p in points if p.cost > 0])
    se = []
    for p in points:
        q = replay.predicted.quality[rows, p.choice]
        se.append(float(np.sqrt(np.sum(q * (1 - q))) / replay.n * 100))
    return {
        "plans": len(points),
        "max_abs_quality_error_pp": float(dq.max()),
        "mean_abs_quality_error_pp": float(dq.mean()),
        "plans_within_1_5pp": int((dq <= 1.5).sum()),
        "mean_signed_quality_error_pp": float(signed.mean()),
        "mean_selection_optimism_pp": float(np.mean([p.optimism * 100 for p in points])),
        "unadjusted_max_abs_quality_error_pp": float(np.abs(raw).max()),
        "unadjusted_plans_within_1_5pp": int((np.abs(raw) <= 1.5).sum()),
        "unadjusted_mean_signed_quality_error_pp": float(raw.mean()),
        "max_sampling_se_pp": float(max(se)),
        "max_rel_spend_error": float(ds.max()) if ds.size else 0.0,
        "mean_rel_spend_error": float(ds.mean()) if ds.size else 0.0,
        "plans_within_5pct_spend": int((ds <= 0.05).sum()),
    }


def resolution(replay: Replay, best: int, contender_pp: float = 2.0) -> dict[str, Any]:
    """How much of the forecast's per-query signal is real, out of fold (least-squares slope and correlation
    of realised on predicted, each centred per tier; slope 1 = calibrated, 0 = noise, < 0 = misleading).

    - `query`: deviation of a (query, tier) from the tier's mean;
    - `contrast_vs_best_single`: a tier's per-query advantage over the best single model, over every tier;
    - `contrast_among_contenders`: the same over the tiers whose mean *predicted* quality is within
      `contender_pp` points of the best single model's: the choices that decide the top of the planner's
      curve. Near or below 0 the planner's per-query switching between near-equal tiers is noise, and plans
      that mix them promise more than they deliver (selection bias)."""
    k = len(replay.tiers)  # the single-pass columns
    p, y = replay.predicted.quality[:, :k], replay.realised_quality[:, :k]
    sparse = bool(np.isnan(y).any())  # sparse logs: only cells (and contrasts) with recorded outcomes
    if sparse:
        p = np.where(np.isnan(y), np.nan, p)
    means = np.nanmean(p, axis=0) if sparse else p.mean(axis=0)
    others = [j for j in range(p.shape[1]) if j != best]
    contenders = [j for j in others if means[j] >= means[best] - contender_pp / 100]
    out: dict[str, Any] = {"query": _slope(p, y)}
    out["contrast_vs_best_single"] = _slope(p[:, others] - p[:, [best]], y[:, others] - y[:, [best]])
    if contenders:
        out["contrast_among_contenders"] = {
            **_slope(p[:, contenders] - p[:, [best]], y[:, contenders] - y[:, [best]]),
            "tiers": [replay.tiers[j] for j in contenders],
        }
    return out


def _slope(x: np.ndarray, z: np.ndarray) -> dict[str, float]:
    """Slope and correlation of z on x, each centred per column (NaN cells, unrecorded, left out)."""
    if np.isnan(z).any():
        seen = ~np.isnan(z)
        with warnings.catch_warnings():  # a contrast never recorded: an all-NaN column, left out below
            warnings.simplefilter("ignore", RuntimeWarning)
            x, z = x - np.nanmean(x, axis=0), z - np.nanmean(z, axis=0)
        x, z = np.where(seen, x, 0.0), np.where(seen, z, 0.0)
    else:
        x, z = x - x.mean(axis=0), z - z.mean(axis=0)
    sxx, szz, sxz = float((x * x).sum()), float((z * z).sum()), float((x * z).sum())
    if sxx <= 0 or szz <= 0:
        return {"slope": float("nan"), "corr": float("nan")}
    return {"slope": sxz / sxx, "corr": float(sxz / np.sqrt(sxx * szz))}
