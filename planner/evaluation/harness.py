"""The evaluation harness: replay a held-out split, sweep the budget, compare with baselines, report metrics.

`evaluate(runs, catalog, cost_model, forecaster_factory)` splits the runs by query (k-fold cross-fitting by
default: every query is held out once), fits the forecaster on each training part, builds the `Replay` of the
held-out queries, runs the planner (budget sweep through `planner.solve`) and every baseline, adds the
simulated strategy figures, and returns an `EvaluationReport` (JSON-ready via `to_dict`).

The planner and the oracle choose among every replay option: each tier's single pass and every (tier,
strategy) whose outcomes the held-out runs record (`planner.evaluation.replay`); when recorded strategies
include majority votes, the realised `uniform_self_consistency_realised` baseline is added. The single-model,
random, threshold and kNN baselines stay over single-pass tiers.

Reference points: the best single model is the most accurate tier's single pass on the replayed queries
(ex post, the strictest bar); APGR/CPT use strong = that model and weak = the cheapest tier. AIQ is taken over
the cost range of the single models (cheapest to most expensive mean realised cost per query). The planner's
headline plan at the best single model's cost has a hard budget of that model's realised mean cost per query.

Sparse logs (`planner.evaluation.coverage`, masked design; how each policy is scored: `policies`): a single
model's quality and cost are its means over the queries where it was recorded, its estimated full-coverage
means assuming coverage is missing at random (`figures["coverage"]` checks that per tier). The planner is
scored over *every* replay query, choosing only among the options recorded on each, and compared with those
estimates: "at the best single's cost" is the plan with a hard budget of the best single's estimated mean
cost x n, against its estimated mean quality. We compare whole plans with the population figure rather than
the planner's plan restricted to the best single's queries because a plan is made for the whole batch under
one total budget (its slice on a subset has no budget of its own), and because on those queries the planner
is offered the best single while elsewhere it is not, so the slice would not be a random part of the plan.
The footing is conservative for the planner: each query offers it only the tiers recorded there, while the
single models are credited with their full-coverage estimates, and the ex-post best single is the highest of
several noisy estimates (each over its own part of the queries), so it is biased upwards. A planner below
the best single on sparse logs says little about full-coverage traffic (where every tier is on offer); one
above it is evidence that it would stay above there. The confidence interval of the difference is a
bootstrap over queries of both means (each over its own recorded queries). Secondary, paired:
`on_reference_queries` is the same plan on the queries where the best single was recorded (where the planner
was offered it). The weak tier is the cheapest tier recorded together with the best single on at least
`coverage.MIN_RECORDED_QUERIES` queries (the cheapest tier when none is), so the random mix and the threshold
router have queries to be scored on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from models.api import Forecaster
from planner.catalog import Catalog
from planner.errors import FailedPreconditionError
from planner.evaluation import metrics, policies, simulated
from planner.evaluation.coverage import MIN_RECORDED_QUERIES, missing_at_random_check
from planner.evaluation.diagnostics import calibration, paired_ci, resolution
from planner.evaluation.policies import Point, PolicyResult
from planner.evaluation.replay import CrossFitForecaster, Replay, build_replay, keyed, query_folds
from planner.evaluation.strategy_figures import strategy_figures
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
    """A strategy response equal to the single-sample forecast (tests; the harness itself uses the
    forecaster's fitted response, and the single pass is the forecast either way)."""
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
    folds: int = 5,
    simulate: bool = True,
    n_budgets: int = 40,
) -> EvaluationReport:
    """Run the whole evaluation on prepared runs (see `models.data.prepare_runs`).

    `folds >= 2` cross-fits (every query held out once, forecast by the model trained on the other folds);
    `folds == 1` holds out one seeded `test_fraction` of the queries. `quality_fn` overrides the strategy
    response of each fold's fitted forecaster (default: its `quality_fn`, else the closed forms).

    Raises FailedPreconditionError when fewer than two priced tiers with recorded single-pass outcomes remain
    (no weak/strong pair to compare)."""
    splits = query_folds(keyed(runs), folds, seed, test_fraction)
    forecaster = CrossFitForecaster.fit(splits, forecaster_factory)
    test = pd.concat([s.test for s in splits], ignore_index=True)
    replay = build_replay(catalog, cost_model, forecaster, test, quality_fn)
    _require_tiers(replay, runs)
    fold = np.array([forecaster.fold_of[q.query_id] for q in replay.queries], dtype=np.intp)
    singles = policies.single_models(replay)
    best = _best_single(singles)
    weak, strong = _weak_strong(replay, best)
    best_cost = singles[best].points[0].cost
    ex_ante = policies.best_single_ex_ante(replay, splits, fold)
    extra = [best_cost, ex_ante.points[0].cost]
    grid = policies.budget_grid(
        replay.predicted.usd, replay.predicted.quality, n_budgets, extra, feasible=replay.feasible
    )
    pair = [
        policies.random_mix(replay, weak, strong, seed=seed),
        policies.threshold_router(replay, splits, fold, weak, strong),
    ]
    results = [
        policies.planner_sweep(replay, grid),
        *singles,
        *(r for r in pair if r is not None),
        policies.knn_router(replay, splits, fold, k=knn_k),
        policies.oracle(replay),
        ex_ante,
    ]
    notes_extra = _pair_notes(replay, weak, strong, pair)
    notes_extra += _add_self_consistency(replay, results)
    figures = _figures(replay, results, singles, best, weak, strong)
    if replay.strategy_columns():
        figures["recorded_strategies"] = strategy_figures(replay, results, figures)
    figures["targets"] = targets(figures)
    notes = [*replay.notes, *notes_extra]
    if simulate:
        sim_results, sim_fig = _simulated(catalog, cost_model, replay, figures, n_budgets)
        results.extend(sim_results)
        figures["simulated"] = sim_fig
        notes.append(
            "simulated figures (uniform_self_consistency, planner_all_strategies) are NOT replayed outcomes: "
            "see planner.evaluation.simulated"
        )
    return EvaluationReport(
        n_train_queries=int(np.mean([s.train["query_id"].nunique() for s in splits])),
        n_test_queries=replay.n,
        forecaster=str(forecaster),
        weak=replay.tiers[weak],
        strong=replay.tiers[strong],
        policies=tuple(results),
        figures=figures,
        notes=tuple(notes),
    )


