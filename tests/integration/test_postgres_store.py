"""The store on the production path, PostgreSQL (needs PLANNER_TEST_POSTGRES_URL; CI sets it).

Real server, fresh schema per test: the GSM8K runs imported twice, an all-or-nothing import, the budget
ledger shared by several processes (as several server replicas would share it) never overspending, the
runs-key migrations (0003: key order; 0005: strategy_params in the key) up and down with data, and runs that
differ only in their strategy_params all kept (executemany and COPY paths).
The same checks also run on a SQLite file, so the two back ends are held to one behaviour.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from planner.errors import ImportRowError
from planner.ingest import import_file, preset
from planner.store import Database, Ledger, RunStore, normalise_url
from planner.store.database import alembic_config, upgrade
from planner.store.tables import RUN_KEY_INDEX_ORDER

PG_URL = os.environ.get("PLANNER_TEST_POSTGRES_URL", "")
KEY_0002 = ["task", "query_id", "model", "strategy", "target", "sample_index"]
KEY_0003 = ["query_id", "task", "model", "strategy", "target", "sample_index"]
"""The runs' unique key before 0003 and from 0003 to 0004; 0005 adds params_key (`RUN_KEY_INDEX_ORDER`)."""


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL of an empty store: a SQLite file, or a fresh schema on the PostgreSQL server."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    if not PG_URL:
        pytest.skip("PLANNER_TEST_POSTGRES_URL is not set")
    schema = f"it_{uuid.uuid4().hex[:12]}"
    admin = create_engine(normalise_url(PG_URL))
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    url = make_url(normalise_url(PG_URL)).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()


@pytest.mark.shared_data
def test_gsm8k_twice_leaves_exactly_54760_rows(store_url: str, gsm8k_runs_path: Path) -> None:
    db = Database(store_url)
    import_file(gsm8k_runs_path, db, preset("zeroeval"))
    again = import_file(gsm8k_runs_path, db, preset("zeroeval"))
    assert again.inserted == 0 and again.skipped_duplicates == 54_760
    assert RunStore(db).count() == 54_760
    frame = RunStore(db).load_frame(models=["gpt-4o-2024-08-06"])
    assert len(frame) == 1_319 and frame["correct"].mean() == pytest.approx(0.962, abs=0.001)
    db.dispose()


def test_file_with_a_bad_row_leaves_the_store_unchanged(store_url: str, tmp_path: Path) -> None:
    db = Database(store_url)
    good = pd.DataFrame({"query_id": [f"q{i}" for i in range(100)], "model": "m", "correct": 1})
    good.to_csv(tmp_path / "good.csv", index=False)
    import_file(tmp_path / "good.csv", db)
    bad = pd.DataFrame({"query_id": [f"n{i}" for i in range(100)], "model": "m", "correct": "1"})
    bad.loc[61, "correct"] = "maybe"
    bad.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(ImportRowError, match="row 62"):
        import_file(tmp_path / "bad.csv", db, chunk_size=16)
    assert RunStore(db).count() == 100
    db.dispose()


def _reserve_many(url: str, n: int, out: mp.Queue) -> None:  # type: ignore[type-arg]
    db = Database(url)
    ledger = Ledger(db)
    out.put(sum(ledger.reserve("acme", "2026-11-23", 0.5, 1.0, cap_usd=20.0) for _ in range(n)))
    db.dispose()


def test_ledger_shared_by_processes_never_overspends(store_url: str) -> None:
    Database(store_url).dispose()  # migrate once before the workers start
    ctx = mp.get_context("spawn")
    out: mp.Queue = ctx.Queue()  # type: ignore[type-arg]
    workers = [ctx.Process(target=_reserve_many, args=(store_url, 20, out)) for _ in range(4)]
    for w in workers:
        w.start()
    granted = sum(out.get(timeout=120) for _ in workers)
    for w in workers:
        w.join(timeout=60)
    assert granted == 40  # 80 attempts of $0.50 against a $20 cap
    db = Database(store_url)
    spend = Ledger(db).spent("acme", "2026-11-23")
    assert spend.spent_usd == pytest.approx(20.0) and spend.energy_j == pytest.approx(40.0)
    db.dispose()


