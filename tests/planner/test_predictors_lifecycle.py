"""Predictor lifecycle (`planner.predictors`) over a real store, on SQLite and PostgreSQL: train with
progress, content-hash versions, held-out metrics, promote / roll back / list, skops allowlist, startup
bootstrap, CLI."""

from __future__ import annotations

import json
import math
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from planner.catalog import Catalog, load_catalog
from planner.cli import app
from planner.demo import seed_demo
from planner.errors import FailedPreconditionError, InvalidArgumentError, NotFoundError
from planner.predictors import (
    PredictorKind,
    TrainConfig,
    TrainingCancelledError,
    TrainProgress,
    TrainStage,
    evaluate_version,
    list_versions,
    load_version,
    promote_version,
    rollback_version,
    spec_for,
    startup_predictor,
    train_predictor,
)
from planner.predictors.lifecycle import data_fingerprint
from planner.predictors.metrics import expected_calibration_error
from planner.predictors.recalibrate import recalibrate_version
from planner.store import Database, PredictorRegistryStore, PredictorStatus, RunStore


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


@pytest.fixture
def names(catalog: Catalog) -> dict[str, str]:
    return catalog.run_name_map()


@pytest.fixture
def seeded(db: Database, catalog: Catalog) -> Database:
    seed_demo(db, catalog, n_queries=80, seed=1)
    return db


def _prior(seed: int = 0, **kw: object) -> TrainConfig:
    return TrainConfig.create(kind="prior", seed=seed, **kw)  # type: ignore[arg-type]


def test_train_streams_stages_in_order_and_stores_a_candidate_with_metrics(
    seeded: Database, names: dict[str, str]
) -> None:
    events: list[TrainProgress] = []
    result = train_predictor(seeded, _prior(), names, progress=events.append)
    stages = [e.stage for e in events]
    assert stages[0] is TrainStage.LOADING and stages[-1] is TrainStage.DONE
    assert TrainStage.EVALUATING in stages and TrainStage.SAVING in stages
    fractions = [e.fraction for e in events]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    v = result.version
    assert v.status is PredictorStatus.CANDIDATE and v.kind == "prior" and not result.reused
    assert v.meta["train_runs"] > 0 and v.meta["holdout_runs"] > 0 and v.meta["tiers"]
    m = result.metrics
    assert m.n > 0 and 0.0 <= m.brier <= 1.0 and 0.0 <= m.ece <= 1.0 and m.per_tier
    assert m.baseline_brier == pytest.approx(m.brier)  # the prior is its own baseline
    assert {t.tier for t in m.per_tier} <= set(v.meta["tiers"])


def test_version_is_a_content_hash_of_data_and_config(seeded: Database, names: dict[str, str]) -> None:
    first = train_predictor(seeded, _prior(), names)
    again = train_predictor(seeded, _prior(), names)
    assert again.reused and again.version.version == first.version.version
    assert len(PredictorRegistryStore(seeded).list()) == 1
    other_seed = train_predictor(seeded, _prior(seed=1), names)
    other_params = train_predictor(seeded, _prior(params={"prior_strength": "5"}), names)
    RunStore(seeded).add_batch([{"query_id": "new-q", "model": "m-new", "correct": 1, "task": "math"}])
    more_data = train_predictor(seeded, _prior(), names)
    versions = {r.version.version for r in (first, other_seed, other_params, more_data)}
    assert len(versions) == 4


@settings(max_examples=20, deadline=None)
@given(st.randoms(use_true_random=False))
def test_data_fingerprint_ignores_row_order_but_not_content(rnd: object) -> None:
    frame = pd.DataFrame(
        {
            "query_id": [f"q{i}" for i in range(12)],
            "score": np.linspace(0, 1, 12),
            "features": [{"a": float(i)} for i in range(12)],
        }
    )
    order = list(range(12))
    rnd.shuffle(order)  # type: ignore[attr-defined]
    assert data_fingerprint(frame.iloc[order]) == data_fingerprint(frame)
    changed = frame.copy()
    changed.loc[order[0], "score"] = 0.123
    assert data_fingerprint(changed) != data_fingerprint(frame)