def _pair_notes(replay: Replay, weak: int, strong: int, pair: list[PolicyResult | None]) -> list[str]:
    if all(r is not None for r in pair):
        return []
    return [
        f"random_mix and threshold_router left out: no held-out query records both {replay.tiers[weak]} "
        f"and {replay.tiers[strong]} (they are scored only where both were recorded)"
    ]


def _add_self_consistency(replay: Replay, results: list[PolicyResult]) -> list[str]:
    """Append the realised uniform self-consistency baseline when votes are recorded; its caveat notes."""
    self_consistency = policies.uniform_self_consistency_realised(replay)
    if self_consistency is None:
        return []
    results.append(self_consistency)
    if "part of the queries" not in self_consistency.note:
        return []
    return [
        "uniform_self_consistency_realised: votes recorded on part of the queries only; each point is the "
        "mean over the queries where it was recorded, while the planner may use a strategy only where it "
        "was recorded, so this comparison favours self-consistency (it needs logs recording the vote on "
        "every query to be head to head)"
    ]


def _best_single(singles: list[PolicyResult]) -> int:
    """The most accurate single model on the replay (ties: the cheaper); the strictest reference."""
    pts = [s.points[0] for s in singles]
    return max(range(len(pts)), key=lambda j: (pts[j].quality, -pts[j].cost))


def _require_tiers(replay: Replay, runs: pd.DataFrame) -> None:
    """At least two single-pass tiers: a weak/strong pair and a cost range to compare policies over."""
    if replay.n_single >= 2:
        return
    with_runs = sorted(set(runs["tier"].astype(str)))
    raise FailedPreconditionError(
        f"the replay needs at least 2 priced tiers with recorded single-pass outcomes, {replay.n_single} "
        f"remained ({list(replay.tiers)}) of {len(with_runs)} tiers with runs; {len(replay.options)} replay "
        f"option(s). Why the others were left out: {'; '.join(replay.notes[:-1]) or 'no note'}"
    )


def _weak_strong(replay: Replay, best: int) -> tuple[int, int]:
    """Strong: the best single model; weak: the cheapest tier (by realised mean cost) -- on sparse logs the
    cheapest recorded together with the strong one on enough queries to score the pair routers on."""
    order = [int(j) for j in np.argsort(replay.single_means()[1], kind="stable") if int(j) != best]
    mask = replay.single_mask
    if mask is not None:
        together = [j for j in order if int((mask[:, j] & mask[:, best]).sum()) >= MIN_RECORDED_QUERIES]
        order = together or order
    return order[0], best


def _router_metrics(
    r: PolicyResult, c_range: tuple[float, float], wk: tuple[float, float], st: tuple[float, float]
) -> dict[str, Any]:
    curve = r.curve()
    entry: dict[str, Any] = {"aiq": metrics.aiq(curve, *c_range), "realised": r.realised}
    if st[0] > wk[0] and st[1] > wk[1]:
        entry["apgr"] = metrics.apgr(curve, wk, st)
        entry.update({f"cpt{int(x)}": metrics.cpt(curve, wk, st, x) for x in CPT_LEVELS})
    entry["quality_at_best_single_cost"] = float(metrics.quality_at(curve, st[0]))
    entry["cost_ratio_to_reach_best_single"] = metrics.cost_to_reach(curve, st[1]) / st[0]
    return entry


