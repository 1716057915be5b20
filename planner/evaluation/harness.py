"""The evaluation harness: replay a held-out split, sweep the budget, compare with baselines, report metrics.

`evaluate(runs, catalog, cost_model, forecaster_factory)` splits the runs by query, fits the forecaster on the
training split, builds the `Replay` on the held-out split, runs the planner and every baseline and returns an
`EvaluationReport` (JSON-ready via `to_dict`). The weak and strong models of APGR/CPT are chosen on the
training split: strong = the most accurate tier, weak = the cheapest tier. AIQ is taken over the cost range of
the single models (cheapest to most expensive mean cost per query).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from models.api import Forecaster
from planner.catalog import Catalog
from planner.evaluation import metrics, policies
from planner.evaluation.policies import PolicyResult
from planner.evaluation.replay import Replay, build_replay, split_queries
from planner.options import CostModelLike, QualityFn

ForecasterFactory = Callable[[pd.DataFrame], Forecaster]
CPT_LEVELS = (50.0, 80.0, 95.0)


@dataclass(frozen=True)
class EvaluationReport:
    """Every figure of one evaluation run."""

    n_train_queries: int
    n_test_queries: int
    forecaster: str
    weak: str
    strong: str
    policies: tuple[PolicyResult, ...]
    figures: dict[str, Any]
    notes: tuple[str, ...] = field(default_factory=tuple)

    def policy(self, name: str) -> PolicyResult:
        return next(p for p in self.policies if p.name == name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_train_queries": self.n_train_queries,
            "n_test_queries": self.n_test_queries,
            "forecaster": self.forecaster,
            "weak": self.weak,
            "strong": self.strong,
            "figures": self.figures,
            "notes": list(self.notes),
            "policies": [
                {
                    "name": p.name,
                    "kind": p.kind,
                    "realised": p.realised,
                    "note": p.note,
                    "points": [pt.to_dict() for pt in p.points],
                }
                for p in self.policies
            ],
        }


def identity_quality(p_single: np.ndarray, strategy: object) -> np.ndarray:
    """The strategy response of a single plain pass (the replay offers only those)."""
    return p_single


def evaluate(
    runs: pd.DataFrame,
    catalog: Catalog,
    cost_model: CostModelLike,
    forecaster_factory: ForecasterFactory,
    test_fraction: float = 0.3,
    seed: int = 0,
    quality_fn: QualityFn | None = None,
    knn_k: int = 25,
) -> EvaluationReport:
    """Run the whole evaluation on prepared runs (see `models.data.prepare_runs`)."""
    split = split_queries(runs, test_fraction, seed)
    forecaster = forecaster_factory(split.train)
    replay = build_replay(catalog, cost_model, forecaster, split.test, quality_fn or identity_quality)
    singles = policies.single_models(replay)
    weak, strong = _weak_strong(replay, split.train)
    planner = policies.planner_sweep(replay)
    results = [
        planner,
        *singles,
        policies.random_mix(replay, weak, strong, seed=seed),
        policies.threshold_router(replay, split.train, weak, strong),
        policies.knn_router(replay, split.train, k=knn_k),
        policies.oracle(replay),
    ]
    figures = _figures(replay, results, singles, weak, strong)
    return EvaluationReport(
        n_train_queries=int(split.train["query_id"].nunique()),
        n_test_queries=replay.n,
        forecaster=type(forecaster).__name__,
        weak=replay.tiers[weak],
        strong=replay.tiers[strong],
        policies=tuple(results),
        figures=figures,
        notes=replay.notes,
    )


def _weak_strong(replay: Replay, train: pd.DataFrame) -> tuple[int, int]:
    acc = train.groupby("tier")["score"].mean().reindex(list(replay.tiers)).to_numpy(float)
    strong = int(np.nanargmax(acc))
    mean_cost = replay.realised_cost.mean(axis=0)
    weak = int(np.argmin(mean_cost))
    if weak == strong:
        weak = int(np.argsort(mean_cost)[1])
    return weak, strong


def _figures(
    replay: Replay,
    results: list[policies.PolicyResult],
    singles: list[policies.PolicyResult],
    weak: int,
    strong: int,
) -> dict[str, Any]:
    single_pts = [s.points[0] for s in singles]
    wk = (single_pts[weak].cost, single_pts[weak].quality)
    st = (single_pts[strong].cost, single_pts[strong].quality)
    best = max(range(len(single_pts)), key=lambda j: (single_pts[j].quality, -single_pts[j].cost))
    best_pt = single_pts[best]
    c_min = min(p.cost for p in single_pts)
    c_max = max(p.cost for p in single_pts)
    routers: dict[str, Any] = {}
    for r in results:
        if r.kind != "router":
            continue
        curve = r.curve()
        entry: dict[str, Any] = {"aiq": metrics.aiq(curve, c_min, c_max)}
        if st[0] > wk[0] and st[1] > wk[1]:
            entry["apgr"] = metrics.apgr(curve, wk, st)
            entry.update({f"cpt{int(x)}": metrics.cpt(curve, wk, st, x) for x in CPT_LEVELS})
        entry["quality_at_best_single_cost"] = float(metrics.quality_at(curve, best_pt.cost))
        entry["cost_to_best_single_quality"] = metrics.cost_to_reach(curve, best_pt.quality)
        routers[r.name] = entry
    at_budget = policies.planner_at_budget(replay, best_pt.cost)
    planner_pts = next(r for r in results if r.name == "planner").points
    calib = _calibration(planner_pts)
    oracle_pt = next(r for r in results if r.name == "oracle").points[0]
    return {
        "best_single": {"tier": replay.tiers[best], "quality": best_pt.quality, "cost_usd": best_pt.cost},
        "single_models": {
            replay.tiers[j]: {"quality": p.quality, "cost_usd": p.cost} for j, p in enumerate(single_pts)
        },
        "aiq_cost_range": [c_min, c_max],
        "routers": routers,
        "oracle": {"quality": oracle_pt.quality, "cost_usd": oracle_pt.cost},
        "planner_at_best_single_cost": {
            **at_budget.to_dict(),
            "budget_usd_per_query": best_pt.cost,
            "quality_minus_best_single": at_budget.quality - best_pt.quality,
            "cost_ratio": at_budget.cost / best_pt.cost,
        },
        "planner_cost_ratio_to_reach_best_single": routers["planner"]["cost_to_best_single_quality"]
        / best_pt.cost,
        "planner_calibration": calib,
    }


def _calibration(points: tuple[policies.Point, ...]) -> dict[str, float]:
    """Predicted vs realised mean quality (in points) and spend (relative) over the planner's plans."""
    dq = [abs((p.predicted_quality or 0.0) - p.quality) * 100 for p in points]
    ds = [abs((p.predicted_cost or 0.0) - p.cost) / p.cost for p in points if p.cost > 0]
    return {
        "max_abs_quality_error_pp": float(max(dq)),
        "mean_abs_quality_error_pp": float(np.mean(dq)),
        "max_rel_spend_error": float(max(ds)) if ds else 0.0,
        "mean_rel_spend_error": float(np.mean(ds)) if ds else 0.0,
    }