def _key_and_indexes(db: Database) -> tuple[list[str], set[str]]:
    inspector = sa.inspect(db.engine)
    (key,) = [
        u["column_names"] for u in inspector.get_unique_constraints("runs") if u["name"] == "uq_runs_key"
    ]
    return key, {str(ix["name"]) for ix in inspector.get_indexes("runs")} - {
        "uq_runs_key"
    }  # PostgreSQL lists it


def test_migration_0003_rekeys_runs_and_back_keeping_every_row(store_url: str) -> None:
    """0002 -> 0003 -> 0002 -> head with data: same rows and ids, the key still unique, indexes as stated."""
    db = Database(store_url, migrate=False)
    upgrade(db.engine, "0002")
    records = [
        _run("q1", "m1"),
        _run("q1", "m2", prompt="Own."),
        _run("q2", "m1"),
        _run("q1", "m1", sample=1),
    ]
    assert RunStore(db).add_batch(records) == 4
    before = RunStore(db).query(limit=10)
    assert _key_and_indexes(db) == (KEY_0002, {"ix_runs_query_id", "ix_runs_model", "ix_runs_tier"})

    upgrade(db.engine, "0003")
    assert _key_and_indexes(db) == (KEY_0003, {"ix_runs_model", "ix_runs_tier"})
    assert RunStore(db).query(limit=10) == before
    assert RunStore(db).add_batch(records) == 0  # the key still rejects every duplicate

    command.downgrade(alembic_config(url=db.url), "0002")
    assert _key_and_indexes(db) == (KEY_0002, {"ix_runs_query_id", "ix_runs_model", "ix_runs_tier"})
    assert RunStore(db).query(limit=10) == before

    upgrade(db.engine)
    assert RunStore(db).add_batch([*records, _run("q3", "m1")]) == 1
    assert RunStore(db).query(limit=10)[:4] == before
    db.dispose()


def _run(query_id: str, model: str, sample: int = 0, prompt: str = "Shared.") -> dict[str, object]:
    return {"query_id": query_id, "model": model, "sample_index": sample, "correct": 1, "prompt": prompt}


def test_a_big_batch_keeps_its_order_and_skips_every_existing_key(store_url: str) -> None:
    """Batches of 1,000+ rows take PostgreSQL's COPY path: the same answers as the row-by-row insert."""
    db = Database(store_url)
    store = RunStore(db)
    assert store.add_batch([_run("q5", "m"), _run("q7", "m", prompt="Other.")]) == 2
    batch = [_run(f"q{i}", "m") for i in range(1_500)] + [_run("q3", "m"), _run("q3", "m", sample=1)]
    assert store.add_batch(batch) == 1_499  # q5 and q7 exist; the extra q3 sample 0 is a repeat
    rows = store.query(limit=2_000)
    assert [r["query_id"] for r in rows] == ["q5", "q7"] + [
        f"q{i}" for i in range(1_500) if i not in (5, 7)
    ] + ["q3"]
    assert {r["prompt"] for r in rows if r["query_id"] != "q7"} == {"Shared."}
    assert store.add_batch(batch) == 0
    db.dispose()


_OLD_RUN = (
    "INSERT INTO runs (task, query_id, model, tier, strategy, strategy_params, target, sample_index, score,"
    " tenant) VALUES ('t', :q, 'm', 'm', 'majority_vote', :p, '', :s, 1.0, 'default')"
)


def _params_keys(db: Database) -> list[tuple[int, str, str]]:
    with db.engine.connect() as conn:
        return [
            tuple(r) for r in conn.execute(sa.text("SELECT id, query_id, params_key FROM runs ORDER BY id"))
        ]