def _figures(
    replay: Replay,
    results: list[PolicyResult],
    singles: list[PolicyResult],
    best: int,
    weak: int,
    strong: int,
) -> dict[str, Any]:
    single_pts = [s.points[0] for s in singles]
    wk = (single_pts[weak].cost, single_pts[weak].quality)
    st = (single_pts[strong].cost, single_pts[strong].quality)
    best_pt = single_pts[best]
    c_range = (min(p.cost for p in single_pts), max(p.cost for p in single_pts))
    routers = {r.name: _router_metrics(r, c_range, wk, st) for r in results if r.kind == "router"}
    planner = next(r for r in results if r.name == "planner")
    oracle_pt = next(r for r in results if r.name == "oracle").points[0]
    ex_ante = next(r for r in results if r.name == "best_single_ex_ante")
    aiq = {name: r["aiq"] for name, r in routers.items()}
    out: dict[str, Any] = {
        "best_single": {"tier": replay.tiers[best], "quality": best_pt.quality, "cost_usd": best_pt.cost},
        "weak": {"tier": replay.tiers[weak], "quality": wk[1], "cost_usd": wk[0]},
        "single_models": {
            replay.tiers[j]: {"quality": p.quality, "cost_usd": p.cost} for j, p in enumerate(single_pts)
        },
        "aiq_cost_range": list(c_range),
        "routers": routers,
        "oracle": {"quality": oracle_pt.quality, "cost_usd": oracle_pt.cost},
        "planner_at_best_single_cost": _at_cost(replay, planner, best_pt),
        "planner_reaches_best_single": _reach(planner, best_pt, routers["planner"]),
        "best_single_ex_ante": {**ex_ante.points[0].to_dict(), "note": ex_ante.note},
        "planner_at_ex_ante_best_single_cost": _at_cost(replay, planner, ex_ante.points[0]),
        "planner_reaches_ex_ante_best_single": _reach(planner, ex_ante.points[0]),
        "planner_aiq_beats": {
            name: aiq["planner"] > aiq[name]
            for name in ("threshold_router", "knn_router", "random_mix")
            if name in aiq
        },
        "planner_calibration": calibration(planner.points, replay),
        "forecast_resolution": resolution(replay, best),
    }
    single = replay.single_mask
    if single is not None:
        out["coverage"] = {
            "design": replay.design,
            "assumption": "coverage missing at random: a tier's mean over the queries where it was recorded "
            "estimates its mean over all of them; others_gap_pp near 0 (within ~2 se_pp) is consistent "
            "with it, a gap of several points says that tier's figures are biased by about as much",
            "queries": replay.n,
            "tiers_per_query": {
                "min": int(single.sum(axis=1).min()),
                "mean": float(single.sum(axis=1).mean()),
                "max": int(single.sum(axis=1).max()),
            },
            "tiers": missing_at_random_check(
                replay.realised_quality[:, : replay.n_single], single, replay.tiers
            ),
        }
    return out


def _at_cost(replay: Replay, planner: PolicyResult, ref: Point) -> dict[str, Any]:
    """The planner's plan with a hard budget of the reference's realised cost per query, against it (sparse
    logs: the plan over every query against the reference's mean over its recorded queries; module doc)."""
    at = next(p for p in planner.points if p.knob == ref.cost)
    footing = _sparse_footing(replay, at, ref) if replay.single_mask is not None else {}
    return {
        **at.to_dict(),
        **footing,
        "budget_usd_per_query": ref.cost,
        "reference_quality": ref.quality,
        "quality_minus_reference_pp": (at.quality - ref.quality) * 100,
        "quality_minus_reference_ci95_pp": paired_ci(replay, at.choice, ref.choice),
        "cost_ratio": at.cost / ref.cost,
        "target_met": at.quality >= ref.quality,
    }


def _sparse_footing(replay: Replay, at: Point, ref: Point) -> dict[str, Any]:
    """How the plan and the reference are compared on sparse logs, and (secondary, paired) the same plan on
    the queries where the reference was recorded -- a slice of a plan budgeted for all queries, on queries
    where it was offered the reference, so not the headline (module docstring)."""
    rows = replay.recorded_rows(ref.choice)
    q, c = replay.realised_quality, replay.realised_cost
    planner_q, ref_q = float(q[rows, at.choice[rows]].mean()), float(q[rows, ref.choice[rows]].mean())
    return {
        "footing": (
            f"planner over all {replay.n} queries (choosing among the options recorded on each) vs the "
            f"reference's mean over the {rows.size} queries where it was recorded"
        ),
        "on_reference_queries": {
            "queries": int(rows.size),
            "planner_quality": planner_q,
            "planner_cost_usd": float(c[rows, at.choice[rows]].mean()),
            "reference_quality": ref_q,
            "reference_cost_usd": float(c[rows, ref.choice[rows]].mean()),
            "quality_minus_reference_pp": (planner_q - ref_q) * 100,
            "quality_minus_reference_ci95_pp": paired_ci(replay, at.choice, ref.choice, rows=rows),
        },
    }


