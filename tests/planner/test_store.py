"""Store: migrations, runs repository, ledger, audit log, predictor registry, catalog versions."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from hypothesis import given
from hypothesis import strategies as st

from planner.errors import FailedPreconditionError, InvalidArgumentError, NotFoundError
from planner.store import (
    AuditLog,
    CatalogStore,
    Database,
    DecisionRecord,
    Ledger,
    PredictorRegistryStore,
    PredictorStatus,
    RunFilter,
    RunStore,
    period_key,
)
from planner.store.database import alembic_config, upgrade
from planner.store.run_insert import params_key, params_keys
from planner.store.tables import STORE_METADATA

CATALOG_TOML = """
name = "tiny"
[[tiers]]
name = "small"
total_params_b = 1
active_params_b = 1
run_names = ["small-v1"]
[[strategies]]
name = "single"
[[targets]]
name = "gpu"
family = "gpu"
price_model = "device_hour"
memory_gb = 80
usd_per_hour = 2
"""


def _record(q: str, model: str = "m1", correct: int = 1, **kw: object) -> dict[str, object]:
    return {"query_id": q, "model": model, "correct": correct, "task": "t", **kw}


def test_migrations_match_the_table_models(sqlite_db: Database) -> None:
    with sqlite_db.engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), STORE_METADATA)
    assert diffs == []


def test_reopening_a_database_keeps_its_data(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'nested' / 'dir' / 'x.db'}"
    RunStore(Database(url)).add_batch([_record("q1")])
    assert RunStore(Database(url)).count() == 1


def test_bad_database_url_names_the_field() -> None:
    with pytest.raises(InvalidArgumentError, match="database_url"):
        Database("not a url")


def test_add_batch_is_idempotent_and_stats_count(db: Database) -> None:
    store = RunStore(db)
    batch = [
        _record("q1"),
        _record("q2", correct=0),
        _record("q1", model="m2"),
        _record("q1", sample_index=1),
    ]
    assert store.add_batch(batch) == 4
    assert store.add_batch(batch) == 0
    assert store.count() == 4
    stats = store.stats()
    assert (stats.rows, stats.queries, stats.models, stats.tiers, stats.tasks) == (4, 2, 2, 2, 1)
    m1 = next(t for t in stats.per_tier if t.tier == "m1")
    assert m1.rows == 3 and m1.accuracy == pytest.approx(2 / 3)
    assert store.stats(task="other").rows == 0


def test_strategy_params_are_part_of_the_key_in_any_spelling(db: Database) -> None:
    """majority_vote n=5 and n=16 of one query are two runs; {"n": 5} as a dict, '{"n": 5}', '{"n":5}' and
    {"n": 5.0} are one; no params, None, '' and {} are one."""
    store = RunStore(db)
    vote = {"strategy": "majority_vote"}
    assert store.add_batch([_record("q1", strategy_params={"n": 5}, **vote),
                            _record("q1", strategy_params={"n": 16}, **vote),
                            _record("q1", **vote)]) == 3  # fmt: skip
    spellings = ['{"n": 5}', '{"n":5}', {"n": 5.0}, ' { "n" : 5 } ', '{"n": 16}', None, "{}", {}]
    assert store.add_batch([_record("q1", strategy_params=p, **vote) for p in spellings]) == 0
    assert store.add_batch([_record("q1", strategy_params={"n": 5, "temperature": 0.7}, **vote)]) == 1
    assert store.count() == 4
    assert [r["strategy_params"] for r in store.query()] == [
        {"n": 5},
        {"n": 16},
        None,
        {"n": 5, "temperature": 0.7},
    ]


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-1000, 1000) | st.floats(-1e6, 1e6) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)


@given(st.dictionaries(st.text(max_size=6), _JSON, max_size=4))
def test_params_key_is_one_text_per_parsed_object(params: dict[str, object]) -> None:
    import json

    key = params_key(params)
    reordered = dict(reversed(list(params.items())))
    assert params_key(json.dumps(reordered, indent=2)) == params_key(json.dumps(params)) == key
    assert (key == "") == (params == {})
    column = pd.Series([json.dumps(params), None, params, json.dumps(params)], dtype=object).to_numpy()
    assert list(params_keys(column)) == [key, "", key, key]


def test_query_and_load_frame_return_canonical_columns(db: Database) -> None:
    store = RunStore(db)
    ts = datetime(2026, 11, 23, 10, tzinfo=UTC)
    store.add_batch([_record("q1", features={"x": 1.5}, timestamp=ts), _record("q2", model="m2")])
    rows = store.query(RunFilter(model="m1"))
    assert len(rows) == 1 and rows[0]["features"] == {"x": 1.5}
    assert rows[0]["timestamp"].replace(tzinfo=UTC) == ts
    assert len(store.query(limit=1, offset=1)) == 1
    frame = store.load_frame(models=["m2"])
    assert list(frame["query_id"]) == ["q2"]
    assert "prompt" in frame.columns and "source" not in frame.columns
    full = store.load_frame(task="t")
    assert full.loc[full.query_id == "q1", "timestamp"].iloc[0] == ts


def test_prompts_are_stored_once_per_query_and_read_back_on_every_run(db: Database) -> None:
    store = RunStore(db)
    batch = [
        _record("q1", prompt="What is 2+2?"),
        _record("q1", model="m2", prompt="What is 2+2?"),
        _record("q1", model="m3", prompt="What is 2+2? Think."),  # its own prompt is kept
        _record("q2", prompt="Name a prime."),
        _record("q3"),  # no prompt anywhere for q3
        _record("q1", task="other", prompt="Other task, same id."),
    ]
    assert store.add_batch(batch[:2]) == 2
    assert store.add_batch(batch) == 4  # the first two are duplicates; q1's prompt is already stored
    want = {(r["task"], r["query_id"], r["model"]): r.get("prompt") for r in batch}
    got = {(r["task"], r["query_id"], r["model"]): r["prompt"] for r in store.query(limit=100)}
    assert got == want
    frame = store.load_frame(task="t")
    prompts = [None if pd.isna(p) else p for p in frame.prompt]  # pandas reads a missing text as NaN
    assert {(q, m): p for q, m, p in zip(frame.query_id, frame.model, prompts, strict=True)} == {
        (q, m): p for (t, q, m), p in want.items() if t == "t"
    }
    with db.engine.connect() as conn:
        queries = conn.execute(sa.text("SELECT COUNT(*) FROM queries")).scalar_one()
        kept = conn.execute(sa.text("SELECT COUNT(*) FROM runs WHERE prompt IS NOT NULL")).scalar_one()
    assert (queries, kept) == (3, 1)


def test_a_batch_whose_first_prompt_differs_from_the_stored_one_keeps_its_own(db: Database) -> None:
    """The insert blanks prompts equal to the batch's first one of their query; when that first one is not
    the stored prompt, runs repeating it must keep it and only runs equal to the stored one are blanked."""
    store = RunStore(db)
    store.add_batch([_record("q1", prompt="Stored.")])
    batch = [
        _record("q1", model="m2", prompt="New."),
        _record("q1", model="m3", prompt="New."),
        _record("q1", model="m4", prompt="Stored."),
        _record("q1", model="m5"),
        _record("q2", model="m2", prompt="Fresh."),
        _record("q2", model="m3", prompt="Fresh."),
    ]
    assert store.add_batch(batch) == 6
    got = {(r["query_id"], r["model"]): r["prompt"] for r in store.query(limit=100)}
    assert got == {
        ("q1", "m1"): "Stored.",
        ("q1", "m2"): "New.",
        ("q1", "m3"): "New.",
        ("q1", "m4"): "Stored.",
        ("q1", "m5"): "Stored.",  # no prompt of its own: reads its query's
        ("q2", "m2"): "Fresh.",
        ("q2", "m3"): "Fresh.",
    }
    with db.engine.connect() as conn:
        kept = conn.execute(sa.text("SELECT model FROM runs WHERE prompt IS NOT NULL ORDER BY model"))
        assert [m for (m,) in kept] == ["m2", "m3"]


def test_migration_from_0001_moves_prompts_into_queries_and_back(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'old.db'}", migrate=False)
    upgrade(db.engine, "0001")
    insert = sa.text(
        "INSERT INTO runs (task, query_id, prompt, model, tier, strategy, target, sample_index, score,"
        " tenant) VALUES ('t', :q, :p, :m, :m, 'single', '', 0, 1.0, 'default')"
    )
    old = [("q1", "Same", "m1"), ("q1", "Same", "m2"), ("q1", "Different", "m3"), ("q2", None, "m1")]
    with db.begin() as conn:
        conn.execute(insert, [{"q": q, "p": p, "m": m} for q, p, m in old])
    upgrade(db.engine)
    store = RunStore(db)
    want = {(q, m): p for q, p, m in old}
    assert {(r["query_id"], r["model"]): r["prompt"] for r in store.query()} == want
    with db.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT query_id, prompt FROM queries")).all() == [("q1", "Different")]
        assert conn.execute(sa.text("SELECT COUNT(*) FROM runs WHERE prompt IS NOT NULL")).scalar_one() == 2
    with db.begin() as conn:
        command.downgrade(alembic_config(conn), "0001")
    with db.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT query_id, model, prompt FROM runs")).all()
    assert {(q, m): p for q, m, p in rows} == want
    db.dispose()


def test_migration_0004_adds_decision_outcomes_and_back_keeping_rows(tmp_path: Path) -> None:
    from planner.store import Outcome, record_outcomes

    db = Database(f"sqlite:///{tmp_path / 'audit.db'}")
    AuditLog(db).write_many([DecisionRecord("r1", "acme", "q1", "small", "single", "gpu", 0.9, 0.01)])
    assert record_outcomes(db, [Outcome("r1", 0.02, correct=False)]).applied == 1
    with db.begin() as conn:
        command.downgrade(alembic_config(conn), "0003")
    with db.engine.connect() as conn:
        assert [c["name"] for c in sa.inspect(conn).get_columns("decisions")][-1] == "created_at"
        assert conn.execute(sa.text("SELECT request_id FROM decisions")).all() == [("r1",)]
    upgrade(db.engine)
    row = AuditLog(db).recent()[0]
    assert row.request_id == "r1" and row.actual_cost_usd is None  # the outcome went with the columns
    db.dispose()


def test_ledger_reserves_only_under_the_cap(db: Database) -> None:
    ledger = Ledger(db)
    assert ledger.reserve("acme", "2026-11-23", 6.0, 10.0, cap_usd=10.0)
    assert not ledger.reserve("acme", "2026-11-23", 5.0, 1.0, cap_usd=10.0)
    assert ledger.reserve("acme", "2026-11-23", 4.0, 1.0, cap_usd=10.0)
    assert not ledger.reserve("acme", "2026-11-23", 0.0, 5.0, cap_energy_j=14.0)
    spent = ledger.spent("acme", "2026-11-23")
    assert (spent.spent_usd, spent.energy_j) == (pytest.approx(10.0), pytest.approx(11.0))
    ledger.release("acme", "2026-11-23", 20.0)
    assert ledger.spent("acme", "2026-11-23").spent_usd == 0.0
    assert ledger.spent("nobody", "2026-11-23").spent_usd == 0.0
    with pytest.raises(InvalidArgumentError, match="usd"):
        ledger.reserve("acme", "2026-11-23", -1.0)


def test_ledger_never_overspends_under_concurrent_threads(db: Database) -> None:
    ledger = Ledger(db)
    granted: list[bool] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(10):
            ok = ledger.reserve("acme", "2026-11-23T10", 1.0, cap_usd=25.0)
            with lock:
                granted.append(ok)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(granted) == 25
    assert ledger.spent("acme", "2026-11-23T10").spent_usd == pytest.approx(25.0)


def test_period_keys() -> None:
    when = datetime(2026, 11, 23, 10, 30, tzinfo=UTC)
    assert period_key(when) == "2026-11-23"
    assert period_key(when, "hour") == "2026-11-23T10"
    assert period_key(when, "month") == "2026-11"
    assert period_key(when, "week") == "2026-W48"
    with pytest.raises(InvalidArgumentError, match="fortnight"):
        period_key(when, "fortnight")


def test_audit_log_round_trip(db: Database) -> None:
    log = AuditLog(db)
    decisions = [
        DecisionRecord("r1", "acme", f"q{i}", "small", "single", "gpu", 0.9, 0.01, {"why": "cheapest"})
        for i in range(3)
    ]
    assert log.write_many(decisions) == 3
    assert log.write_many([]) == 0
    recent = log.recent(tenant="acme")
    assert len(recent) == 3 and recent[0].explanation == {"why": "cheapest"}
    assert log.recent(tenant="other") == []


def test_audit_rows_read_back_as_sqlalchemy_would_have_written_them(db: Database) -> None:
    from sqlalchemy import insert

    from planner.store.audit import _COLUMNS, DECISIONS, OUTCOME_COLUMNS

    assert set(_COLUMNS) == {c.name for c in DECISIONS.c} - {"id", *OUTCOME_COLUMNS}
    when = datetime(2026, 11, 23, 14, 30, 5, 123456, tzinfo=UTC)
    mine = DecisionRecord(
        "fast", "t", "q", "small", "single", "gpu", 0.5, 0.25, {"b": 1, "a": [1, 2]}, "c1", "p1", when
    )
    core = replace(mine, request_id="core")
    AuditLog(db).write_many([mine])  # driver-level executemany
    with db.begin() as conn:  # SQLAlchemy's own insert, for reference
        conn.execute(insert(DECISIONS), [dict(zip(_COLUMNS, core.to_params(), strict=True))])
    got = {r.request_id: r for r in AuditLog(db).recent(tenant="t")}
    assert replace(got["fast"], request_id="core") == got["core"]
    assert got["fast"].explanation == {"a": [1, 2], "b": 1} and got["fast"].expected_cost_usd == 0.25


def test_predictor_registry_lifecycle(db: Database) -> None:
    reg = PredictorRegistryStore(db)
    v1 = reg.put("success", b"artifact-1", {"brier": 0.1})
    assert reg.put("success", b"artifact-1").version == v1.version
    v2 = reg.put("success", b"artifact-2", {"brier": 0.08})
    assert v1.status is PredictorStatus.CANDIDATE
    with pytest.raises(FailedPreconditionError):
        reg.rollback("success")
    reg.promote(v1.version)
    reg.promote(v2.version)
    promoted = reg.promoted("success")
    assert promoted is not None and promoted.version == v2.version and promoted.artifact == b"artifact-2"
    assert reg.get(v1.version).status is PredictorStatus.RETIRED
    assert reg.rollback("success").version == v1.version
    assert reg.get(v2.version).status is PredictorStatus.RETIRED
    assert {v.version for v in reg.list("success")} == {v1.version, v2.version}
    with pytest.raises(NotFoundError):
        reg.get("nope")


def test_catalog_store_keeps_one_active_version(db: Database) -> None:
    store = CatalogStore(db)
    assert store.get_active() is None
    first = store.put(CATALOG_TOML)
    second = store.put(CATALOG_TOML.replace('name = "tiny"', 'name = "tiny2"'))
    active = store.get_active()
    assert active is not None and active.hash == second.hash
    assert active.catalog().name == "tiny2"
    store.put(CATALOG_TOML)
    active = store.get_active()
    assert active is not None and active.hash == first.hash
    assert len(store.list()) == 2


@given(
    st.datetimes(
        min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 31), timezones=st.none() | st.timezones()
    )
)
def test_sqlite_time_is_sqlalchemys_datetime_text_in_utc(value: datetime) -> None:
    from planner.store.driver import sqlite_time

    v = value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo is not None else value
    # SQLAlchemy's SQLite DATETIME storage format
    date = f"{v.year:04d}-{v.month:02d}-{v.day:02d}"
    expected = f"{date} {v.hour:02d}:{v.minute:02d}:{v.second:02d}.{v.microsecond:06d}"
    assert sqlite_time(value) == expected
