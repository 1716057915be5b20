"""Replay data: a query-level split of historical runs and the realised outcome and cost of every option.

The replay only offers options whose outcome on a held-out query is *recorded*:
- for each kept tier, its plain single-pass strategy on the tier's cheapest feasible target (cheapest at
  the probe lengths of `_replay_options`): the first `len(tiers)` columns. Dense logs (complete-case design)
  record them on every replay query; on sparse logs (each query answered by only some models) each is
  available only on the queries where it was recorded (`planner.evaluation.coverage`: which tiers and
  queries are kept, and the missing-at-random assumption the sparse design rests on);
- for each (tier, catalog strategy) whose held-out runs cover enough of the replay queries (chain of thought,
  majority vote, best-of-N, revisions... logged as runs of that strategy), that strategy on its cheapest
  feasible target, *available only on the queries where it was recorded* (`Replay.available`; see
  `planner.evaluation.recorded` for the coverage rule, the token convention and why a mask rather than
  dropping queries). Strategies with no recorded runs have no realised outcome, so they are left out of the
  realised figures (`planner.evaluation.simulated` simulates them, apart).

- realised quality of (query, tier) = mean recorded score over the tier's runs of that query (several run
  names of one tier, e.g. three hosted copies of one model, are averaged: the expected score of picking one
  at random);
- realised quality of (query, tier, strategy) = mean recorded score of that strategy's runs on the query;
- realised cost = the one cost model (`OptionSet.metrics`) at the recorded input and output tokens (a
  strategy run's output tokens are its total, divided by the strategy's output multiplier before pricing);
- predicted quality and cost = the forecaster's forecast priced by the same `OptionSet`, strategy quality
  by the forecaster's own fitted strategy response (per fold when cross-fitted).

With cross-fitting (`query_folds` with k folds and `CrossFitForecaster`) every query is held out once: its
forecast comes from the forecaster trained on the other folds, so the replay covers all queries out of fold
(k-fold cross-fitting; a smaller sampling error on the realised means than one 30% split).
Which tiers and queries are kept is `planner.evaluation.coverage.select` (reported in `Replay.notes`): on
dense logs, tiers missing single-pass outcomes on more than `max_missing` of the held-out queries are
dropped and so are queries still missing one (as before); on sparse logs every tier recorded on enough
queries is kept, masked where unrecorded. A missing strategy outcome drops nothing: that option is just
unavailable on that query.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from models.api import Forecast, Forecaster, Query
from models.data import queries_from_frame, query_keys
from planner.catalog import Catalog, StrategyKind
from planner.errors import FailedPreconditionError
from planner.evaluation import coverage
from planner.evaluation.coverage import COMPLETE
from planner.evaluation.recorded import (
    RecordedOption,
    model_quality_fn,
    recorded_strategies,
    replay_quality_fn,
)
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
        level_se, group = np.zeros((n, k)), np.zeros(n, dtype=np.intp)
        known = True  # every fold's forecaster gave level errors
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
            if fc.level_se is None or fc.level_group is None:
                known = False
                continue
            level_se[rows] = fc.level_se[:, cols]
            # each fold's forecaster has levels of its own: its groups never meet another fold's
            group[rows] = fc.level_group * len(self.forecasters) + f
        levels = {"level_se": level_se, "level_group": group} if known else {}
        return Forecast(tiers, input_tokens=inp, **arrays, **levels)

    def __str__(self) -> str:
        return f"{type(self.forecasters[0]).__name__} x {len(self.forecasters)} folds"


@dataclass(frozen=True)
class Replay:
    """Held-out queries x replay options: realised and predicted quality and cost (all (n, m) arrays).

    Columns `0 .. len(tiers) - 1` are each tier's single pass (recorded on every replay query in the
    complete-case design; on sparse logs only where `available`); the columns after them are recorded (tier,
    strategy) options, available only where `available` is True (realised quality and cost are NaN
    elsewhere)."""

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
    """Recorded output tokens of each (query, tier)'s single pass, (n, len(tiers)) (tier median where
    unrecorded)."""
    available: np.ndarray | None = None
    """(n, m) bool: the option's outcome on the query is recorded; None = every option everywhere."""
    design: str = COMPLETE
    """`coverage.COMPLETE` (every tier's single pass on every replay query) or `coverage.MASKED` (sparse)."""

    @property
    def n(self) -> int:
        return len(self.queries)

    @property
    def n_single(self) -> int:
        """Number of single-pass columns (the first ones, one per tier, in `tiers` order)."""
        return len(self.tiers)

    @property
    def mask(self) -> np.ndarray:
        """(n, m) availability (all True when every option is recorded on every query)."""
        if self.available is None:
            return np.ones(self.realised_quality.shape, dtype=bool)
        return self.available

    @property
    def single_mask(self) -> np.ndarray | None:
        """(n, tiers) availability of the single passes; None when every one is recorded on every query."""
        if self.available is None:
            return None
        single = self.available[:, : self.n_single]
        return None if bool(single.all()) else single

    def single_means(self) -> tuple[np.ndarray, np.ndarray]:
        """Per tier, mean realised (quality, cost) of its single pass over the queries where it was recorded
        (its estimated mean over every query, assuming coverage is missing at random)."""
        q, c = self.realised_quality[:, : self.n_single], self.realised_cost[:, : self.n_single]
        if self.single_mask is None:
            return q.mean(axis=0), c.mean(axis=0)
        return np.nanmean(q, axis=0), np.nanmean(c, axis=0)

    def recorded_rows(self, choice: np.ndarray) -> np.ndarray:
        """Rows where the choice's option is recorded (every row when nothing is masked)."""
        if self.available is None:
            return np.arange(self.n)
        return np.flatnonzero(self.available[np.arange(self.n), choice])

    @property
    def feasible(self) -> np.ndarray | None:
        """The availability mask for the solver; None when every option is available."""
        if self.available is None or bool(self.available.all()):
            return None
        return self.available

    @property
    def single_strategy(self) -> str:
        """The catalog name of the single-pass strategy (the first columns' strategy)."""
        return self.options.options[0].strategy

    def single_options(self) -> OptionSet:
        """The option set of the single-pass columns only."""
        if len(self.options) == self.n_single:
            return self.options
        return self.options.restrict(list(range(self.n_single)))

    def strategy_columns(self) -> list[int]:
        """Columns of the recorded non-single (tier, strategy) options."""
        return list(range(self.n_single, len(self.options)))

    def realise(self, choice: np.ndarray) -> tuple[float, float]:
        """Mean realised (quality, cost per query) of a per-query option choice (recorded options only)."""
        rows = np.arange(self.n)
        if self.available is not None and not bool(self.available[rows, choice].all()):
            raise ValueError("the choice picks an option whose outcome is not recorded on some query")
        return (
            float(self.realised_quality[rows, choice].mean()),
            float(self.realised_cost[rows, choice].mean()),
        )

    def realise_on(self, rows: np.ndarray, choice: np.ndarray) -> tuple[float, float]:
        """Mean realised (quality, cost per query) of a choice over `rows` only (each recorded there)."""
        picked = choice[rows]
        if self.available is not None and not bool(self.available[rows, picked].all()):
            raise ValueError("the choice picks an option whose outcome is not recorded on some of the rows")
        return (
            float(self.realised_quality[rows, picked].mean()),
            float(self.realised_cost[rows, picked].mean()),
        )

    def levels(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(se, level) of every (query, option) for `planner.solve.optimism` -- each option's logit
        standard error of its tier's level and the id of that shared level -- or None when the forecaster
        gives no level errors."""
        return self.options.level_errors(self.forecast)

    def promise(self, choice: np.ndarray, rows: np.ndarray | None = None) -> tuple[float, float]:
        """Mean predicted (quality, cost per query) of a choice (over `rows`, default all)."""
        if rows is not None:
            picked = choice[rows]
            return float(self.predicted.quality[rows, picked].mean()), float(
                self.predicted.usd[rows, picked].mean()
            )
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
    min_strategy_coverage: float = 0.05,
    min_tier_coverage: float = 0.05,
) -> Replay:
    """Realised and predicted arrays for the held-out runs `test` (a prepared frame).

    `quality_fn` overrides the strategy response of the forecaster's fitted model(s) (see
    `planner.evaluation.recorded`); the single pass is priced at the forecast P(correct) either way.
    `max_missing` and `min_tier_coverage` choose the tiers and queries (`planner.evaluation.coverage`)."""
    single = single_strategy_name(catalog)
    test = keyed(test)
    plain = test[test["strategy"] == single]
    notes: list[str] = []
    no_single = test[KEY].nunique() - plain[KEY].nunique()
    if no_single:
        notes.append(f"{no_single} held-out queries with strategy runs but no single pass (left out)")
    tiers, ids, quality, out_tokens, design = _single_outcomes(
        catalog, forecaster, plain, max_missing, min_tier_coverage, notes
    )
    order = {query_key(q): q for q in queries_from_frame(plain)}
    queries = [order[i] for i in ids]
    recorded = recorded_strategies(catalog, test, KEY, single, tiers, ids, min_strategy_coverage, notes)
    options, recorded = _replay_options(catalog, cost_model, forecaster.tiers, tiers, single, recorded, notes)
    forecast = forecaster.forecast(queries)
    options, predicted = _predicted(options, forecaster, forecast, queries, quality_fn)
    out_tokens = _fill_tokens(out_tokens, forecast, tiers, ~np.isnan(quality), notes)
    inp = np.array([q.input_tokens for q in queries], float)
    realised, tokens, available = _realised_arrays(options, tiers, quality, out_tokens, recorded, notes)
    cost = np.where(available, options.metrics(inp, tokens)["usd"], np.nan)
    notes.append(_options_note(options, available, len(tiers)))
    return Replay(
        tuple(queries),
        options,
        tuple(tiers),
        realised,
        cost,
        predicted,
        tuple(notes),
        forecast,
        out_tokens,
        None if bool(available.all()) else available,
        design,
    )


def _single_outcomes(
    catalog: Catalog,
    forecaster: Forecaster,
    plain: pd.DataFrame,
    max_missing: float,
    min_coverage: float,
    notes: list[str],
) -> tuple[list[str], list[str], np.ndarray, np.ndarray, str]:
    """The priced tiers with single-pass outcomes on enough held-out queries, the kept queries, their (n,
    tiers) mean score and output tokens (NaN where unrecorded) and the design (`coverage.select`)."""
    catalog_tiers = {t.name for t in catalog.tiers}
    with_runs = set(plain["tier"])
    known = [t for t in forecaster.tiers if t in catalog_tiers and t in with_runs]
    unpriced = sorted(with_runs - catalog_tiers)
    if unpriced:
        notes.append(f"tiers with runs but not in the catalog (no price, left out): {unpriced}")
    ids = list(dict.fromkeys(plain[KEY]))
    quality = _pivot(plain, "score", ids, known)
    chosen = coverage.select(~np.isnan(quality), known, max_missing, min_coverage, notes)
    keep = [known[j] for j in chosen.tiers]
    if not keep:
        unknown = len(with_runs & catalog_tiers) - len(known)
        need = coverage.required_queries(min_coverage, len(ids))
        raise FailedPreconditionError(
            "no tier with recorded single-pass outcomes on the held-out queries is priced: "
            f"{len(with_runs)} tiers with runs, {len(unpriced)} not in the catalog, {unknown} unknown to the "
            f"forecaster, {len(known)} recorded on fewer than {need} of the {len(ids)} held-out queries"
        )
    if not chosen.rows.size:
        raise FailedPreconditionError(
            f"none of the {len(ids)} held-out queries has a single-pass outcome for every kept tier {keep}"
        )
    quality = quality[np.ix_(chosen.rows, np.asarray(chosen.tiers, dtype=np.intp))]
    out_tokens = _pivot(plain, "output_tokens", ids, keep)[chosen.rows]
    ids = [ids[int(i)] for i in chosen.rows]
    return keep, ids, quality, out_tokens, chosen.design


def _replay_options(
    catalog: Catalog,
    cost_model: CostModelLike,
    forecaster_tiers: Sequence[str],
    tiers: Sequence[str],
    single: str,
    recorded: list[RecordedOption],
    notes: list[str],
) -> tuple[OptionSet, list[RecordedOption]]:
    """Each tier's single pass, then each recorded (tier, strategy), each on its cheapest feasible target
    (cheapest at 200 input and 300 plain output tokens); recorded pairs with no feasible target are noted."""
    names = list(dict.fromkeys([single, *(r.strategy for r in recorded)]))
    full = OptionSet.build(catalog, cost_model, forecaster_tiers, strategies=names)
    cheapest = full.cheapest_targets()
    feasible = [r for r in recorded if (r.tier, r.strategy) in cheapest]
    if len(feasible) < len(recorded):
        lost = [f"{r.tier}/{r.strategy}" for r in recorded if (r.tier, r.strategy) not in cheapest]
        notes.append(f"recorded (tier, strategy) pairs with no feasible catalog target (left out): {lost}")
    keep = [cheapest[(t, single)] for t in tiers] + [cheapest[(r.tier, r.strategy)] for r in feasible]
    return full.restrict(keep), feasible


def _predicted(
    options: OptionSet,
    forecaster: Forecaster,
    forecast: Forecast,
    queries: Sequence[Query],
    quality_fn: QualityFn | None,
) -> tuple[OptionSet, OptionArrays]:
    """Options priced from the forecast; strategy quality from each query's own (out-of-fold) model."""
    if quality_fn is not None or not isinstance(forecaster, CrossFitForecaster):
        options = replace(options, quality_fn=replay_quality_fn(quality_fn or model_quality_fn(forecaster)))
        return options, options.price(forecast)
    models = forecaster.forecasters
    options = replace(options, quality_fn=replay_quality_fn(model_quality_fn(models[0])))
    priced = options.price(forecast)
    if all(o.strategy == options.options[0].strategy for o in options.options):
        return options, priced  # single passes only: the forecast itself, whichever fold
    fold = np.array([forecaster.fold_of[q.query_id] for q in queries], dtype=np.intp)
    quality = priced.quality.copy()
    for f, model in enumerate(models):
        rows = np.flatnonzero(fold == f)
        if rows.size:
            own = replace(options, quality_fn=replay_quality_fn(model_quality_fn(model)))
            quality[rows] = own.quality(forecast.p_correct[rows])
    return options, replace(priced, quality=quality)


