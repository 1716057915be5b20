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

With cross-fitting (`query_folds` with k folds and `CrossFitForecaster`) every query is held out once: its
forecast comes from the forecaster trained on the other folds, so the replay covers all queries out of fold
(k-fold cross-fitting; a smaller sampling error on the realised means than one 30% split).
Tiers missing outcomes on more than `max_missing` of the held-out queries are dropped; queries still missing
an outcome are dropped too (both reported in `Replay.notes`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from models.api import Forecast, Forecaster, Query
from models.data import queries_from_frame, query_keys
from planner.catalog import Catalog, StrategyKind
from planner.errors import FailedPreconditionError
from planner.options import CostModelLike, OptionArrays, OptionSet, QualityFn, lognormal_mean


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


def query_folds(runs: pd.DataFrame, folds: int, seed: int = 0, test_fraction: float = 0.3) -> list[Split]:
    """Query-level splits for cross-fitting: `folds` disjoint held-out parts covering every query (each
    trained on the other parts); `folds == 1`: one seeded split holding out `test_fraction` of the queries."""
    if folds < 1:
        raise ValueError(f"folds {folds} must be >= 1")
    if folds == 1:
        return [split_queries(runs, test_fraction, seed)]
    ids = np.array(sorted(runs["query_id"].astype(str).unique()))
    if folds > len(ids):
        raise ValueError(f"folds {folds} exceeds the {len(ids)} queries")
    part = np.random.default_rng(seed).permutation(len(ids)) % folds
    qid = runs["query_id"].astype(str)
    out = []
    for f in range(folds):
        is_test = qid.isin(set(ids[part == f]))
        out.append(Split(runs[~is_test].reset_index(drop=True), runs[is_test].reset_index(drop=True)))
    return out


@dataclass(frozen=True)
class CrossFitForecaster:
    """Out-of-fold forecasts: each query is forecast by the forecaster trained without its fold.

    `tiers` are the tiers every fold's forecaster knows (in the first one's order)."""

    fold_of: dict[str, int]
    forecasters: tuple[Forecaster, ...]

    @classmethod
    def fit(
        cls, splits: Sequence[Split], factory: Callable[[pd.DataFrame], Forecaster]
    ) -> CrossFitForecaster:
        fold_of = {str(q): f for f, s in enumerate(splits) for q in s.test["query_id"].unique()}
        return cls(fold_of, tuple(factory(s.train) for s in splits))

    @property
    def tiers(self) -> tuple[str, ...]:
        common = set.intersection(*(set(f.tiers) for f in self.forecasters))
        return tuple(t for t in self.forecasters[0].tiers if t in common)

    def forecast(self, queries: Sequence[Query]) -> Forecast:
        tiers = self.tiers
        n, k = len(queries), len(tiers)
        arrays = {name: np.zeros((n, k)) for name in ("p_correct", "output_tokens_p50", "output_tokens_p90")}
        inp = np.zeros(n)
        fold = np.array([self.fold_of[q.query_id] for q in queries], dtype=np.intp)
        for f, model in enumerate(self.forecasters):
            rows = np.flatnonzero(fold == f)
            if not len(rows):
                continue
            fc = model.forecast([queries[int(i)] for i in rows])
            cols = [fc.tiers.index(t) for t in tiers]
            for name, arr in arrays.items():
                arr[rows] = getattr(fc, name)[:, cols]
            inp[rows] = fc.input_tokens
        return Forecast(tiers, input_tokens=inp, **arrays)

    def __str__(self) -> str:
        return f"{type(self.forecasters[0]).__name__} x {len(self.forecasters)} folds"


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
    forecast: Forecast
    """The (out-of-fold) forecast of the replay queries, in replay query order."""
    realised_output_tokens: np.ndarray
    """Recorded output tokens of each (query, replay option)'s single pass (tier median where unrecorded)."""

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


KEY = "query_key"
"""Column identifying a query across tasks ((task, query_id): ids may repeat across tasks)."""


def keyed(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame with its `query_key` column (added when missing)."""
    return frame if KEY in frame else frame.assign(**{KEY: query_keys(frame)})


def query_key(query: Query) -> str:
    return f"{query.task}\x1f{query.query_id}"


def _pivot(test: pd.DataFrame, column: str, ids: list[str], tiers: Sequence[str]) -> np.ndarray:
    table = test.groupby([KEY, "tier"])[column].mean().unstack("tier")
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
    plain = keyed(test[test["strategy"] == single])
    notes: list[str] = []
    catalog_tiers = {t.name for t in catalog.tiers}
    known = [t for t in forecaster.tiers if t in catalog_tiers and t in set(plain["tier"])]
    unpriced = sorted(set(plain["tier"]) - catalog_tiers)
    if unpriced:
        notes.append(f"tiers with runs but not in the catalog (no price, left out): {unpriced}")
    ids = list(dict.fromkeys(plain[KEY]))
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
    order = {query_key(q): q for q in queries_from_frame(plain)}
    queries = [order[i] for i in ids]
    options = _cheapest_target_options(catalog, cost_model, forecaster.tiers, keep_tiers, single, quality_fn)
    col_of_tier = [list(options.forecast_tiers).index(o.tier) for o in options.options]
    assert [options.forecast_tiers[c] for c in col_of_tier] == keep_tiers
    forecast = forecaster.forecast(queries)
    predicted = options.price(forecast)
    out_tokens = _fill_tokens(out_tokens, forecast, keep_tiers, notes)
    inp = np.array([q.input_tokens for q in queries], float)
    cost = options.metrics(inp, out_tokens)["usd"]
    notes.append(
        "replay options: single-pass strategy only (no recorded outcomes for other strategies), "
        "each tier on its cheapest feasible target: "
        + ", ".join(f"{o.tier}@{o.target}" for o in options.options)
    )
    return Replay(
        tuple(queries),
        options,
        tuple(keep_tiers),
        quality,
        cost,
        predicted,
        tuple(notes),
        forecast,
        out_tokens,
    )


def _fill_tokens(
    out_tokens: np.ndarray, forecast: Forecast, tiers: Sequence[str], notes: list[str]
) -> np.ndarray:
    """Unrecorded output lengths: the tier's median recorded length, else the forecast's mean (noted)."""
    missing = np.isnan(out_tokens)
    if not missing.any():
        return out_tokens
    with np.errstate(all="ignore"):
        fill = np.nanmedian(np.where(missing.all(axis=0)[None, :], 0.0, out_tokens), axis=0)
    out = np.where(missing, fill[None, :], out_tokens)
    none = missing.all(axis=0)
    if none.any():
        cols = [forecast.tiers.index(t) for t in tiers]
        mean = lognormal_mean(forecast.output_tokens_p50[:, cols], forecast.output_tokens_p90[:, cols])
        out = np.where(none[None, :], mean, out)
        notes.append(
            f"no recorded output tokens for {[t for t, m in zip(tiers, none, strict=True) if m]}: their "
            "realised cost is priced at the forecast tokens (so realised spend = predicted spend there)"
        )
    if (missing & ~none[None, :]).any():
        notes.append(f"{int((missing & ~none[None, :]).sum())} outcomes without output tokens: tier median")
    return out


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
