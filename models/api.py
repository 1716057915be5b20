"""The contract between the difficulty predictors and the planner.

A `Forecaster` turns a batch of `Query` objects into a `Forecast`: arrays over (query, tier) of the
single-sample probability of a correct answer and output-token quantiles for a single plain pass. Strategy
effects (majority vote, best-of-N, search, revisions) are applied on top by `models.strategies`, and prices by
`simulator.costmodel`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

CHARS_PER_TOKEN = 4.0
"""English text averages about four characters per token; used when a token count is missing."""


@dataclass(frozen=True)
class Query:
    """What a scheduler knows about a request when it must decide."""

    query_id: str = ""
    prompt: str = ""
    task: str = "default"
    tags: tuple[str, ...] = ()
    tenant: str = "default"
    prompt_tokens: int = 0
    features: Mapping[str, float] = field(default_factory=dict)

    @property
    def input_tokens(self) -> int:
        if self.prompt_tokens > 0:
            return self.prompt_tokens
        return max(1, round(len(self.prompt) / CHARS_PER_TOKEN))


@dataclass(frozen=True)
class Forecast:
    """Per (query, tier) forecasts for a single plain sample. All arrays have shape (n_queries, n_tiers),
    except `input_tokens` and `level_group` with shape (n_queries,).

    `level_se` (optional) is the logit-scale standard error of the tier level each forecast rests on
    (`models.level`); queries with equal `level_group` share those levels (and their errors), e.g. every
    query one fitted forecaster scores with its pooled levels. Both are None when the forecaster does not
    know them."""

    tiers: tuple[str, ...]
    p_correct: np.ndarray
    output_tokens_p50: np.ndarray
    output_tokens_p90: np.ndarray
    input_tokens: np.ndarray
    level_se: np.ndarray | None = None
    level_group: np.ndarray | None = None

    def __post_init__(self) -> None:
        n, k = len(self.input_tokens), len(self.tiers)
        for name in ("p_correct", "output_tokens_p50", "output_tokens_p90", "level_se"):
            arr = getattr(self, name)
            if arr is not None and arr.shape != (n, k):
                raise ValueError(f"{name} has shape {arr.shape}, expected {(n, k)}")
        if (self.level_se is None) != (self.level_group is None):
            raise ValueError("level_se and level_group come together (both or neither)")
        if self.level_group is not None and self.level_group.shape != (n,):
            raise ValueError(f"level_group has shape {self.level_group.shape}, expected {(n,)}")

    def tier_index(self, tier: str) -> int:
        return self.tiers.index(tier)


@runtime_checkable
class Forecaster(Protocol):
    """Anything that forecasts per-tier success and tokens for a batch of queries."""

    @property
    def tiers(self) -> tuple[str, ...]: ...

    def forecast(self, queries: Sequence[Query]) -> Forecast: ...