def test_migration_0005_keys_runs_by_strategy_params_and_back(store_url: str) -> None:
    """0004 -> 0005 -> 0004 -> head with data: params_key backfilled in canonical JSON ('' for none), same
    rows and ids, re-imports in other spellings rejected, a new parameter set accepted; downgrade keeps the
    oldest run of each group the old key cannot tell apart."""
    db = Database(store_url, migrate=False)
    upgrade(db.engine, "0004")
    old = [("q1", '{"n": 5}', 0), ("q1", None, 1), ("q2", "{}", 0), ("q3", '{"b": [1.0, 2], "a": 2.0}', 0)]
    with db.begin() as conn:
        conn.execute(sa.text(_OLD_RUN), [{"q": q, "p": p, "s": s} for q, p, s in old])
    before = RunStore(db).query(limit=10)

    upgrade(db.engine, "0005")
    assert _key_and_indexes(db) == (list(RUN_KEY_INDEX_ORDER), {"ix_runs_model", "ix_runs_tier"})
    keys = [(1, "q1", '{"n":5}'), (2, "q1", ""), (3, "q2", ""), (4, "q3", '{"a":2,"b":[1,2]}')]
    assert _params_keys(db) == keys
    assert RunStore(db).query(limit=10) == before
    store = RunStore(db)
    again = [
        _vote("q1", {"n": 5.0}),
        _vote("q1", None, sample=1),
        _vote("q2", None),
        _vote("q3", '{ "a" : 2, "b" : [1, 2.0] }'),
    ]
    assert store.add_batch(again) == 0
    assert store.add_batch([_vote("q1", {"n": 16}), _vote("q2", '{"n": 16}')]) == 2

    command.downgrade(alembic_config(url=db.url), "0004")
    assert _key_and_indexes(db) == (KEY_0003, {"ix_runs_model", "ix_runs_tier"})
    assert RunStore(db).query(limit=10) == before  # q1 n=16 went (q1 n=5 is older); q2 had none: q2 n=16 too

    upgrade(db.engine)
    assert _params_keys(db) == keys
    assert store.add_batch([_vote("q1", {"n": 16}), *again]) == 1
    db.dispose()


def _vote(query_id: str, params: object, sample: int = 0) -> dict[str, object]:
    return {"task": "t", "query_id": query_id, "model": "m", "strategy": "majority_vote",
            "strategy_params": params, "sample_index": sample, "score": 1.0}  # fmt: skip


@pytest.mark.parametrize("n_queries", [3, 600])  # 3: executemany; 600 (1,800 runs): PostgreSQL's COPY path
def test_runs_differing_only_in_strategy_params_are_all_kept(
    store_url: str, tmp_path: Path, n_queries: int
) -> None:
    """A test-time-compute sweep (majority_vote n=5 and n=16, plus a plain run) keeps every run; re-importing
    it with the parameters spelled otherwise (spacing, key order, 5.0) adds nothing."""
    db = Database(store_url)
    queries = [f"q{i}" for i in range(n_queries)]
    frame = pd.DataFrame(
        {
            "query_id": queries * 3,
            "model": "m",
            "strategy": ["majority_vote"] * (2 * n_queries) + ["single"] * n_queries,
            "strategy_params": ['{"n": 5, "t": 0.7}'] * n_queries
            + ['{"n": 16}'] * n_queries
            + [""] * n_queries,
            "correct": 1,
        }
    )
    frame.to_csv(tmp_path / "sweep.csv", index=False)
    assert import_file(tmp_path / "sweep.csv", db).inserted == 3 * n_queries
    frame["strategy_params"] = (
        ['{"t":0.7,"n":5.0}'] * n_queries + ['{ "n" : 16 }'] * n_queries + ["{}"] * n_queries
    )
    frame.to_json(tmp_path / "sweep.jsonl", orient="records", lines=True)
    again = import_file(tmp_path / "sweep.jsonl", db)
    assert (again.inserted, again.skipped_duplicates) == (0, 3 * n_queries)
    runs = RunStore(db).load_frame()
    assert len(runs) == 3 * n_queries and "params_key" not in runs.columns
    ns = sorted((p or {}).get("n", 1) for p in runs.strategy_params[runs.query_id == "q1"])
    assert ns == [1, 5, 16]
    db.dispose()
