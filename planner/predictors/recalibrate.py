"""Recalibrate a stored predictor for a new task on a small sample of that task's runs, as a new version.

The user's path to calibrated probabilities on an unseen task: import a few hundred runs of it, then
`planner predictors recalibrate VERSION --task NEW --sample-runs 200`. The sample is whole queries drawn at
random (seeded) until it holds `sample_runs` runs; the predictor's `recalibrate` refits only its calibrator
(and token scale) on them; the task's remaining runs score the parent and the recalibrated predictor side by
side. The result is stored as a candidate whose version hashes the parent version, the sample and the
settings; promote it like any other version.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from models.data import prepare_runs
from planner.catalog import Catalog
from planner.errors import InvalidArgumentError
from planner.predictors.kinds import spec_for
from planner.predictors.lifecycle import code_version, data_fingerprint, load_mapped, load_version
from planner.predictors.metrics import EvaluationMetrics, holdout_metrics
from planner.store import Database, PredictorRegistryStore, PredictorVersion

DEFAULT_SAMPLE_RUNS = 200


@dataclass(frozen=True)
class Recalibration:
    version: PredictorVersion
    parent: str
    sample_runs: int
    before: EvaluationMetrics
    """The parent on the task's runs outside the sample."""
    after: EvaluationMetrics
    """The recalibrated predictor on the same runs."""
    reused: bool = False


def sample_queries(frame: pd.DataFrame, sample_runs: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Whole queries in a seeded random order until the sample holds >= `sample_runs` runs; and the rest."""
    keys = frame["task"].astype(str) + "\x1f" + frame["query_id"].astype(str)
    counts = keys.value_counts(sort=False)
    order = np.random.default_rng(seed).permutation(len(counts))
    cumulative = np.cumsum(counts.to_numpy()[order])
    take = int(np.searchsorted(cumulative, sample_runs)) + 1
    if take >= len(counts):
        reason = f"the task has {len(frame)} runs; the sample must leave some out to evaluate on"
        raise InvalidArgumentError.for_field("sample_runs", sample_runs, reason)
    chosen = set(counts.index[order[:take]])
    inside = keys.isin(chosen).to_numpy()
    return frame[inside].reset_index(drop=True), frame[~inside].reset_index(drop=True)


def recalibrate_version(
    db: Database,
    version: str,
    task: str,
    *,
    sample_runs: int = DEFAULT_SAMPLE_RUNS,
    seed: int = 0,
    run_name_map: Mapping[str, str] | None = None,
    catalog: Catalog | None = None,
) -> Recalibration:
    """Recalibrate stored `version` on a sample of `task`'s runs and store the result as a candidate."""
    if not task.strip():
        raise InvalidArgumentError.for_field("task", task, "name the task to recalibrate for")
    if sample_runs < 1:
        raise InvalidArgumentError.for_field("sample_runs", sample_runs, "must be positive")
    parent, predictor = load_version(db, version)
    if not hasattr(predictor, "recalibrate"):
        reason = f"a {parent.kind!r} predictor cannot be recalibrated; use a 'difficulty' one"
        raise InvalidArgumentError.for_field("version", version, reason)
    frame, names = load_mapped(db, task.strip(), run_name_map, catalog)
    sample, rest = sample_queries(frame, sample_runs, seed)
    config = {"parent": parent.version, "task": task.strip(), "sample_runs": sample_runs, "seed": seed}
    doc = {"data": data_fingerprint(sample), "config": config, "code": code_version()}
    new_version = hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]
    evaluation = prepare_runs(rest, names)
    before = holdout_metrics(predictor, evaluation)
    registry = PredictorRegistryStore(db)
    existing = registry.find(new_version)
    if existing is not None:
        after = EvaluationMetrics.from_dict(existing.metrics)
        return Recalibration(existing, parent.version, len(sample), before, after, reused=True)
    recalibrated = predictor.recalibrate(sample)
    after = holdout_metrics(recalibrated, evaluation)
    meta = {
        **parent.meta,
        "task": task.strip(),
        "parent": parent.version,
        "recalibrated_on_runs": len(sample),
        "parent_metrics_on_task": before.to_dict(),
        "config": {**dict(parent.meta.get("config", {})), "recalibration": config},
    }
    artifact = spec_for(parent.kind).dumps(recalibrated)
    stored = registry.put(parent.kind, artifact, after.to_dict(), version=new_version, meta=meta)
    return Recalibration(stored, parent.version, len(sample), before, after)
