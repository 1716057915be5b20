"""Store fixtures: `db` runs each store/import/ledger test on SQLite and on PostgreSQL.

The PostgreSQL case needs `PLANNER_TEST_POSTGRES_URL` (scripts/postgres.sh start prints one) and is skipped
without it; each test gets a fresh schema (via `search_path`) that is dropped afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from planner.store import Database, normalise_url

PG_URL = os.environ.get("PLANNER_TEST_POSTGRES_URL", "")


def postgres_schema_url(url: str, schema: str) -> str:
    parsed = make_url(normalise_url(url))
    return parsed.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
        hide_password=False
    )


@pytest.fixture
def pg_db() -> Iterator[Database]:
    """A Database on a fresh PostgreSQL schema (skipped without PLANNER_TEST_POSTGRES_URL)."""
    if not PG_URL:
        pytest.skip("PLANNER_TEST_POSTGRES_URL is not set")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(normalise_url(PG_URL))
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    db = Database(postgres_schema_url(PG_URL, schema))
    try:
        yield db
    finally:
        db.dispose()
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Iterator[Database]:
    db = Database(f"sqlite:///{tmp_path / 'store.db'}")
    yield db
    db.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db(request: pytest.FixtureRequest) -> Database:
    """The same test on a SQLite file and on PostgreSQL."""
    return request.getfixturevalue("sqlite_db" if request.param == "sqlite" else "pg_db")