def test_promote_and_rollback_walk_back_through_history(seeded: Database, names: dict[str, str]) -> None:
    a, b, c = (train_predictor(seeded, _prior(seed=s), names).version.version for s in (1, 2, 3))
    with pytest.raises(FailedPreconditionError):
        rollback_version(seeded)
    assert promote_version(seeded, a) == (PredictorRegistryStore(seeded).get(a, with_artifact=False), "")
    for previous, v in ((a, b), (b, c)):
        now, was = promote_version(seeded, v)
        assert now.active and was == previous
    versions, active = list_versions(seeded)
    assert active == c and sum(v.active for v in versions) == 1
    now, rolled = rollback_version(seeded)
    assert (now.version, rolled) == (b, c)
    now, rolled = rollback_version(seeded)
    assert (now.version, rolled) == (a, b)
    with pytest.raises(FailedPreconditionError):
        rollback_version(seeded)  # c and b were rolled back: they are not roll-back targets again
    assert promote_version(seeded, c)[1] == a
    assert rollback_version(seeded)[0].version == a


def test_bad_arguments_name_the_field_and_the_valid_values(seeded: Database, names: dict[str, str]) -> None:
    with pytest.raises(InvalidArgumentError) as kind:
        TrainConfig.create(kind="gbm-xl")
    assert kind.value.violations[0].field == "kind" and "prior" in kind.value.violations[0].reason
    with pytest.raises(InvalidArgumentError) as task:
        train_predictor(seeded, _prior(task="no-such-task"), names)
    assert task.value.violations[0].field == "task" and "math" in task.value.violations[0].reason
    with pytest.raises(InvalidArgumentError) as params:
        train_predictor(seeded, _prior(params={"bogus": "1", "prior_strength": "x"}), names)
    assert {v.field for v in params.value.violations} == {"params.bogus", "params.prior_strength"}
    for fraction in (1.0, -0.2, 1.5):
        with pytest.raises(InvalidArgumentError):
            TrainConfig.create(kind="prior", holdout_fraction=fraction)
    with pytest.raises(NotFoundError):
        promote_version(seeded, "0123456789abcdef")
    with pytest.raises(InvalidArgumentError):
        promote_version(seeded, "../etc")
    assert PredictorRegistryStore(seeded).list() == []


def test_cancelled_training_stores_nothing(seeded: Database, names: dict[str, str]) -> None:
    cancel = threading.Event()

    def cancel_when_fitting(p: TrainProgress) -> None:
        if p.stage is not TrainStage.LOADING:
            cancel.set()

    with pytest.raises(TrainingCancelledError):
        train_predictor(seeded, _prior(), names, progress=cancel_when_fitting, cancel=cancel)
    assert PredictorRegistryStore(seeded).list() == []


def test_artifacts_load_only_allowlisted_types(seeded: Database, names: dict[str, str]) -> None:
    stored = train_predictor(seeded, _prior(), names).version
    _, predictor = load_version(seeded, stored.version)
    assert predictor.tiers == tuple(stored.meta["tiers"])
    hostile = sio.dumps({"x": Path("/etc/passwd")})  # a type outside the prior's allowlist
    with pytest.raises(FailedPreconditionError, match="allowlist"):
        spec_for(PredictorKind.PRIOR).loads(hostile)
    PredictorRegistryStore(seeded).put("prior", hostile, version="bad0")
    with pytest.raises(FailedPreconditionError):
        load_version(seeded, "bad0")


def test_evaluate_uses_the_training_split_and_scores_other_tasks_whole(
    seeded: Database, names: dict[str, str]
) -> None:
    trained = train_predictor(seeded, _prior(task="math"), names)
    promote_version(seeded, trained.version.version)
    same = evaluate_version(seeded, run_name_map=names)
    assert same.version == trained.version.version and same.notes == ()
    assert same.metrics.brier == pytest.approx(trained.metrics.brier)
    other = evaluate_version(seeded, trained.version.version, task="code", run_name_map=names)
    assert other.runs == RunStore(seeded).count(task="code") and other.notes
    resplit = evaluate_version(seeded, holdout_fraction=0.5, seed=7, run_name_map=names)
    assert resplit.notes and resplit.metrics.n > 0


