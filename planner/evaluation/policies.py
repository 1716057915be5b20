"""Policies replayed on held-out queries: the planner and the baselines it is compared with.

Each policy maps a `Replay` to operating points (one per value of its knob); a point carries the per-query
choice, the realised mean quality and cost, and -- for the planner -- what the plan promised.

- `planner_sweep`: the planner's own rule, argmax over options of (predicted quality - lambda x predicted
  cost), swept over lambda (each point is a Lagrangian solution of the budgeted problem);
  `planner_at_budget`: the budget-constrained plan from `planner.solve` when it is installed, else the
  largest-spend lambda point that fits the budget;
- `single_models`: every tier on every query;
- `random_mix`: weak or strong at random with probability p (the RouteLLM random baseline);
- `threshold_router`: RouteLLM-style strong/weak router -- a classifier (TF-IDF logistic regression)
  trained on the training split scores P(weak model fails); queries scoring above a threshold go to the
  strong model;
- `knn_router`: RouterBench-style kNN lambda-router -- per query, each tier's quality and cost are the means
  over its k nearest training queries (TF-IDF cosine; quality smoothed towards the tier's mean by a few
  pseudo-runs so ties at 100% do not decide), then argmax of quality - lambda x cost;
- `oracle`: per query, the cheapest tier with the best realised outcome.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import NearestNeighbors

from planner.evaluation.metrics import Curve
from planner.evaluation.replay import Replay


@dataclass(frozen=True)
class Point:
    """One operating point of a policy."""

    knob: float
    choice: np.ndarray
    quality: float
    cost: float
    predicted_quality: float | None = None
    predicted_cost: float | None = None

    def to_dict(self) -> dict[str, float | None]:
        return {
            "knob": self.knob,
            "quality": self.quality,
            "cost_usd": self.cost,
            "predicted_quality": self.predicted_quality,
            "predicted_cost_usd": self.predicted_cost,
        }


@dataclass(frozen=True)
class PolicyResult:
    """A policy's operating points; `realised` is False for figures that are simulated, not replayed."""

    name: str
    kind: str
    points: tuple[Point, ...]
    realised: bool = True
    note: str = ""

    def curve(self) -> Curve:
        return Curve.of([p.cost for p in self.points], [p.quality for p in self.points])


def _point(replay: Replay, knob: float, choice: np.ndarray, promise: bool = False) -> Point:
    q, c = replay.realise(choice)
    if not promise:
        return Point(knob, choice, q, c)
    pq, pc = replay.promise(choice)
    return Point(knob, choice, q, c, pq, pc)


def lambda_grid(cost: np.ndarray, n: int = 160) -> np.ndarray:
    """Shadow prices (quality per USD) spanning 'cost is free' to 'only the cheapest option'."""
    positive = cost[cost > 0]
    scale = 1.0 / float(np.median(positive)) if positive.size else 1.0
    return np.concatenate([[0.0], scale * np.geomspace(1e-4, 1e3, n)])


def lagrangian_choice(value: np.ndarray, cost: np.ndarray, lam: float) -> np.ndarray:
    """Per query, the option maximising value - lam x cost (ties: the cheaper option)."""
    score = value - lam * cost
    best = score.max(axis=1, keepdims=True)
    tied = score >= best - 1e-12
    return np.where(tied, cost, np.inf).argmin(axis=1)


def planner_sweep(replay: Replay, lambdas: np.ndarray | None = None) -> PolicyResult:
    q, c = replay.predicted.quality, replay.predicted.usd
    grid = lambda_grid(c) if lambdas is None else lambdas
    points = tuple(_point(replay, float(lam), lagrangian_choice(q, c, lam), promise=True) for lam in grid)
    return PolicyResult("planner", "router", points, note="lambda sweep over the planner's own predictions")


def planner_at_budget(replay: Replay, budget_per_query: float, time_limit_s: float = 5.0) -> Point:
    """The planner's plan under a hard total budget of `budget_per_query` x n (in predicted USD)."""
    q, c = replay.predicted.quality, replay.predicted.usd
    try:
        from planner.solve.problem import Problem
        from planner.solve.solver import solve
    except ImportError:
        return _budget_by_bisection(replay, budget_per_query)
    solution = solve(Problem(value=q, cost=c, budget=budget_per_query * replay.n), time_limit_s=time_limit_s)
    return _point(replay, budget_per_query, np.asarray(solution.choice, dtype=np.intp), promise=True)


def _budget_by_bisection(replay: Replay, budget_per_query: float) -> Point:
    q, c = replay.predicted.quality, replay.predicted.usd
    best: np.ndarray | None = None
    for lam in lambda_grid(c, 400):
        choice = lagrangian_choice(q, c, lam)
        if c[np.arange(replay.n), choice].mean() <= budget_per_query:
            best = choice
            break
    if best is None:
        best = c.argmin(axis=1)
    return _point(replay, budget_per_query, best, promise=True)


