"""Driver-level inserts for the hot write paths (run import, audit log): plain parameter tuples straight to
the DBAPI's `executemany`, bypassing SQLAlchemy's per-row parameter processing (which costs more than
SQLite's own insert). Values must already be what the driver stores; the one conversion SQLAlchemy would do
for these tables is `DateTime` on SQLite, which `sqlite_time` reproduces (UTC text in SQLAlchemy's format),
so readers going through SQLAlchemy see the same values either way.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection


def param_mark(dialect: str) -> str:
    """The DBAPI parameter mark: `?` for sqlite3, `%s` for psycopg."""
    return "?" if dialect == "sqlite" else "%s"


def sqlite_time(value: datetime) -> str:
    """SQLAlchemy's SQLite DATETIME text format, in UTC (what the DateTime type reads back)."""
    if value.tzinfo is not None:
        value = (value if value.tzinfo is UTC else value.astimezone(UTC)).replace(tzinfo=None)
    return value.isoformat(sep=" ", timespec="microseconds")  # = strftime("%Y-%m-%d %H:%M:%S.%f"), 3x faster


def insert_sql(dialect: str, table: str, columns: Sequence[str], suffix: str = "") -> str:
    """`INSERT INTO table (columns) VALUES (marks)`, then `suffix` (e.g. `ON CONFLICT DO NOTHING`)."""
    marks = ", ".join([param_mark(dialect)] * len(columns))
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks}){' ' + suffix if suffix else ''}"


def execute_many(conn: Connection, sql: str, params: list[tuple[Any, ...]]) -> int:
    """Run `sql` once per parameter tuple in the caller's transaction; returns the driver's row count."""
    if not params:
        return 0
    result = conn.exec_driver_sql(sql, params)  # type: ignore[arg-type]
    return max(int(result.rowcount), 0)