def _realised_arrays(
    options: OptionSet,
    tiers: Sequence[str],
    quality: np.ndarray,
    out_tokens: np.ndarray,
    recorded: Sequence[RecordedOption],
    notes: list[str],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(n, m) realised quality (NaN where unrecorded), plain single-sample output tokens to price at, and
    availability. A strategy run's recorded tokens are its total: divided by the option's multiplier."""
    n, k = quality.shape
    m = len(options)
    realised = np.full((n, m), np.nan)
    realised[:, :k] = quality
    tokens = np.empty((n, m))
    tokens[:, :k] = out_tokens
    available = np.ones((n, m), dtype=bool)
    available[:, :k] = ~np.isnan(quality)
    no_tokens = 0
    for j, rec in enumerate(recorded, start=k):
        option = options.options[j]
        assert (option.tier, option.strategy) == (rec.tier, rec.strategy)
        realised[:, j] = rec.score
        available[:, j] = np.isfinite(rec.score)
        per_sample = rec.output_tokens / option.output_multiplier
        plain = out_tokens[:, list(tiers).index(rec.tier)]
        unrecorded = ~np.isfinite(per_sample) & available[:, j]
        no_tokens += int(unrecorded.sum())
        tokens[:, j] = np.where(np.isfinite(per_sample), per_sample, plain)
    if no_tokens:
        notes.append(
            f"{no_tokens} strategy outcomes without output tokens: priced at the tier's single-pass tokens "
            "x the strategy's output multiplier"
        )
    return realised, tokens, available


def _options_note(options: OptionSet, available: np.ndarray, n_single: int) -> str:
    where = ", ".join(f"{o.tier}@{o.target}" for o in options.options[:n_single])
    if len(options) == n_single:
        return (
            "replay options: single-pass strategy only (no other catalog strategy recorded on enough "
            f"held-out queries), each tier on its cheapest feasible target: {where}"
        )
    n = available.shape[0]
    recorded = ", ".join(
        f"{o.label()} ({int(available[:, o.index].sum())}/{n} queries)" for o in options.options[n_single:]
    )
    return (
        f"replay options: each tier's single pass on its cheapest feasible target ({where}); recorded "
        f"strategies, each available only on the queries where it was recorded: {recorded}"
    )


def _fill_tokens(
    out_tokens: np.ndarray,
    forecast: Forecast,
    tiers: Sequence[str],
    recorded: np.ndarray,
    notes: list[str],
) -> np.ndarray:
    """Unrecorded output lengths: the tier's median recorded length, else the forecast's mean (noted; only
    lengths missing on `recorded` outcomes are priced in realised figures, the others feed the simulation)."""
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
    priced = missing & ~none[None, :] & recorded
    if priced.any():
        notes.append(f"{int(priced.sum())} outcomes without output tokens: tier median")
    return out
