"""Simulated figures for strategies the runs never recorded (majority vote, best-of-N, search, revisions).

Where the historical runs hold one sample per (query, model) and strategy `single` only (GSM8K), the outcome
of a multi-sample strategy on a held-out query is not observed; where they do record strategies, the realised
replay uses them (`planner.evaluation.recorded`) and this module still simulates every catalog strategy on
every query from the single passes alone. These figures are therefore *simulated*, and
reported apart from the realised ones (`PolicyResult.realised = False`):

- the reference success probability of each held-out (query, tier) is an item-response fit on the held-out
  outcomes themselves (on sparse logs the recorded ones; the fit fills in the unrecorded cells) (logit p =
  query ease + tier ability; a weak L2 penalty), i.e. the best estimate the
  data gives of each query's true single-sample success rate -- the simulation's ground truth, which the
  planner never sees (it plans from its out-of-fold forecast);
- a strategy's simulated quality is `models.strategies.expected_quality` of that reference probability (the
  same strategy-response model, with its default sample correlation, that the planner assumes: the
  simulation cannot test that assumption, only the allocation made under it);
- a strategy's cost is the one cost model at the recorded input and output tokens of the tier's single pass.

`uniform_self_consistency` is the baseline (one tier, majority vote over N on every query);
`planner_with_strategies` the planner offered every catalog strategy on each tier's cheapest target.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse
from sklearn.linear_model import LogisticRegression

from planner.catalog import Catalog, StrategyKind
from planner.evaluation.policies import Point, PolicyResult, budget_grid, plan_choice
from planner.evaluation.replay import Replay
from planner.options import CostModelLike, OptionSet


@dataclass(frozen=True)
class Simulation:
    """Every (tier, strategy) option on the replay queries: predicted and simulated quality and cost."""

    options: OptionSet
    predicted_quality: np.ndarray
    predicted_cost: np.ndarray
    quality: np.ndarray
    cost: np.ndarray
    single_gap_pp: float
    """Mean |simulated - realised| single-pass accuracy per tier, in points (how well the reference fits)."""

    def point(self, knob: float, choice: np.ndarray, promise: bool = False) -> Point:
        rows = np.arange(len(choice))
        q = float(self.quality[rows, choice].mean())
        c = float(self.cost[rows, choice].mean())
        if not promise:
            return Point(knob, choice, q, c)
        pq = float(self.predicted_quality[rows, choice].mean())
        pc = float(self.predicted_cost[rows, choice].mean())
        return Point(knob, choice, q, c, pq, pc)


def reference_probabilities(replay: Replay, c: float = 10.0) -> np.ndarray:
    """Per (query, tier) single-sample success probability from an item-response fit on held-out outcomes."""
    single = replay.realised_quality[:, : replay.n_single]
    n, k = single.shape
    q_idx, t_idx = np.indices((n, k))
    q_idx, t_idx = q_idx.ravel(), t_idx.ravel()
    score = single.ravel()
    design = sparse.hstack(
        [
            sparse.csr_matrix((np.ones(n * k), (np.arange(n * k), q_idx)), shape=(n * k, n)),
            sparse.csr_matrix((np.ones(n * k), (np.arange(n * k), t_idx)), shape=(n * k, k)),
        ]
    ).tocsr()
    # fractional scores (several run names of one tier) enter as weighted positive and negative rows
    x = sparse.vstack([design, design]).tocsr()
    y = np.concatenate([np.ones(n * k), np.zeros(n * k)])
    w = np.concatenate([score, 1.0 - score])
    keep = w > 0
    model = LogisticRegression(C=c, max_iter=2000).fit(x[keep], y[keep], sample_weight=w[keep])
    return np.asarray(model.predict_proba(design)[:, 1]).reshape(n, k)


def build_simulation(catalog: Catalog, cost_model: CostModelLike, replay: Replay) -> Simulation:
    """Every catalog strategy on each replay tier's cheapest target, predicted and simulated."""
    full = OptionSet.build(catalog, cost_model, replay.tiers)
    options = full.restrict(sorted(full.cheapest_targets().values()))
    predicted = options.price(replay.forecast)
    p_ref = reference_probabilities(replay)
    inp = np.array([q.input_tokens for q in replay.queries], float)
    cost = options.metrics(inp, replay.realised_output_tokens[:, options.tier_col])["usd"]
    gap = np.abs(p_ref.mean(axis=0) - replay.single_means()[0]).mean() * 100
    return Simulation(options, predicted.quality, predicted.usd, options.quality(p_ref), cost, float(gap))


def uniform_self_consistency(sim: Simulation) -> PolicyResult:
    """Every (tier, majority vote over N) applied to all queries; its curve is the envelope of the points."""
    kinds = {i: s.kind for i, s in enumerate(sim.options.strategies)}
    cols = [
        j
        for j in range(len(sim.options))
        if kinds[int(sim.options.strategy_of[j])] is StrategyKind.MAJORITY_VOTE
    ]
    n = sim.quality.shape[0]
    points = tuple(sim.point(float(j), np.full(n, j, dtype=np.intp)) for j in cols)
    labels = sorted({sim.options.options[j].strategy for j in cols})
    return PolicyResult(
        "uniform_self_consistency",
        "router",
        points,
        realised=False,
        note=f"simulated: every tier x {labels} on all queries",
    )


def planner_with_strategies(sim: Simulation, budgets: np.ndarray | None = None) -> PolicyResult:
    """The planner offered every strategy: budgeted plans from its predictions, outcomes simulated."""
    q, c = sim.predicted_quality, sim.predicted_cost
    grid = budget_grid(c, q) if budgets is None else budgets
    points = []
    for budget in grid:
        choice, _ = plan_choice(q, c, float(budget))
        points.append(sim.point(float(budget), choice, promise=True))
    return PolicyResult(
        "planner_all_strategies",
        "router",
        tuple(points),
        realised=False,
        note=f"simulated: {len(sim.options)} options (every strategy on each tier's cheapest target)",
    )


def simulated_singles(sim: Simulation) -> dict[str, float]:
    """Simulated single-pass accuracy per tier (to compare with the realised one)."""
    kinds = [sim.options.strategies[int(i)].kind for i in sim.options.strategy_of]
    return {
        sim.options.options[j].tier: float(sim.quality[:, j].mean())
        for j in range(len(sim.options))
        if kinds[j] is StrategyKind.SINGLE
    }
