"""Recorded outcomes of non-single strategies (chain of thought, majority vote, best-of-N, revisions...).

A held-out run of a catalog strategy other than the single pass (`strategy` = a catalog strategy name such as
"cot", "vote5", "bon4", "revise2") is a realised outcome of the option (tier, strategy): its `score` is what
that strategy delivered on that query, its `output_tokens` everything the strategy generated (every sample,
round and verifier pass: the import convention, see `planner.ingest.schema`).

- realised quality of (query, tier, strategy) = mean recorded score of its runs on that query;
- recorded tokens are divided by the strategy's `output_multiplier` to give the plain single-sample length
  that `OptionSet.metrics` expects (it multiplies by the multiplier again), so the realised cost is the one
  cost model at the recorded total tokens;
- coverage: strategy runs in real logs often cover only part of the queries. A (tier, strategy) becomes a
  replay option when it has outcomes on at least `max(MIN_STRATEGY_QUERIES, min_coverage x n)` of the replay
  queries, and is then *available* only on the queries where it was recorded (the replay's availability
  mask): every recorded outcome is used and no query is dropped for lack of a strategy run (restricting the
  replay to queries where every option was recorded would keep almost none when strategies are logged on
  independent subsets per tier). Pairs below that coverage are left out with their counts in the notes.

Predicted quality of a strategy option is the forecaster's own strategy response (`quality_fn` of the
fitted model, e.g. `DifficultyPredictor.quality_fn` with its offsets fitted from logged strategy runs, else
`models.strategies.expected_quality`); the single pass is always the forecast itself (identity).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from models.strategies import expected_quality
from planner.catalog import Catalog, Strategy, StrategyKind
from planner.evaluation.coverage import MIN_RECORDED_QUERIES, required_queries
from planner.options import QualityFn

MIN_STRATEGY_QUERIES = MIN_RECORDED_QUERIES
"""Replay queries a recorded (tier, strategy) needs at least before it becomes a replay option (the same bar
as a tier's single pass on sparse logs, `planner.evaluation.coverage`)."""


@dataclass(frozen=True)
class RecordedOption:
    """One (tier, strategy) with recorded outcomes: per replay query, mean score and mean total output tokens
    (NaN where unrecorded)."""

    tier: str
    strategy: str
    score: np.ndarray
    output_tokens: np.ndarray

    @property
    def covered(self) -> int:
        return int(np.isfinite(self.score).sum())


def recorded_strategies(
    catalog: Catalog,
    runs: pd.DataFrame,
    key: str,
    single: str,
    tiers: Sequence[str],
    ids: Sequence[str],
    min_coverage: float,
    notes: list[str],
) -> list[RecordedOption]:
    """Every (tier in `tiers`, catalog strategy other than `single`) recorded on enough of the queries
    `ids` (`runs` carries the query key column `key`), in tier then catalog-strategy order; notes what is
    left out."""
    other = runs[runs["strategy"] != single]
    if other.empty:
        return []
    names = [s.name for s in catalog.strategies if s.name != single]
    unknown = sorted(set(other["strategy"].astype(str)) - set(names))
    if unknown:
        notes.append(
            f"strategies with runs but not in the catalog (no response model or price, left out): {unknown}"
        )
    other = other[other["strategy"].isin(names)]
    off_tier = sorted(set(other["tier"].astype(str)) - set(tiers))
    if off_tier:
        notes.append(f"strategy runs of tiers not in the replay (left out): {off_tier}")
    other = other[other["tier"].isin(list(tiers))]
    need = required_queries(min_coverage, len(ids))
    groups = {k: g for k, g in other.groupby(["tier", "strategy"])}
    out: list[RecordedOption] = []
    short: list[str] = []
    for tier in tiers:
        for name in names:
            group = groups.get((tier, name))
            if group is None:
                continue
            means = group.groupby(key)[["score", "output_tokens"]].mean().reindex(list(ids))
            option = RecordedOption(
                tier, name, means["score"].to_numpy(float), means["output_tokens"].to_numpy(float)
            )
            if option.covered >= need:
                out.append(option)
            else:
                short.append(f"{tier}/{name} ({option.covered}/{len(ids)})")
    if short:
        notes.append(
            f"(tier, strategy) pairs recorded on fewer than {need} of the {len(ids)} replay queries "
            f"(left out; covered/total): {short}"
        )
    return out


def replay_quality_fn(fn: QualityFn) -> QualityFn:
    """`fn` for every strategy but the single pass, whose quality is the forecast P(correct) itself."""

    def quality(p_single: np.ndarray, strategy: Strategy) -> np.ndarray:
        if strategy.kind is StrategyKind.SINGLE:
            return p_single
        return fn(p_single, strategy)

    return quality


def model_quality_fn(model: object) -> QualityFn:
    """The fitted forecaster's strategy response (`quality_fn`), else `models.strategies`' closed forms."""
    fn = getattr(model, "quality_fn", None)
    if callable(fn):
        return fn  # type: ignore[no-any-return]
    return expected_quality
