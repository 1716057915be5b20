"""`RunStore`: bulk insert, statistics, queries and training frames over the `runs` table.

Prompts are stored once per (task, query_id) in `queries` (GSM8K-style files repeat each question for every
model and sample); a run keeps its own `runs.prompt` only when it differs from its query's, and every reader
returns `coalesce(runs.prompt, queries.prompt)`. So a run stored without a prompt reads back its query's
prompt when another run of that query brought one.

Inserts are SQLAlchemy Core `insert` executemany statements that skip rows whose idempotency key
(task, query_id, model, strategy, target, sample_index) already exists: `INSERT OR IGNORE` on SQLite,
`ON CONFLICT DO NOTHING` on PostgreSQL. Rows must already be validated (untrusted input goes through
`planner.ingest`, which validates and derives fields, then calls `insert_rows` inside its own transaction).
"""

from __future__ import annotations

import json
import operator
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import pandas as pd
from sqlalchemy import Connection, Insert, and_, func, insert, select, tuple_
from sqlalchemy.dialects import postgresql, sqlite

from planner.store.database import Database
from planner.store.tables import QueryRow, RunRow

RUNS = RunRow.__table__  # type: ignore[attr-defined]
QUERIES = QueryRow.__table__  # type: ignore[attr-defined]

CANONICAL_COLUMNS: tuple[str, ...] = (
    "query_id", "task", "prompt", "prompt_chars", "output_chars", "tags", "features", "model", "tier",
    "strategy", "strategy_params", "target", "sample_index", "correct", "score", "input_tokens",
    "output_tokens", "cost_usd", "latency_s", "energy_j", "timestamp", "tenant",
)  # fmt: skip
"""The run columns of the shared import schema, in the order `load_frame` returns them."""

STORED_COLUMNS: tuple[str, ...] = (*CANONICAL_COLUMNS, "source")
_DEFAULTS: dict[str, Any] = {"task": "default", "strategy": "single", "target": "", "sample_index": 0,
                             "tenant": "default"}  # fmt: skip
_JSON_COLUMNS = ("features", "strategy_params")


@dataclass(frozen=True)
class TierStats:
    """Per-tier summary: rows, mean score (accuracy for 0/1 runs) and mean output tokens."""

    tier: str
    rows: int
    accuracy: float
    mean_output_tokens: float | None