def test_startup_loads_the_promoted_version_else_bootstraps_a_prior(
    db: Database, catalog: Catalog, names: dict[str, str]
) -> None:
    assert startup_predictor(db, names) is None  # empty store: nothing to forecast from
    seed_demo(db, catalog, n_queries=40, seed=2)
    boot = startup_predictor(db, names)
    assert boot is not None and boot.kind == "prior"
    assert list_versions(db)[1] == boot.version
    other = train_predictor(db, _prior(seed=9), names).version.version
    promote_version(db, other)
    again = startup_predictor(db, names)
    assert again is not None and again.version == other
    assert again.predictor.forecast([]).p_correct.shape == (0, len(again.predictor.tiers))


def test_expected_calibration_error_is_zero_when_calibrated_and_large_when_not() -> None:
    p = np.repeat([0.2, 0.8], 1000)
    y = np.concatenate([np.r_[np.ones(200), np.zeros(800)], np.r_[np.ones(800), np.zeros(200)]])
    assert expected_calibration_error(p, y) == pytest.approx(0.0)
    assert expected_calibration_error(1 - p, y) == pytest.approx(0.6)
    assert math.isnan(expected_calibration_error(np.zeros(0), np.zeros(0)))


def test_difficulty_predictor_trains_round_trips_and_recalibrates_for_a_new_task(
    sqlite_db: Database, catalog: Catalog, names: dict[str, str]
) -> None:
    seed_demo(sqlite_db, catalog, n_queries=120, seed=3)
    params = {"n_components": "4", "mf_rank": "0", "calibration": "none"}  # small and fast
    config = TrainConfig.create(kind="difficulty", task="math", params=params)
    events: list[TrainProgress] = []
    result = train_predictor(sqlite_db, config, names, progress=events.append, promote_if_better=True)
    assert result.promoted and result.version.kind == "difficulty"
    assert {TrainStage.FEATURES, TrainStage.FITTING} <= {e.stage for e in events}
    _, loaded = load_version(sqlite_db, result.version.version)
    assert result.predictor is not None and loaded.tiers == result.predictor.tiers

    parent = result.version.version
    rc = recalibrate_version(sqlite_db, parent, "code", sample_runs=60, run_name_map=names)
    assert rc.parent == parent and rc.sample_runs >= 60 and rc.version.version != parent
    assert rc.version.meta["parent"] == parent and rc.version.meta["task"] == "code"
    assert rc.before.n == rc.after.n > 0  # parent and recalibrated scored on the same held-out runs
    assert recalibrate_version(sqlite_db, parent, "code", sample_runs=60, run_name_map=names).reused
    with pytest.raises(InvalidArgumentError) as too_many:
        recalibrate_version(sqlite_db, parent, "code", sample_runs=10**6, run_name_map=names)
    assert too_many.value.violations[0].field == "sample_runs"
    prior = train_predictor(sqlite_db, _prior(), names).version.version
    with pytest.raises(InvalidArgumentError, match="cannot be recalibrated"):
        recalibrate_version(sqlite_db, prior, "code", run_name_map=names)


def test_cli_train_list_promote_rollback_evaluate_print_one_json_object(
    tmp_path: Path, catalog: Catalog
) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    db = Database(url)
    seed_demo(db, catalog, n_queries=40, seed=4)
    runner = CliRunner()

    def run(*args: str) -> tuple[int, dict[str, object]]:
        out = runner.invoke(app, [*args, "--database-url", url, "--json"])
        return out.exit_code, json.loads(out.stdout)

    code, first = run("train", "--kind", "prior")
    assert code == 0 and first["status"] == "candidate" and first["reused"] is False
    code, second = run("train", "--kind", "prior", "--seed", "5")
    assert code == 0 and second["version"] != first["version"]
    assert run("predictors", "promote", str(first["version"]))[0] == 0
    code, promoted = run("predictors", "promote", str(second["version"]))
    assert code == 0 and promoted["previous_version"] == first["version"]
    code, listed = run("predictors", "list")
    assert listed["active_version"] == second["version"] and len(listed["predictors"]) == 2  # type: ignore[arg-type]
    code, evaluated = run("predictors", "evaluate")
    assert code == 0 and evaluated["version"] == second["version"]
    code, rolled = run("predictors", "rollback")
    assert code == 0 and rolled["rolled_back_version"] == second["version"]
    code, error = run("train", "--kind", "nope")
    assert code == 2 and error["error"] == "InvalidArgumentError"
    code, error = run("predictors", "recalibrate", str(first["version"]), "--task", "code")
    assert code == 2 and "cannot be recalibrated" in str(error["message"])
    db.dispose()
