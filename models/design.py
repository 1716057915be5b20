"""The training design shared by the predictor and its baselines: queries, features and observed cells.

`build_design` turns a prepared runs frame into one row of features per distinct query (fitting the
featuriser) and the observed (query, tier, task, score) cells of its plain runs, so every success model trains
on exactly the same inputs and a comparison between them measures the model, not the plumbing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from models.api import Query
from models.data import PLAIN_STRATEGY, index_of, queries_from_frame, query_keys
from models.features import QueryFeaturizer
from models.success import Cells


@dataclass(frozen=True)
class Design:
    """Features per query (`x`, rows aligned with `queries`), the plain cells, and per-run index arrays."""

    queries: list[Query]
    x: np.ndarray
    cells: Cells
    tiers: tuple[str, ...]
    tasks: tuple[str, ...]
    run_query: np.ndarray
    """Query row of every run of the frame."""
    run_tier: np.ndarray
    """Tier index of every run of the frame."""
    plain: np.ndarray
    """Boolean mask of the frame's plain runs (all runs when none is marked plain)."""


def build_design(frame: pd.DataFrame, featurizer: QueryFeaturizer) -> Design:
    """Fit `featurizer` on the frame's queries and index its runs (see the module docstring)."""
    queries = queries_from_frame(frame)
    keys = query_keys(frame)
    run_query = index_of(keys, list(dict.fromkeys(keys)))
    tiers = tuple(sorted(str(t) for t in frame["tier"].unique()))
    tasks = tuple(sorted(str(t) for t in frame["task"].unique()))
    run_tier = index_of(frame["tier"], tiers)
    plain = (frame["strategy"] == PLAIN_STRATEGY).to_numpy()
    if not plain.any():
        plain = np.ones(len(frame), dtype=bool)
    x = featurizer.fit(queries).transform(queries)
    cells = Cells(
        query=run_query[plain],
        tier=run_tier[plain],
        task=index_of(frame["task"], tasks)[plain],
        score=frame["score"].to_numpy(float)[plain],
    )
    return Design(queries, x, cells, tiers, tasks, run_query, run_tier, plain)


def task_index(tasks: tuple[str, ...], queries: Sequence[Query]) -> np.ndarray:
    """Index of each query's task in `tasks` (-1 for a task not seen in training)."""
    lookup = {t: i for i, t in enumerate(tasks)}
    return np.array([lookup.get(q.task, -1) for q in queries], dtype=int)