@dataclass(frozen=True)
class RunStats:
    """Counts of distinct things in the store (optionally for one task) and per-tier summaries."""

    rows: int
    queries: int
    models: int
    tiers: int
    tasks: int
    per_tier: tuple[TierStats, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RunFilter:
    """Equality filters (None = any) and a half-open timestamp window [since, until)."""

    task: str | None = None
    query_id: str | None = None
    model: str | None = None
    tier: str | None = None
    strategy: str | None = None
    tenant: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    models: tuple[str, ...] = field(default=())


def insert_statement(dialect: str, table: Any = RUNS) -> Insert:
    """An INSERT on `table` (`runs` or `queries`) that silently skips rows whose key exists."""
    if dialect == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    if dialect == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing()
    return insert(table)


def with_defaults(record: Mapping[str, Any]) -> tuple[Any, ...]:
    """A stored row tuple (`STORED_COLUMNS` order) from a canonical record.

    Defaults filled, tier defaulting to the model name, score to correct, JSON fields serialised.
    """
    row = {c: record.get(c) for c in STORED_COLUMNS}
    for key, value in _DEFAULTS.items():
        if row[key] is None:
            row[key] = value
    if row["tier"] is None:
        row["tier"] = row["model"]
    if row["score"] is None and row["correct"] is not None:
        row["score"] = float(row["correct"])
    for key in _JSON_COLUMNS:
        if isinstance(row[key], Mapping):
            row[key] = json.dumps(row[key], sort_keys=True)
    return tuple(row[c] for c in STORED_COLUMNS)


_TS = STORED_COLUMNS.index("timestamp")
_TASK, _QID, _PROMPT = (STORED_COLUMNS.index(c) for c in ("task", "query_id", "prompt"))
_KEYS_PER_SELECT = 500  # (task, query_id) pairs per lookup: well under every driver's parameter limit


def _sqlite_time(value: datetime) -> str:
    """SQLAlchemy's SQLite DATETIME text format, in UTC (what the DateTime type reads back)."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.strftime("%Y-%m-%d %H:%M:%S.%f")


def _driver_params(dialect: str, rows: Sequence[tuple[Any, ...]], compiled: Any) -> list[Any]:
    if dialect == "sqlite" and any(r[_TS] is not None for r in rows):
        rows = [r if r[_TS] is None else (*r[:_TS], _sqlite_time(r[_TS]), *r[_TS + 1 :]) for r in rows]
    if compiled.positional:
        order = [STORED_COLUMNS.index(k) for k in compiled.positiontup]
        if order == list(range(len(STORED_COLUMNS))):
            return list(rows)
        pick = operator.itemgetter(*order)  # C-level reordering (a Python genexpr per row is ~10x slower)
        return [pick(r) for r in rows]
    return [dict(zip(STORED_COLUMNS, r, strict=True)) for r in rows]


def _stored_prompts(conn: Connection, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], str]:
    out: dict[tuple[str, str], str] = {}
    q = QUERIES.c
    for start in range(0, len(keys), _KEYS_PER_SELECT):
        part = keys[start : start + _KEYS_PER_SELECT]
        stmt = select(q.task, q.query_id, q.prompt).where(tuple_(q.task, q.query_id).in_(part))
        out.update({(t, i): p for t, i, p in conn.execute(stmt)})
    return out


def split_prompts(conn: Connection, rows: Sequence[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Store each query's prompt once in `queries` (first one seen wins) and blank it on runs that repeat it.

    A run whose prompt differs from its query's stored one keeps it. Returns the rows to insert into `runs`.
    """
    first: dict[tuple[str, str], str] = {}
    for r in rows:
        if r[_PROMPT] is not None:
            first.setdefault((r[_TASK], r[_QID]), r[_PROMPT])
    if not first:
        return list(rows)
    stmt = insert_statement(conn.dialect.name, QUERIES)
    conn.execute(stmt, [{"task": t, "query_id": i, "prompt": p} for (t, i), p in first.items()])
    stored = _stored_prompts(conn, list(first))
    return [
        (*r[:_PROMPT], None, *r[_PROMPT + 1 :])
        if r[_PROMPT] is not None and stored.get((r[_TASK], r[_QID])) == r[_PROMPT]
        else r
        for r in rows
    ]


class RunStore:
    """Historical runs in a `Database`."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def insert_rows(self, conn: Connection, rows: Sequence[tuple[Any, ...]]) -> int:
        """Insert row tuples (`STORED_COLUMNS` order) on an open connection; returns how many were new.

        The Core insert is compiled once and handed to the driver's executemany with plain parameter tuples
        (SQLAlchemy's per-row parameter processing costs more than SQLite's insert itself). The caller owns
        the transaction.
        """
        if not rows:
            return 0
        rows = split_prompts(conn, rows)
        dialect = conn.dialect.name
        compiled = insert_statement(dialect).compile(dialect=conn.dialect, column_keys=list(STORED_COLUMNS))
        result = conn.exec_driver_sql(str(compiled), _driver_params(dialect, rows, compiled))
        return max(int(result.rowcount), 0)

    def add_batch(self, records: Iterable[Mapping[str, Any]]) -> int:
        """Insert canonical records (already validated) in one transaction; returns how many were new."""
        rows = [with_defaults(r) for r in records]
        with self.db.begin() as conn:
            return self.insert_rows(conn, rows)

    def count(self, task: str | None = None) -> int:
        stmt = select(func.count()).select_from(RUNS)
        if task is not None:
            stmt = stmt.where(RUNS.c.task == task)
        with self.db.engine.connect() as conn:
            return int(conn.execute(stmt).scalar_one())

    def stats(self, task: str | None = None) -> RunStats:
        """Distinct queries / models / tiers / tasks and per-tier accuracy and mean output tokens."""
        c = RUNS.c
        where = [c.task == task] if task is not None else []
        distinct_queries = select(c.task, c.query_id).where(*where).group_by(c.task, c.query_id).subquery()
        totals = select(
            func.count(),
            func.count(func.distinct(c.model)),
            func.count(func.distinct(c.tier)),
            func.count(func.distinct(c.task)),
        ).where(*where)
        tiers = (
            select(c.tier, func.count(), func.avg(c.score), func.avg(c.output_tokens))
            .where(*where)
            .group_by(c.tier)
            .order_by(c.tier)
        )
        with self.db.engine.connect() as conn:
            rows, models, n_tiers, tasks = conn.execute(totals).one()
            queries = conn.execute(select(func.count()).select_from(distinct_queries)).scalar_one()
            per_tier = tuple(
                TierStats(str(t), int(n), float(acc or 0.0), None if tok is None else float(tok))
                for t, n, acc, tok in conn.execute(tiers)
            )
        return RunStats(int(rows), int(queries), int(models), int(n_tiers), int(tasks), per_tier)

    def _select(self, flt: RunFilter | None) -> Any:
        c, q = RUNS.c, QUERIES.c
        prompt = func.coalesce(c.prompt, q.prompt, type_=c.prompt.type).label("prompt")
        columns = (prompt if name == "prompt" else c[name] for name in CANONICAL_COLUMNS)
        joined = RUNS.outerjoin(QUERIES, and_(q.task == c.task, q.query_id == c.query_id))
        return self._where(select(*columns).select_from(joined), flt)

    @staticmethod
    def _where(stmt: Any, flt: RunFilter | None) -> Any:
        c = RUNS.c
        if flt is None:
            return stmt
        for name in ("task", "query_id", "model", "tier", "strategy", "tenant"):
            value = getattr(flt, name)
            if value is not None:
                stmt = stmt.where(c[name] == value)
        if flt.models:
            stmt = stmt.where(c.model.in_(flt.models))
        if flt.since is not None:
            stmt = stmt.where(c.timestamp >= flt.since)
        if flt.until is not None:
            stmt = stmt.where(c.timestamp < flt.until)
        return stmt

    def query(self, flt: RunFilter | None = None, limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
        """Canonical records matching `flt`, in insertion order, JSON fields parsed."""
        stmt = self._select(flt).order_by(RUNS.c.id).limit(limit).offset(offset)
        with self.db.engine.connect() as conn:
            out = [dict(r._mapping) for r in conn.execute(stmt)]
        for rec in out:
            for key in _JSON_COLUMNS:
                if rec[key] is not None:
                    rec[key] = json.loads(rec[key])
        return out

    def load_frame(self, task: str | None = None, models: Sequence[str] | None = None) -> pd.DataFrame:
        """All matching runs as a DataFrame in the canonical columns (JSON fields parsed to dicts)."""
        flt = RunFilter(task=task, models=tuple(models or ()))
        stmt = self._select(flt).order_by(RUNS.c.id)
        with self.db.engine.connect() as conn:
            frame = pd.read_sql(stmt, conn)
        for key in _JSON_COLUMNS:
            frame[key] = [json.loads(v) if isinstance(v, str) else None for v in frame[key]]
        for key in ("prompt_chars", "output_chars", "correct", "input_tokens", "output_tokens"):
            frame[key] = frame[key].astype("Int64")
        frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
        for key in ("score", "cost_usd", "latency_s", "energy_j"):
            frame[key] = pd.to_numeric(frame[key], errors="coerce").astype(float)
        return frame

    def has_source(self, source: str) -> bool:
        """Whether any run was written with this `source` tag (e.g. `demo`)."""
        stmt = select(RUNS.c.id).where(RUNS.c.source == source).limit(1)
        with self.db.engine.connect() as conn:
            return conn.execute(stmt).first() is not None

    def daily_counts(self, task: str | None = None) -> pd.DataFrame:
        """Runs and distinct queries per UTC day (for traffic forecasting); rows without timestamp skipped."""
        flt = RunFilter(task=task)
        stmt = self._where(select(RUNS.c.timestamp, RUNS.c.query_id), flt)
        stmt = stmt.where(RUNS.c.timestamp.is_not(None))
        with self.db.engine.connect() as conn:
            frame = pd.read_sql(stmt, conn)
        frame["day"] = pd.to_datetime(frame["timestamp"], utc=True).dt.floor("D")
        grouped = frame.groupby("day").agg(runs=("query_id", "size"), queries=("query_id", "nunique"))
        return grouped.reset_index()
