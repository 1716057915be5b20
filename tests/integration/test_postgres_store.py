"""The store on the production path, PostgreSQL (needs PLANNER_TEST_POSTGRES_URL; CI sets it).

Real server, fresh schema per test: the GSM8K runs imported twice, an all-or-nothing import, the budget
ledger shared by several processes (as several server replicas would share it) never overspending, and the
runs-key migration (0003) up and down with data.
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
from planner.store.tables import RUN_KEY, RUN_KEY_INDEX_ORDER

PG_URL = os.environ.get("PLANNER_TEST_POSTGRES_URL", "")


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
    assert _key_and_indexes(db) == (list(RUN_KEY), {"ix_runs_query_id", "ix_runs_model", "ix_runs_tier"})

    upgrade(db.engine, "0003")
    assert _key_and_indexes(db) == (list(RUN_KEY_INDEX_ORDER), {"ix_runs_model", "ix_runs_tier"})
    assert RunStore(db).query(limit=10) == before
    assert RunStore(db).add_batch(records) == 0  # the key still rejects every duplicate

    command.downgrade(alembic_config(url=db.url), "0002")
    assert _key_and_indexes(db) == (list(RUN_KEY), {"ix_runs_query_id", "ix_runs_model", "ix_runs_tier"})
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