def single_models(replay: Replay) -> list[PolicyResult]:
    out = []
    for j, tier in enumerate(replay.tiers):
        choice = np.full(replay.n, j, dtype=np.intp)
        out.append(PolicyResult(tier, "single", (_point(replay, float(j), choice, promise=True),)))
    return out


def random_mix(replay: Replay, weak: int, strong: int, seed: int = 0, steps: int = 21) -> PolicyResult:
    rng = np.random.default_rng(seed)
    u = rng.random(replay.n)
    points = tuple(
        _point(replay, float(p), np.where(u < p, strong, weak).astype(np.intp))
        for p in np.linspace(0, 1, steps)
    )
    return PolicyResult("random_mix", "router", points, note=f"{replay.tiers[weak]} / {replay.tiers[strong]}")


def _texts(queries: Sequence[object]) -> list[str]:
    return [str(getattr(q, "prompt", "")) or str(getattr(q, "query_id", "")) for q in queries]


def _train_matrix(train: pd.DataFrame, tiers: Sequence[str], column: str) -> tuple[list[str], np.ndarray]:
    table = train.groupby(["query_id", "tier"])[column].mean().unstack("tier").reindex(columns=list(tiers))
    prompts = train.drop_duplicates("query_id").set_index("query_id")["prompt"].reindex(table.index)
    return [str(p) for p in prompts], table.to_numpy(float)


def threshold_router(
    replay: Replay, train: pd.DataFrame, weak: int, strong: int, steps: int = 41
) -> PolicyResult:
    texts, scores = _train_matrix(train, replay.tiers, "score")
    ok = ~np.isnan(scores[:, weak])
    vec = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    x = vec.fit_transform([t for t, k in zip(texts, ok, strict=True) if k])
    y = (scores[ok, weak] < 0.5).astype(int)
    if y.min() == y.max():
        p_fail = np.full(replay.n, float(y.mean()))
    else:
        clf = LogisticRegression(C=1.0, max_iter=1000).fit(x, y)
        p_fail = clf.predict_proba(vec.transform(_texts(replay.queries)))[:, 1]
    thresholds = np.concatenate([[np.inf], np.quantile(p_fail, np.linspace(1, 0, steps)), [-np.inf]])
    points = tuple(
        _point(replay, float(t), np.where(p_fail >= t, strong, weak).astype(np.intp)) for t in thresholds
    )
    note = f"weak {replay.tiers[weak]}, strong {replay.tiers[strong]}; TF-IDF logistic P(weak fails)"
    return PolicyResult("threshold_router", "router", points, note=note)


def knn_router(
    replay: Replay,
    train: pd.DataFrame,
    k: int = 25,
    smoothing: float = 5.0,
    lambdas: np.ndarray | None = None,
) -> PolicyResult:
    texts, scores = _train_matrix(train, replay.tiers, "score")
    _, costs = _train_costs(replay, train)
    col_mean = np.nanmean(scores, axis=0)
    scores = np.where(np.isnan(scores), col_mean[None, :], scores)
    vec = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    x = vec.fit_transform(texts)
    nn = NearestNeighbors(n_neighbors=min(k, len(texts)), metric="cosine").fit(x)
    _, idx = nn.kneighbors(vec.transform(_texts(replay.queries)))
    q_hat = (scores[idx].sum(axis=1) + smoothing * col_mean[None, :]) / (idx.shape[1] + smoothing)
    c_hat = costs[idx].mean(axis=1)
    grid = lambda_grid(c_hat) if lambdas is None else lambdas
    points = tuple(_point(replay, float(lam), lagrangian_choice(q_hat, c_hat, lam)) for lam in grid)
    return PolicyResult(
        "knn_router",
        "router",
        points,
        note=f"k={k}, TF-IDF cosine neighbours, {smoothing} pseudo-runs at the tier mean",
    )


def _train_costs(replay: Replay, train: pd.DataFrame) -> tuple[list[str], np.ndarray]:
    """Realised cost of every replay option on the training queries (same cost model, recorded tokens)."""
    texts, out_tokens = _train_matrix(train, replay.tiers, "output_tokens")
    fill = np.nanmedian(out_tokens, axis=0)
    fill = np.where(np.isnan(fill), 0.0, fill)
    out_tokens = np.where(np.isnan(out_tokens), fill[None, :], out_tokens)
    inp = train.drop_duplicates("query_id").set_index("query_id")["input_tokens"]
    ids = train.groupby(["query_id", "tier"]).size().unstack("tier").index
    cost = replay.options.metrics(inp.reindex(ids).to_numpy(float), out_tokens)["usd"]
    return texts, cost


def oracle(replay: Replay) -> PolicyResult:
    q, c = replay.realised_quality, replay.realised_cost
    best = q.max(axis=1, keepdims=True)
    choice = np.where(q >= best - 1e-12, c, np.inf).argmin(axis=1)
    return PolicyResult(
        "oracle", "reference", (_point(replay, 0.0, choice),), note="cheapest best tier per query"
    )
