"""Policies replayed on held-out queries: the planner and the baselines it is compared with.

Each policy maps a `Replay` to operating points (one per value of its knob); a point carries the per-query
choice, the realised mean quality and cost, and -- for the planner -- what the plan promised.

- `planner_sweep`: the planner itself -- for each per-query budget of a sweep, the plan `planner.solve.solve`
  returns for (predicted quality, predicted cost) under that hard total budget; `planner_at_budget` one plan;
- `single_models`: every tier's single pass on every query (never a strategy option);
- `random_mix`: weak or strong at random with probability p (the RouteLLM random baseline);
- `uniform_self_consistency_realised`: every recorded (tier, majority vote over N) applied to all queries,
  from the recorded vote outcomes (on the queries where the vote was recorded when it was not recorded on
  all of them: then a noisier estimate, and a biased one if the logs chose those queries by difficulty;
  `strategy_figures` shows the same tier's single pass on the same queries to judge that);
- `threshold_router`: RouteLLM-style strong/weak router -- a classifier (TF-IDF logistic regression)
  trained on the training split (cross-fitted like the planner's forecaster) scores P(weak model fails);
  queries scoring above a threshold go to the strong model;
- `knn_router`: RouterBench-style kNN lambda-router -- per query, each tier's quality and cost are the means
  over its k nearest training queries (TF-IDF cosine; quality smoothed towards the tier's mean by a few
  pseudo-runs so ties at 100% do not decide), then argmax of quality - lambda x cost;
- `oracle`: per query, the cheapest recorded option with the best realised outcome.

The planner and the oracle choose among every replay option (single passes and recorded strategies, the
latter only where recorded: the replay's availability mask); the threshold, kNN and random routers and the
ex-ante best single route between single-pass tiers only (they are the published single-pass baselines).

Sparse logs (single passes recorded on only part of the queries, `planner.evaluation.coverage`): no policy
is ever scored on an unrecorded outcome (neither as 0 nor by dropping just the queries where its own pick
is missing, which would flatter it), and every rule below is fixed before looking at any outcome:
- the planner, the kNN router and the oracle choose, per query, among the options recorded on it (the
  planner plans with that mask; the kNN router takes its best recorded tier by its own estimates -- its
  "next-best recorded pick"), and are scored on every replay query;
- a single model (and the ex-ante best single) is scored on the queries where its single pass was recorded:
  with coverage missing at random, that mean estimates its mean over every query;
- the random mix and the threshold router, which pick between one weak and one strong tier, are scored on
  the queries where *both* were recorded (a set chosen by coverage alone, not by the router's picks, so a
  random subset under missing at random); they are left out, with a note, when too few queries have both.
On dense logs each of these is every replay query, and the figures are exactly those of the dense replay.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.sparse import csr_matrix
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import NearestNeighbors

from planner.catalog import StrategyKind
from planner.evaluation.metrics import Curve
from planner.evaluation.replay import KEY, Replay, Split, keyed
from planner.solve import Problem, Solution, solve
from planner.solve.optimism import selection_optimism


@dataclass(frozen=True)
class Point:
    """One operating point of a policy."""

    knob: float
    choice: np.ndarray
    quality: float
    cost: float
    predicted_quality: float | None = None
    predicted_cost: float | None = None
    optimism: float = 0.0
    """For the planner: the plan's estimated selection optimism (`planner.solve.optimism`), already taken
    off `predicted_quality` (the adjusted promise; the forecasts' own mean is their sum)."""

    def to_dict(self) -> dict[str, float | None]:
        return {
            "knob": self.knob,
            "quality": self.quality,
            "cost_usd": self.cost,
            "predicted_quality": self.predicted_quality,
            "predicted_cost_usd": self.predicted_cost,
            "selection_optimism": self.optimism,
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


def _point(
    replay: Replay,
    knob: float,
    choice: np.ndarray,
    promise: bool = False,
    rows: np.ndarray | None = None,
    optimism: float = 0.0,
) -> Point:
    """A choice's point over every replay query, or over `rows` only (means over those); a promise is the
    forecasts' mean less the plan's `optimism`."""
    q, c = replay.realise(choice) if rows is None else replay.realise_on(rows, choice)
    if not promise:
        return Point(knob, choice, q, c)
    pq, pc = replay.promise(choice, rows)
    return Point(knob, choice, q, c, pq - optimism, pc, optimism)


def _own_rows(replay: Replay, choice: np.ndarray) -> np.ndarray | None:
    """Where the choice is recorded, or None when it is recorded on every query (the dense path)."""
    rows = replay.recorded_rows(choice)
    return None if rows.size == replay.n else rows


def pair_rows(replay: Replay, weak: int, strong: int) -> np.ndarray | None:
    """Queries where both single passes are recorded; None when that is every query."""
    single = replay.single_mask
    if single is None or bool(single[:, [weak, strong]].all()):
        return None
    return np.flatnonzero(single[:, weak] & single[:, strong])


def lambda_grid(cost: np.ndarray, n: int = 160) -> np.ndarray:
    """Shadow prices (quality per USD) spanning 'cost is free' to 'only the cheapest option'."""
    positive = cost[cost > 0]
    scale = 1.0 / float(np.median(positive)) if positive.size else 1.0
    return np.concatenate([[0.0], scale * np.geomspace(1e-4, 1e3, n)])


def lagrangian_choice(
    value: np.ndarray, cost: np.ndarray, lam: float, feasible: np.ndarray | None = None
) -> np.ndarray:
    """Per query, the feasible option maximising value - lam x cost (ties: the cheaper option)."""
    score = value - lam * cost
    if feasible is not None:
        score = np.where(feasible, score, -np.inf)
    best = score.max(axis=1, keepdims=True)
    tied = score >= best - 1e-12
    return np.where(tied, cost, np.inf).argmin(axis=1)


def _min_cost(cost: np.ndarray, feasible: np.ndarray | None) -> np.ndarray:
    return cost.min(axis=1) if feasible is None else np.where(feasible, cost, np.inf).min(axis=1)


def budget_grid(
    cost: np.ndarray,
    value: np.ndarray,
    n: int = 40,
    extra: Sequence[float] = (),
    feasible: np.ndarray | None = None,
) -> np.ndarray:
    """Per-query budgets from the cheapest plan to the best-value plan (predicted), geometric, + `extra`."""
    rows = np.arange(cost.shape[0])
    lo = float(_min_cost(cost, feasible).mean())
    hi = float(cost[rows, lagrangian_choice(value, cost, 0.0, feasible)].mean())
    grid = np.geomspace(max(lo, 1e-15), max(hi, lo * 1.0001, 1e-15), n)
    grid[0] = lo
    return np.unique(np.concatenate([grid, np.asarray(extra, float)]))


def plan_choice(
    value: np.ndarray,
    cost: np.ndarray,
    budget_per_query: float,
    time_limit_s: float = 10.0,
    feasible: np.ndarray | None = None,
) -> tuple[np.ndarray, str]:
    """The budgeted plan of `planner.solve.solve` (total predicted spend <= budget x n), and the method used;
    `feasible` (n, m) masks options a query may not take (unrecorded strategies in a replay).

    A budget below the cheapest plan gets the cheapest plan (the solver would report it infeasible)."""
    _, solution = plan_solution(value, cost, budget_per_query, time_limit_s, feasible)
    return np.asarray(solution.choice, dtype=np.intp), f"planner.solve ({solution.stats.method})"


def plan_solution(
    value: np.ndarray,
    cost: np.ndarray,
    budget_per_query: float,
    time_limit_s: float = 10.0,
    feasible: np.ndarray | None = None,
) -> tuple[Problem, Solution]:
    """`plan_choice`'s problem and the solver's whole solution (multipliers included)."""
    floor = float(_min_cost(cost, feasible).sum())
    total = max(budget_per_query * value.shape[0], floor * (1 + 1e-12))
    problem = Problem(value=value, cost=cost, budget=total, feasible=feasible)
    return problem, solve(problem, time_limit_s=time_limit_s)


def _planned_point(replay: Replay, budget: float) -> tuple[Point, str]:
    """The planner's plan at `budget` per query, its promise adjusted for selection optimism when the
    forecaster gives level errors (`planner.solve.optimism`), and the solver method."""
    problem, solution = plan_solution(
        replay.predicted.quality, replay.predicted.usd, budget, feasible=replay.feasible
    )
    levels = replay.levels()
    optimism = 0.0 if levels is None else selection_optimism(problem, solution, *levels).mean
    choice = np.asarray(solution.choice, dtype=np.intp)
    return _point(replay, budget, choice, promise=True, optimism=optimism), solution.stats.method


def planner_sweep(replay: Replay, budgets: Sequence[float] | np.ndarray | None = None) -> PolicyResult:
    """The planner's budgeted plans (from its own predictions) over a sweep of per-query budgets; each
    promise adjusted for selection optimism when the forecaster gives level errors."""
    q, c = replay.predicted.quality, replay.predicted.usd
    grid = budget_grid(c, q, feasible=replay.feasible) if budgets is None else np.asarray(budgets, float)
    points, method = [], ""
    for budget in grid:
        point, method = _planned_point(replay, float(budget))
        points.append(point)
    adjusted = "" if replay.levels() is None else "; promises adjusted for selection optimism"
    note = f"budget sweep (knob = predicted USD per query), plans by planner.solve ({method}){adjusted}"
    return PolicyResult("planner", "router", tuple(points), note=note)


def planner_at_budget(replay: Replay, budget_per_query: float) -> Point:
    """The planner's plan under a hard total budget of `budget_per_query` x n (in predicted USD)."""
    return _planned_point(replay, budget_per_query)[0]


def single_models(replay: Replay) -> list[PolicyResult]:
    """Every tier's single pass on every query (sparse logs: on the queries where it was recorded)."""
    out = []
    for j, tier in enumerate(replay.tiers):
        choice = np.full(replay.n, j, dtype=np.intp)
        rows = _own_rows(replay, choice)
        point = _point(replay, float(j), choice, promise=True, rows=rows)
        note = "" if rows is None else f"mean over the {rows.size}/{replay.n} queries where recorded"
        out.append(PolicyResult(tier, "single", (point,), note=note))
    return out


def best_single_ex_ante(replay: Replay, splits: Sequence[Split], fold: np.ndarray) -> PolicyResult:
    """Per fold, the tier most accurate on that fold's *training* runs, on all its held-out queries: the
    single model a user would have picked with the information the planner had (ties: the cheaper)."""
    mean_cost = replay.single_means()[1]
    choice = np.zeros(replay.n, dtype=np.intp)
    picked = []
    for f, split in enumerate(splits):
        train = single_runs(replay, split.train)
        acc = train.groupby("tier")["score"].mean().reindex(list(replay.tiers)).to_numpy(float)
        acc = np.where(np.isnan(acc), -np.inf, acc)
        tier = int(np.lexsort((mean_cost, -acc))[0])
        choice[fold == f] = tier
        picked.append(replay.tiers[tier])
    rows = _own_rows(replay, choice)
    point = _point(replay, 0.0, choice, promise=True, rows=rows)
    note = f"per fold: {picked}"
    if rows is not None:
        note += f"; mean over the {rows.size}/{replay.n} queries where the fold's pick was recorded"
    return PolicyResult("best_single_ex_ante", "reference", (point,), note=note)


def _pair_note(replay: Replay, rows: np.ndarray | None) -> str:
    if rows is None:
        return ""
    return f"; scored on the {rows.size}/{replay.n} queries where both were recorded"


def random_mix(replay: Replay, weak: int, strong: int, seed: int = 0, steps: int = 21) -> PolicyResult | None:
    """Strong with probability p, else weak, swept over p (None when no query records both)."""
    rows = pair_rows(replay, weak, strong)
    if rows is not None and not rows.size:
        return None
    rng = np.random.default_rng(seed)
    u = rng.random(replay.n)
    points = tuple(
        _point(replay, float(p), np.where(u < p, strong, weak).astype(np.intp), rows=rows)
        for p in np.linspace(0, 1, steps)
    )
    note = f"{replay.tiers[weak]} / {replay.tiers[strong]}{_pair_note(replay, rows)}"
    return PolicyResult("random_mix", "router", points, note=note)


def _texts(queries: Sequence[object]) -> list[str]:
    return [str(getattr(q, "prompt", "")) or str(getattr(q, "query_id", "")) for q in queries]


def _train_matrix(train: pd.DataFrame, tiers: Sequence[str], column: str) -> tuple[list[str], np.ndarray]:
    train = keyed(train)
    table = train.groupby([KEY, "tier"])[column].mean().unstack("tier").reindex(columns=list(tiers))
    prompts = train.drop_duplicates(KEY).set_index(KEY)["prompt"].reindex(table.index)
    return [str(p) for p in prompts], table.to_numpy(float)


def single_runs(replay: Replay, runs: pd.DataFrame) -> pd.DataFrame:
    """The single-pass runs of a frame (the single-pass baselines learn from those only: a strategy run's
    score and total tokens are not a single pass's)."""
    return runs[runs["strategy"] == replay.single_strategy]


def cross_fit(
    replay: Replay,
    splits: Sequence[Split],
    fold: np.ndarray,
    fn: Callable[[pd.DataFrame, list[int]], np.ndarray],
) -> np.ndarray:
    """Stitch a per-query estimate made, for each fold, by `fn(train_runs, replay_rows_of_the_fold)` (the
    fold's single-pass training runs)."""
    parts = {}
    for f, split in enumerate(splits):
        rows = [int(i) for i in np.flatnonzero(fold == f)]
        if rows:
            parts[f] = (rows, fn(single_runs(replay, split.train), rows))
    width = next(iter(parts.values()))[1].shape[1:]
    out = np.zeros((replay.n, *width))
    for rows, values in parts.values():
        out[rows] = values
    return out


def tfidf(train: Sequence[str], query: Sequence[str]) -> tuple[Any, Any]:
    """TF-IDF word uni/bigrams fitted on `train`, for `train` and `query`. Runs without prompt text (optional
    in the import format) leave no vocabulary: then every query gets the same single feature, and the
    text-based routers fall back to query-blind estimates."""
    for min_df in (2, 1):
        vec = TfidfVectorizer(ngram_range=(1, 2), min_df=min_df, sublinear_tf=True)
        try:
            return vec.fit_transform(train), vec.transform(query)
        except ValueError:  # empty vocabulary
            continue
    return csr_matrix(np.ones((len(train), 1))), csr_matrix(np.ones((len(query), 1)))


def threshold_router(
    replay: Replay,
    splits: Sequence[Split],
    fold: np.ndarray,
    weak: int,
    strong: int,
    steps: int = 41,
) -> PolicyResult | None:
    """RouteLLM-style: a classifier trained on the other folds scores P(weak model fails) per query (None
    when no query records both tiers)."""
    rows = pair_rows(replay, weak, strong)
    if rows is not None and not rows.size:
        return None
    texts = _texts(replay.queries)

    def p_fail(train: pd.DataFrame, rows: list[int]) -> np.ndarray:
        train_texts, scores = _train_matrix(train, replay.tiers, "score")
        ok = ~np.isnan(scores[:, weak])
        train_x = [t for t, k in zip(train_texts, ok, strict=True) if k]
        x, query_x = tfidf(train_x, [texts[i] for i in rows])
        y = (scores[ok, weak] < 0.5).astype(int)
        if y.min() == y.max():
            return np.full(len(rows), float(y.mean()))
        clf = LogisticRegression(C=1.0, max_iter=1000).fit(x, y)
        return np.asarray(clf.predict_proba(query_x)[:, 1])

    score = cross_fit(replay, splits, fold, p_fail)
    scored = score if rows is None else score[rows]
    thresholds = np.concatenate([[np.inf], np.quantile(scored, np.linspace(1, 0, steps)), [-np.inf]])
    points = tuple(
        _point(replay, float(t), np.where(score >= t, strong, weak).astype(np.intp), rows=rows)
        for t in thresholds
    )
    note = f"weak {replay.tiers[weak]}, strong {replay.tiers[strong]}; TF-IDF logistic P(weak fails)"
    note += _pair_note(replay, rows)
    return PolicyResult("threshold_router", "router", points, note=note)


def knn_router(
    replay: Replay,
    splits: Sequence[Split],
    fold: np.ndarray,
    k: int = 25,
    smoothing: float = 5.0,
    lambdas: np.ndarray | None = None,
) -> PolicyResult:
    """RouterBench-style: each tier's quality and cost averaged over the k nearest training queries (quality
    over the neighbours where the tier was recorded), then argmax of quality - lambda x cost over the tiers
    recorded on the query, swept over lambda."""
    texts = _texts(replay.queries)
    n_tiers = len(replay.tiers)

    def estimate(train: pd.DataFrame, rows: list[int]) -> np.ndarray:
        train_texts, scores = _train_matrix(train, replay.tiers, "score")
        _, costs = _train_costs(replay, train)
        col_mean = np.nanmean(scores, axis=0)
        x, query_x = tfidf(train_texts, [texts[i] for i in rows])
        nn = NearestNeighbors(n_neighbors=min(k, len(train_texts)), metric="cosine").fit(x)
        _, idx = nn.kneighbors(query_x)
        if np.isnan(scores).any():  # sparse logs: each tier's mean over the neighbours that recorded it
            seen = ~np.isnan(scores[idx])
            total = np.where(seen, scores[idx], 0.0).sum(axis=1) + smoothing * col_mean[None, :]
            q_hat = total / (seen.sum(axis=1) + smoothing)
        else:
            q_hat = (scores[idx].sum(axis=1) + smoothing * col_mean[None, :]) / (idx.shape[1] + smoothing)
        return np.concatenate([q_hat, costs[idx].mean(axis=1)], axis=1)

    both = cross_fit(replay, splits, fold, estimate)
    q_hat, c_hat = both[:, :n_tiers], both[:, n_tiers:]
    grid = lambda_grid(c_hat) if lambdas is None else lambdas
    mask = replay.single_mask
    points = tuple(_point(replay, float(lam), lagrangian_choice(q_hat, c_hat, lam, mask)) for lam in grid)
    note = f"k={k}, TF-IDF cosine neighbours, {smoothing} pseudo-runs at the tier mean"
    if mask is not None:
        note += "; per query, its best tier among those recorded on it"
    return PolicyResult("knn_router", "router", points, note=note)


def _train_costs(replay: Replay, train: pd.DataFrame) -> tuple[list[str], np.ndarray]:
    """Realised cost of every replay option on the training queries (same cost model, recorded tokens)."""
    texts, out_tokens = _train_matrix(train, replay.tiers, "output_tokens")
    with np.errstate(all="ignore"):
        fill = np.nanmedian(np.where(np.isnan(out_tokens).all(axis=0)[None, :], 0.0, out_tokens), axis=0)
    out_tokens = np.where(np.isnan(out_tokens), fill[None, :], out_tokens)
    train = keyed(train)
    inp = train.drop_duplicates(KEY).set_index(KEY)["input_tokens"]
    ids = train.groupby([KEY, "tier"]).size().unstack("tier").index
    cost = replay.single_options().metrics(inp.reindex(ids).to_numpy(float), out_tokens)["usd"]
    return texts, cost


def oracle(replay: Replay) -> PolicyResult:
    """Per query, the cheapest recorded option (single pass or strategy) with the best realised outcome."""
    mask = replay.mask
    q = np.where(mask, replay.realised_quality, -np.inf)
    c = np.where(mask, replay.realised_cost, np.inf)
    best = q.max(axis=1, keepdims=True)
    choice = np.where(q >= best - 1e-12, c, np.inf).argmin(axis=1)
    what = "option (single passes and recorded strategies)" if replay.strategy_columns() else "tier"
    return PolicyResult(
        "oracle", "reference", (_point(replay, 0.0, choice),), note=f"cheapest best {what} per query"
    )


def vote_columns(replay: Replay) -> list[int]:
    """Replay columns of recorded majority-vote (self-consistency) options."""
    kinds = [replay.options.strategies[int(i)].kind for i in replay.options.strategy_of]
    return [j for j in replay.strategy_columns() if kinds[j] is StrategyKind.MAJORITY_VOTE]


def subset_point(replay: Replay, j: int) -> tuple[Point, int]:
    """Option `j` on every query where it was recorded (the mean over those), and how many they are."""
    rows = np.flatnonzero(replay.mask[:, j])
    choice = np.full(replay.n, j, dtype=np.intp)
    point = Point(
        float(j),
        choice,
        float(replay.realised_quality[rows, j].mean()),
        float(replay.realised_cost[rows, j].mean()),
        float(replay.predicted.quality[rows, j].mean()),
        float(replay.predicted.usd[rows, j].mean()),
    )
    return point, int(rows.size)


def uniform_self_consistency_realised(replay: Replay) -> PolicyResult | None:
    """Every recorded (tier, majority vote) on all queries, as points from its recorded outcomes (None when
    no vote is recorded). Where a vote was recorded on only part of the queries its point is the mean over
    those queries (said in the note)."""
    cols = vote_columns(replay)
    if not cols:
        return None
    points, partial = [], []
    for j in cols:
        point, covered = subset_point(replay, j)
        points.append(point)
        if covered < replay.n:
            partial.append(f"{replay.options.options[j].label()}: {covered}/{replay.n}")
    labels = sorted({replay.options.options[j].strategy for j in cols})
    note = f"realised: every tier x {labels} on all queries, from recorded outcomes"
    if partial:
        note += f"; recorded on part of the queries only (point = mean over those): {partial}"
    return PolicyResult("uniform_self_consistency_realised", "router", tuple(points), note=note)
