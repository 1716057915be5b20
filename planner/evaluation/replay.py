"""Replay data: a query-level split of historical runs and the realised outcome and cost of every option.

The replay only offers options whose outcome on a held-out query is *recorded*: for each tier with runs, its
plain single-pass strategy on the tier's cheapest feasible target (cheapest at the tier's median tokens).
Strategies with no recorded runs (majority vote, best-of-N, search, revisions on a single-sample data set)
have no realised outcome, so they are left out of the realised figures rather than simulated.

- realised quality of (query, tier) = mean recorded score over the tier's runs of that query (several run
  names of one tier, e.g. three hosted copies of one model, are averaged: the expected score of picking one
  at random);
- realised cost = the one cost model (`OptionSet.metrics`) at the recorded input and output tokens;
- predicted quality and cost = the forecaster's forecast priced by the same `OptionSet`.
Tiers missing outcomes on more than `max_missing` of the held-out queries are dropped; queries still missing
an outcome are dropped too (both reported in `Replay.notes`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from models.api import Forecaster, Query
from models.data import queries_from_frame
from planner.catalog import Catalog, StrategyKind
from planner.errors import FailedPreconditionError
from planner.options import CostModelLike, OptionArrays, OptionSet, QualityFn


@dataclass(frozen=True)
class Split:
    """Prepared run frames of disjoint query sets."""

    train: pd.DataFrame
    test: pd.DataFrame


def split_queries(runs: pd.DataFrame, test_fraction: float = 0.3, seed: int = 0) -> Split:
    """A seeded query-level split: every run of a query lands on the same side."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction {test_fraction} must be in (0, 1)")
    ids = np.array(sorted(runs["query_id"].astype(str).unique()))
    rng = np.random.default_rng(seed)
    test_ids = set(rng.choice(ids, size=max(1, round(test_fraction * len(ids))), replace=False))
    is_test = runs["query_id"].astype(str).isin(test_ids)
    return Split(runs[~is_test].reset_index(drop=True), runs[is_test].reset_index(drop=True))


@dataclass(frozen=True)
class Replay:
    """Held-out queries x replay options: realised and predicted quality and cost (all (n, k) arrays)."""

    queries: tuple[Query, ...]
    options: OptionSet
    tiers: tuple[str, ...]
    realised_quality: np.ndarray
    realised_cost: np.ndarray
    predicted: OptionArrays
    notes: tuple[str, ...]

    @property
    def n(self) -> int:
        return len(self.queries)

    def realise(self, choice: np.ndarray) -> tuple[float, float]:
        """Mean realised (quality, cost per query) of a per-query option choice."""
        rows = np.arange(self.n)
        return (
            float(self.realised_quality[rows, choice].mean()),
            float(self.realised_cost[rows, choice].mean()),
        )

    def promise(self, choice: np.ndarray) -> tuple[float, float]:
        """Mean predicted (quality, cost per query) of a choice."""
        rows = np.arange(self.n)
        return float(self.predicted.quality[rows, choice].mean()), float(
            self.predicted.usd[rows, choice].mean()
        )


def single_strategy_name(catalog: Catalog) -> str:
    for s in catalog.strategies:
        if s.kind is StrategyKind.SINGLE:
            return s.name
    raise FailedPreconditionError("the catalog has no single-pass strategy; the replay needs one")


def _pivot(test: pd.DataFrame, column: str, ids: list[str], tiers: Sequence[str]) -> np.ndarray:
    table = test.groupby(["query_id", "tier"])[column].mean().unstack("tier")
    return table.reindex(index=ids, columns=list(tiers)).to_numpy(float)


def build_replay(
    catalog: Catalog,
    cost_model: CostModelLike,
    forecaster: Forecaster,
    test: pd.DataFrame,
    quality_fn: QualityFn | None = None,
    max_missing: float = 0.05,
) -> Replay:
    """Realised and predicted arrays for the held-out runs `test` (a prepared frame, single-pass runs)."""
    single = single_strategy_name(catalog)
    plain = test[test["strategy"] == single]
    notes: list[str] = []
    catalog_tiers = {t.name for t in catalog.tiers}
    known = [t for t in forecaster.tiers if t in catalog_tiers and t in set(plain["tier"])]
    unpriced = sorted(set(plain["tier"]) - catalog_tiers)
    if unpriced:
        notes.append(f"tiers with runs but not in the catalog (no price, left out): {unpriced}")
    ids = list(dict.fromkeys(plain["query_id"].astype(str)))
    quality = _pivot(plain, "score", ids, known)
    missing_share = np.isnan(quality).mean(axis=0)
    keep_tiers = [t for t, m in zip(known, missing_share, strict=True) if m <= max_missing]
    dropped = [t for t, m in zip(known, missing_share, strict=True) if m > max_missing]
    if dropped:
        notes.append(
            f"tiers missing outcomes on > {max_missing:.0%} of held-out queries (left out): {dropped}"
        )
    if not keep_tiers:
        raise FailedPreconditionError(
            "no tier with recorded outcomes on the held-out queries is in the catalog"
        )
    quality = _pivot(plain, "score", ids, keep_tiers)
    out_tokens = _pivot(plain, "output_tokens", ids, keep_tiers)
    complete = ~np.isnan(quality).any(axis=1)
    if not complete.all():
        notes.append(f"{int((~complete).sum())} held-out queries lack an outcome for some tier (left out)")
    ids = [q for q, ok in zip(ids, complete, strict=True) if ok]
    quality, out_tokens = quality[complete], out_tokens[complete]
    queries = [q for q in queries_from_frame(plain) if q.query_id in set(ids)]
    order = {q.query_id: q for q in queries}
    queries = [order[i] for i in ids]
    fill = np.nanmedian(out_tokens, axis=0)
    out_tokens = np.where(np.isnan(out_tokens), fill[None, :], out_tokens)

    options = _cheapest_target_options(catalog, cost_model, forecaster.tiers, keep_tiers, single, quality_fn)
    col_of_tier = [list(options.forecast_tiers).index(o.tier) for o in options.options]
    assert [options.forecast_tiers[c] for c in col_of_tier] == keep_tiers
    inp = np.array([q.input_tokens for q in queries], float)
    cost = options.metrics(inp, out_tokens)["usd"]
    predicted = options.price(forecaster.forecast(queries))
    notes.append(
        "replay options: single-pass strategy only (no recorded outcomes for other strategies), "
        "each tier on its cheapest feasible target: "
        + ", ".join(f"{o.tier}@{o.target}" for o in options.options)
    )
    return Replay(tuple(queries), options, tuple(keep_tiers), quality, cost, predicted, tuple(notes))


def _cheapest_target_options(
    catalog: Catalog,
    cost_model: CostModelLike,
    forecaster_tiers: Sequence[str],
    tiers: Sequence[str],
    single: str,
    quality_fn: QualityFn | None,
) -> OptionSet:
    full = OptionSet.build(catalog, cost_model, forecaster_tiers, quality_fn=quality_fn, strategies=[single])
    probe = full.metrics(np.array([200.0]), np.full((1, len(full)), 300.0))["usd"][0]
    keep: list[int] = []
    for tier in tiers:
        cols = [o.index for o in full.options if o.tier == tier]
        keep.append(min(cols, key=lambda j: probe[j]))
    return full.restrict(keep)
