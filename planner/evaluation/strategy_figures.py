"""Figures on the recorded (tier, strategy) options of a replay: what each strategy delivered, what the
forecaster promised for it, and how much of the planner's plans went to strategies.

- `options`: per recorded (tier, strategy), on the queries where it was recorded: realised and predicted
  quality and cost, and the same tier's single pass on the same queries (the realised lift of the strategy,
  free of the choice of queries; a large gap between that single pass and the tier's mean elsewhere says the
  logs applied the strategy to non-random queries); on sparse logs the single-pass comparisons are over the
  queries where both were recorded (`queries_with_single_recorded` when fewer);
- `planner_strategy_share`: per plan of interest, the share of queries the planner gave to each strategy;
- `best_uniform_self_consistency_realised`: the realised self-consistency point of highest quality.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from planner.evaluation.policies import PolicyResult
from planner.evaluation.replay import Replay


def strategy_figures(replay: Replay, results: list[PolicyResult], figures: dict[str, Any]) -> dict[str, Any]:
    """The recorded-strategy section of an evaluation report."""
    planner = next(r for r in results if r.name == "planner")
    at_best = next(p for p in planner.points if p.knob == figures["best_single"]["cost_usd"])
    top = max(planner.points, key=lambda p: (p.quality, -p.cost))
    out: dict[str, Any] = {
        "options": [_option(replay, j) for j in replay.strategy_columns()],
        "planner_strategy_share": {
            "at_best_single_cost": _shares(replay, at_best.choice),
            "at_highest_realised_quality": {**_shares(replay, top.choice), "budget_usd_per_query": top.knob},
        },
    }
    sc = next((r for r in results if r.name == "uniform_self_consistency_realised"), None)
    if sc is not None:
        best = max(sc.points, key=lambda p: (p.quality, -p.cost))
        out["best_uniform_self_consistency_realised"] = {
            **best.to_dict(),
            "option": replay.options.options[int(best.knob)].label(),
            "note": sc.note,
        }
    return out


def _option(replay: Replay, j: int) -> dict[str, Any]:
    option = replay.options.options[j]
    mask = replay.mask
    rows = np.flatnonzero(mask[:, j])
    single = replay.tiers.index(option.tier)
    both = np.flatnonzero(mask[:, j] & mask[:, single])  # `rows` unless single passes are sparse too
    q, c = replay.realised_quality, replay.realised_cost
    out = {
        "option": option.label(),
        "queries": int(rows.size),
        "coverage": rows.size / replay.n,
        "quality": float(q[rows, j].mean()),
        "predicted_quality": float(replay.predicted.quality[rows, j].mean()),
        "cost_usd": float(c[rows, j].mean()),
        "predicted_cost_usd": float(replay.predicted.usd[rows, j].mean()),
        "single_quality_same_queries": _mean(q[both, single]),
        "single_cost_usd_same_queries": _mean(c[both, single]),
        "single_quality_all_queries": _mean(q[np.flatnonzero(mask[:, single]), single]),
        "lift_vs_single_pp": _mean(q[both, j] - q[both, single]) * 100,
        "cost_ratio_vs_single": _mean(c[both, j]) / max(_mean(c[both, single]), 1e-300),
    }
    if both.size < rows.size:
        out["queries_with_single_recorded"] = int(both.size)
    return out


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if values.size else float("nan")


def _shares(replay: Replay, choice: np.ndarray) -> dict[str, Any]:
    strategies = Counter(replay.options.options[int(j)].strategy for j in choice)
    return {
        "strategy_share": {s: n / replay.n for s, n in sorted(strategies.items())},
        "queries_on_recorded_strategies": int(np.sum(choice >= replay.n_single)),
    }
