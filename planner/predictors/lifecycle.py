"""Predictor lifecycle over the store: train (progress, cancellation), evaluate, promote, roll back, list.

Blocking, side effects only through the store; used by both the CLI and `PredictorService`. A version id is
the content hash of the training data (order-independent hash of the runs) and the training config (kind,
task, split, seed, hyper-parameters, run-name -> tier map, package version): training the same thing twice
stores nothing new.
The stored artifact is the one trained on the training part of a query-level split; its held-out metrics are
recorded with it.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import math
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import GroupShuffleSplit
from sqlalchemy import select

from models.api import Forecaster
from models.baseline import PriorForecaster
from models.data import prepare_runs
from planner.catalog import Catalog
from planner.errors import FailedPreconditionError, FieldViolation, InvalidArgumentError, PlannerError
from planner.predictors.kinds import PredictorKind, parse_kind, spec_for
from planner.predictors.metrics import EvaluationMetrics, holdout_metrics
from planner.store import Database, PredictorRegistryStore, PredictorVersion, RunStore
from planner.store.tables import RunRow

DEFAULT_HOLDOUT = 0.3
"""Fraction of queries held out when a request leaves it at 0."""


class TrainStage(StrEnum):
    LOADING = "loading"
    FEATURES = "features"
    FITTING = "fitting"
    CALIBRATING = "calibrating"
    EVALUATING = "evaluating"
    SAVING = "saving"
    DONE = "done"


@dataclass(frozen=True)
class TrainProgress:
    stage: TrainStage
    fraction: float
    message: str


ProgressSink = Callable[[TrainProgress], None]


class TrainingCancelledError(PlannerError):
    """Training was cancelled (client cancel, deadline, Ctrl-C); nothing was stored."""


@dataclass(frozen=True)
class TrainConfig:
    """What a training job trains: kind, task ("" = all runs), query-level split and hyper-parameters."""

    kind: PredictorKind
    task: str = ""
    holdout_fraction: float = DEFAULT_HOLDOUT
    seed: int = 0
    params: tuple[tuple[str, str], ...] = ()

    @classmethod
    def create(
        cls,
        kind: str | None = None,
        task: str = "",
        holdout_fraction: float = 0.0,
        seed: int = 0,
        params: Mapping[str, str] | None = None,
    ) -> TrainConfig:
        """A validated config; `holdout_fraction` 0 means `DEFAULT_HOLDOUT`."""
        fraction = holdout_fraction or DEFAULT_HOLDOUT
        if not 0.0 < fraction < 1.0 or math.isnan(fraction):
            raise InvalidArgumentError.for_field("holdout_fraction", holdout_fraction, "must be in (0, 1)")
        if seed < 0 or seed >= 2**32:
            raise InvalidArgumentError.for_field("seed", seed, "must be in [0, 2**32)")
        pairs = tuple(sorted((str(k), str(v)) for k, v in (params or {}).items()))
        return cls(parse_kind(kind), task.strip(), float(fraction), int(seed), pairs)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "task": self.task,
            "holdout_fraction": self.holdout_fraction,
            "seed": self.seed,
            "params": dict(self.params),
        }


@dataclass(frozen=True)
class TrainResult:
    version: PredictorVersion
    metrics: EvaluationMetrics
    promoted: bool = False
    reused: bool = False
    """True when this exact data + config was trained before (the stored version is returned)."""
    predictor: Forecaster | None = field(default=None, compare=False, repr=False)
    """The fitted predictor (None when reused)."""


@dataclass(frozen=True)
class Split:
    train: pd.DataFrame
    holdout: pd.DataFrame


# ---- data -------------------------------------------------------------------------------------------------
def known_tasks(db: Database) -> list[str]:
    runs = RunRow.__table__  # type: ignore[attr-defined]
    with db.engine.connect() as conn:
        return sorted(str(t) for t in conn.execute(select(runs.c.task).distinct()).scalars())


def load_runs(db: Database, task: str = "", field: str = "task") -> pd.DataFrame:
    """The stored runs of `task` ("" = all); InvalidArgumentError naming the known tasks when none."""
    frame = RunStore(db).load_frame(task=task or None)
    if frame.empty:
        tasks = known_tasks(db)
        reason = f"no stored runs for this task; known tasks: {tasks}" if tasks else "the store holds no runs"
        raise InvalidArgumentError.for_field(field, task, reason)
    return frame


def load_mapped(
    db: Database, task: str, run_name_map: Mapping[str, str] | None, catalog: Catalog | None
) -> tuple[pd.DataFrame, dict[str, str]]:
    """`load_runs`, then -- with `catalog` -- run models and strategies it does not know under their own
    names mapped onto it (`planner.derived_tiers`: e.g. `majority_vote` with n = 5 becomes `vote5`, a
    `greedy` run the plain single pass); returns the runs and the run-name -> tier map to use with them."""
    frame = load_runs(db, task)
    if catalog is None:
        return frame, dict(run_name_map or {})
    from planner.derived_tiers import extend_catalog, remap_runs
    from planner.prices import price_tables
    from planner.settings import load_settings

    settings = load_settings()  # the same price sources as the server and the CLI
    extension = extend_catalog(catalog, frame, price_tables(settings.price_table, settings.list_prices))
    return remap_runs(frame, extension), extension.catalog.run_name_map()


def data_fingerprint(frame: pd.DataFrame) -> str:
    """SHA-256 of the multiset of rows (row order does not matter)."""
    text = frame.copy()
    for col in text.columns:
        if text[col].dtype == object:  # JSON fields (dicts) hash by their canonical text
            text[col] = [_canonical(v) for v in text[col]]
    rows = np.sort(pd.util.hash_pandas_object(text, index=False).to_numpy())
    digest = hashlib.sha256(",".join(map(str, text.columns)).encode())
    digest.update(rows.tobytes())
    return digest.hexdigest()


def _canonical(value: Any) -> Any:
    if isinstance(value, dict | list | tuple):
        return json.dumps(value, sort_keys=True, default=str)
    return value


def code_version() -> str:
    """The installed package's version: a new release retrains what an old one trained on the same data."""
    try:
        return importlib.metadata.version("compute-planner")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def version_id(data_hash: str, config: TrainConfig, run_name_map: Mapping[str, str]) -> str:
    """The version of a predictor trained on data with `data_hash` under `config` (16 hex digits)."""
    doc = {
        "data": data_hash,
        "config": config.to_dict(),
        "run_name_map": sorted(run_name_map.items()),
        "code": code_version(),
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def split_runs(frame: pd.DataFrame, fraction: float, seed: int) -> Split:
    """Query-level split: every run of a query lands on the same side."""
    groups = frame["task"].astype(str) + "\x1f" + frame["query_id"].astype(str)
    n_queries = groups.nunique()
    if n_queries < 2 or round(fraction * n_queries) < 1 or round((1 - fraction) * n_queries) < 1:
        reason = f"{n_queries} queries cannot be split {1 - fraction:.2f}/{fraction:.2f}"
        raise InvalidArgumentError.for_field("holdout_fraction", fraction, reason)
    splitter = GroupShuffleSplit(n_splits=1, test_size=fraction, random_state=seed)
    train_idx, test_idx = next(splitter.split(frame, groups=groups))
    return Split(frame.iloc[train_idx].reset_index(drop=True), frame.iloc[test_idx].reset_index(drop=True))


# ---- training ---------------------------------------------------------------------------------------------
class _Reporter:
    """Turns estimator progress into `TrainProgress` events and raises when cancelled."""

    def __init__(self, sink: ProgressSink | None, cancel: threading.Event | None) -> None:
        self.sink, self.cancel = sink, cancel

    def __call__(self, stage: TrainStage, fraction: float, message: str) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise TrainingCancelledError("training cancelled; nothing stored")
        if self.sink is not None:
            self.sink(TrainProgress(stage, min(1.0, max(0.0, fraction)), message))

    def fitting(self, fraction: float, message: str) -> None:
        lowered = message.lower()
        if "calibrat" in lowered:
            stage = TrainStage.CALIBRATING
        elif "featur" in lowered or "preparing" in lowered:
            stage = TrainStage.FEATURES
        else:
            stage = TrainStage.FITTING
        self(stage, 0.1 + 0.7 * fraction, message)


def train_predictor(
    db: Database,
    config: TrainConfig,
    run_name_map: Mapping[str, str],
    *,
    progress: ProgressSink | None = None,
    cancel: threading.Event | None = None,
    promote_if_better: bool = False,
    catalog: Catalog | None = None,
) -> TrainResult:
    """Train `config` on the stored runs, evaluate it on held-out queries, store it as a candidate and
    (optionally) promote it when its held-out Brier score beats the active predictor's on the same runs.
    With `catalog`, run models and strategies it does not know under their own names are first mapped onto
    it (`planner.derived_tiers`: e.g. a `majority_vote` run with n = 5 trains the catalog's `vote5`)."""
    report = _Reporter(progress, cancel)
    report(TrainStage.LOADING, 0.0, f"loading runs (task {config.task or '<all>'})")
    frame, run_name_map = load_mapped(db, config.task, run_name_map, catalog)
    version = version_id(data_fingerprint(frame), config, run_name_map)
    registry = PredictorRegistryStore(db)
    existing = registry.find(version)
    if existing is not None:
        metrics = EvaluationMetrics.from_dict(existing.metrics)
        report(TrainStage.DONE, 1.0, f"already trained as {version}")
        return TrainResult(existing, metrics, promoted=False, reused=True)
    split = split_runs(frame, config.holdout_fraction, config.seed)
    report(TrainStage.LOADING, 0.05, f"{len(split.train)} training runs, {len(split.holdout)} held out")
    spec = spec_for(config.kind)
    estimator = spec.build(run_name_map, dict(config.params), config.seed)
    predictor = spec.fit(estimator, split.train, report.fitting)
    report(TrainStage.EVALUATING, 0.85, f"scoring {len(split.holdout)} held-out runs")
    holdout = prepare_runs(split.holdout, run_name_map)
    baseline = PriorForecaster(dict(run_name_map)).fit(split.train)
    metrics = holdout_metrics(predictor, holdout, baseline)
    report(TrainStage.SAVING, 0.95, "saving artifact")
    artifact = spec.dumps(predictor)
    meta = {
        "task": config.task,
        "tiers": list(predictor.tiers),
        "train_runs": len(split.train),
        "holdout_runs": len(split.holdout),
        "config": config.to_dict(),
    }
    if cancel is not None and cancel.is_set():
        raise TrainingCancelledError("training cancelled; nothing stored")
    stored = registry.put(config.kind.value, artifact, metrics.to_dict(), version=version, meta=meta)
    promoted = promote_if_better and _beats_active(db, predictor, holdout, metrics, run_name_map)
    if promoted:
        stored = registry.promote(stored.version)
    report(TrainStage.DONE, 1.0, f"stored {stored.version}" + (" and promoted it" if promoted else ""))
    return TrainResult(stored, metrics, promoted=promoted, predictor=predictor)


def _beats_active(
    db: Database,
    predictor: Forecaster,
    holdout: pd.DataFrame,
    metrics: EvaluationMetrics,
    run_name_map: Mapping[str, str],
) -> bool:
    active = PredictorRegistryStore(db).promoted()
    if active is None:
        return True
    current = spec_for(active.kind).loads(active.artifact)
    theirs = holdout_metrics(current, holdout).brier
    return bool(math.isnan(theirs) or metrics.brier < theirs)


# ---- evaluation -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Evaluation:
    version: str
    metrics: EvaluationMetrics
    runs: int = 0
    notes: tuple[str, ...] = field(default=())


def evaluate_version(
    db: Database,
    version: str = "",
    *,
    task: str = "",
    holdout_fraction: float = 0.0,
    seed: int = 0,
    run_name_map: Mapping[str, str] | None = None,
    catalog: Catalog | None = None,
) -> Evaluation:
    """Held-out metrics of a stored version ("" = the active one).

    On the task it was trained on (or any task when it was trained on all runs) the held-out part of a
    query-level split is scored: the training split when `holdout_fraction` is 0, else a new split (whose
    held-out queries may overlap the training ones -- optimistic). On another task every run is scored, and
    the prior baseline is fitted on those same runs (in-sample, so a strict baseline).
    """
    stored = _stored(db, version)
    config = stored.meta.get("config", {})
    trained_task = str(stored.meta.get("task", ""))
    task = task.strip() or trained_task
    frame, names = load_mapped(db, task, run_name_map, catalog)
    predictor = spec_for(stored.kind).loads(stored.artifact)
    notes: list[str] = []
    if trained_task and task != trained_task:
        evaluated, reference = frame, frame
        notes.append(f"task {task!r} is not the training task {trained_task!r}: all its runs scored")
    else:
        fraction = holdout_fraction or float(config.get("holdout_fraction", DEFAULT_HOLDOUT))
        if holdout_fraction:
            notes.append("a split other than the training one may overlap the training queries")
        split = split_runs(frame, fraction, seed if holdout_fraction else int(config.get("seed", 0)))
        evaluated, reference = split.holdout, split.train
    baseline = PriorForecaster(names).fit(reference)
    metrics = holdout_metrics(predictor, prepare_runs(evaluated, names), baseline)
    return Evaluation(stored.version, metrics, len(evaluated), tuple(notes))


def _stored(db: Database, version: str) -> PredictorVersion:
    registry = PredictorRegistryStore(db)
    if version:
        _check_version(version)
        return registry.get(version)
    active = registry.promoted()
    if active is None:
        raise InvalidArgumentError.for_field("version", "", "no predictor is active; name a version")
    return active


def _check_version(version: str) -> None:
    if len(version) > 64 or not version.isalnum():
        raise InvalidArgumentError(
            "invalid version", [FieldViolation("version", version, "must be an alphanumeric version id")]
        )


# ---- registry operations ----------------------------------------------------------------------------------
def list_versions(db: Database, task: str = "") -> tuple[list[PredictorVersion], str]:
    """Stored versions (newest first; only those trained on `task` when given) and the active version."""
    versions = PredictorRegistryStore(db).list()
    active = next((v.version for v in versions if v.active), "")
    if task:
        versions = [v for v in versions if str(v.meta.get("task", "")) == task]
    return versions, active


def load_version(db: Database, version: str) -> tuple[PredictorVersion, Forecaster]:
    """A stored version and its loaded predictor (NotFoundError for an unknown version)."""
    _check_version(version)
    stored = PredictorRegistryStore(db).get(version)
    return stored, spec_for(stored.kind).loads(stored.artifact)


def promote_version(db: Database, version: str) -> tuple[PredictorVersion, str]:
    """Promote `version`; returns it and the previously active version ("" when none)."""
    _check_version(version)
    registry = PredictorRegistryStore(db)
    previous = registry.promoted()
    return registry.promote(version), "" if previous is None else previous.version


def rollback_version(db: Database) -> tuple[PredictorVersion, str]:
    """Re-activate the previously active version; returns it and the version rolled back."""
    registry = PredictorRegistryStore(db)
    current = registry.promoted()
    now = registry.rollback()
    return now, "" if current is None else current.version


def rollback_target(db: Database) -> str:
    """The version a roll-back would re-activate (FailedPreconditionError when there is none)."""
    target = PredictorRegistryStore(db).rollback_target()
    if target is None:
        raise FailedPreconditionError("no previously promoted predictor to roll back to")
    return target
