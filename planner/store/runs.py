"""`RunStore`: bulk insert, statistics, queries and training frames over the `runs` table.

Prompts are stored once per (task, query_id) in `queries` (GSM8K-style files repeat each question for every
model and sample); a run keeps its own `runs.prompt` only when it differs from its query's, and every reader
returns `coalesce(runs.prompt, queries.prompt)`. So a run stored without a prompt reads back its query's
prompt when another run of that query brought one.

Inserts (`planner.store.run_insert`) skip rows whose idempotency key (task, query_id, model, strategy,
strategy_params, target, sample_index) already exists (`ON CONFLICT DO NOTHING`, SQLite and PostgreSQL;
strategy_params compared as canonical JSON, the `params_key` column, which readers omit). Rows must already
be validated (untrusted input goes through `planner.ingest`, which validates and derives fields column-wise
into a `RunBatch`, then calls `insert_rows` inside its own transaction).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import Connection, and_, func, select

from planner.store.database import Database
from planner.store.run_insert import (
    CANONICAL_COLUMNS,
    JSON_COLUMNS,
    QUERIES,
    RUNS,
    STORED_COLUMNS,
    EncodedBatch,
    RunBatch,
    insert_batch,
    insert_encoded,
)

__all__ = [
    "CANONICAL_COLUMNS",
    "RUNS",
    "STORED_COLUMNS",
    "RunBatch",
    "RunFilter",
    "RunStats",
    "RunStore",
    "TierStats",
]


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


class RunStore:
    """Historical runs in a `Database`."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def insert_rows(self, conn: Connection, batch: RunBatch | EncodedBatch) -> int:
        """Insert a validated batch on an open connection (the caller owns the transaction); returns how many
        runs were new. See `planner.store.run_insert`."""
        if isinstance(batch, EncodedBatch):
            return insert_encoded(conn, batch)
        return insert_batch(conn, batch)

    def add_batch(self, records: Iterable[Mapping[str, Any]]) -> int:
        """Insert canonical records (already validated) in one transaction; returns how many were new."""
        batch = RunBatch.from_records(records)
        with self.db.begin() as conn:
            return self.insert_rows(conn, batch)

    def count(self, task: str | None = None) -> int:
        stmt = select(func.count()).select_from(RUNS)
        if task is not None:
            stmt = stmt.where(RUNS.c.task == task)
        with self.db.engine.connect() as conn:
            return int(conn.execute(stmt).scalar_one())

    def strategies(self) -> list[str]:
        """The distinct strategy names of the stored runs."""
        with self.db.engine.connect() as conn:
            return sorted(str(r[0]) for r in conn.execute(select(RUNS.c.strategy).distinct()))

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
            for key in JSON_COLUMNS:
                if rec[key] is not None:
                    rec[key] = json.loads(rec[key])
        return out

    def load_frame(self, task: str | None = None, models: Sequence[str] | None = None) -> pd.DataFrame:
        """All matching runs as a DataFrame in the canonical columns (JSON fields parsed to dicts)."""
        flt = RunFilter(task=task, models=tuple(models or ()))
        stmt = self._select(flt).order_by(RUNS.c.id)
        with self.db.engine.connect() as conn:
            frame = pd.read_sql(stmt, conn)
        for key in JSON_COLUMNS:
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