def _reach(planner: PolicyResult, ref: Point, router: dict[str, Any] | None = None) -> dict[str, Any]:
    """The cheapest swept plan whose realised quality reaches the reference's (no interpolation)."""
    reach = [p for p in planner.points if p.quality >= ref.quality]
    cheapest = min(reach, key=lambda p: p.cost) if reach else None
    out: dict[str, Any] = {
        "plan": cheapest.to_dict() if cheapest else None,
        "cost_ratio": cheapest.cost / ref.cost if cheapest else float("inf"),
        "target_met": bool(cheapest and cheapest.cost <= 0.30 * ref.cost),
    }
    if router is not None:
        out["cost_ratio_interpolated"] = router["cost_ratio_to_reach_best_single"]
    return out


def targets(figures: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The allocation issue's acceptance figures, each with its measured value and whether it is met."""
    at = figures["planner_at_best_single_cost"]
    reach = figures["planner_reaches_best_single"]
    ea = figures["planner_at_ex_ante_best_single_cost"]
    aiq = {k: v["aiq"] for k, v in figures["routers"].items()}
    cal = figures["planner_calibration"]
    return {
        "quality_at_best_single_cost": {
            "target": ">= best single's realised accuracy (0 pp or more)",
            "value_pp": at["quality_minus_reference_pp"],
            "ci95_pp": at["quality_minus_reference_ci95_pp"],
            "met": bool(at["target_met"]),
        },
        "cost_to_reach_best_single": {
            "target": "<= 0.30 of the best single's cost",
            "value": reach["cost_ratio"],
            "met": bool(reach["target_met"]),
        },
        "quality_at_ex_ante_best_single_cost": {
            "target": "secondary: >= the accuracy of the tier most accurate on each fold's training runs",
            "value_pp": ea["quality_minus_reference_pp"],
            "ci95_pp": ea["quality_minus_reference_ci95_pp"],
            "met": bool(ea["target_met"]),
        },
        "cost_to_reach_ex_ante_best_single": {
            "target": "secondary: <= 0.30 of that ex-ante best single's cost",
            "value": figures["planner_reaches_ex_ante_best_single"]["cost_ratio"],
            "met": bool(figures["planner_reaches_ex_ante_best_single"]["target_met"]),
        },
        "aiq_vs_threshold_and_knn": {
            "target": "planner AIQ > threshold_router and knn_router",
            "value": {k: aiq.get(k) for k in ("planner", "threshold_router", "knn_router")},
            "met": bool(
                figures["planner_aiq_beats"].get("threshold_router", False)
                and figures["planner_aiq_beats"].get("knn_router", False)
            ),
        },
        "quality_calibration": {
            "target": "every plan: |promised (selection-adjusted) - realised| mean quality <= 1.5 pp",
            "value_pp": cal["max_abs_quality_error_pp"],
            "plans_within": f"{cal['plans_within_1_5pp']}/{cal['plans']}",
            "unadjusted_value_pp": cal["unadjusted_max_abs_quality_error_pp"],
            "met": cal["max_abs_quality_error_pp"] <= 1.5,
        },
        "spend_calibration": {
            "target": "every plan: |predicted - realised| spend <= 5%",
            "value": cal["max_rel_spend_error"],
            "plans_within": f"{cal['plans_within_5pct_spend']}/{cal['plans']}",
            "met": cal["max_rel_spend_error"] <= 0.05,
        },
    }


def _simulated(
    catalog: Catalog, cost_model: CostModelLike, replay: Replay, figures: dict[str, Any], n_budgets: int
) -> tuple[list[PolicyResult], dict[str, Any]]:
    sim = simulated.build_simulation(catalog, cost_model, replay)
    best = figures["best_single"]
    sc = simulated.uniform_self_consistency(sim)
    grid = policies.budget_grid(sim.predicted_cost, sim.predicted_quality, n_budgets, [best["cost_usd"]])
    planner = simulated.planner_with_strategies(sim, grid)
    c_range = tuple(figures["aiq_cost_range"])
    at = next(p for p in planner.points if p.knob == best["cost_usd"])
    fig = {
        "single_pass_fit_gap_pp": sim.single_gap_pp,
        "aiq": {r.name: metrics.aiq(r.curve(), *c_range) for r in (planner, sc)},
        "planner_all_strategies_at_best_single_cost": at.to_dict(),
        "best_uniform_self_consistency": max(
            (p.to_dict() for p in sc.points), key=lambda d: d["quality"] or 0
        ),
        "n_options": len(sim.options),
    }
    return [planner, sc], fig
