"""Audit log of decisions: batched writes (off the routing hot path) and simple reads."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from planner.store.database import Database
from planner.store.driver import execute_many, insert_sql, sqlite_time
from planner.store.tables import DecisionRow

DECISIONS = DecisionRow.__table__  # type: ignore[attr-defined]
_COLUMNS = (
    "request_id", "tenant", "query_id", "tier", "strategy", "target", "expected_quality",
    "expected_cost_usd", "explanation", "catalog_version", "predictor_version", "created_at",
)  # fmt: skip
"""The `decisions` columns a decision fills when written (all but the id and the later outcome), in
`to_params` order."""
OUTCOME_COLUMNS = ("actual_cost_usd", "actual_energy_j", "correct", "reported_at")
_ENCODE = json.JSONEncoder(default=str).encode
"""Explanations as JSON text (one encoder for all rows: `json.dumps` with options builds one per call). Keys
keep the explanation's field order (sorting them cost ~40% of the encoding on the audit writer's thread)."""


@dataclass(frozen=True)
class DecisionRecord:
    """One decision as audited: who asked, what was chosen, what it was expected to deliver and why."""

    request_id: str
    tenant: str
    query_id: str
    tier: str
    strategy: str
    target: str
    expected_quality: float
    expected_cost_usd: float
    explanation: Mapping[str, Any] = field(default_factory=dict)
    catalog_version: str | None = None
    predictor_version: str | None = None
    created_at: datetime | None = None
    actual_cost_usd: float | None = None
    """The reported outcome (`planner.store.outcomes`); None until reported. Not written by `write_many`."""
    actual_energy_j: float | None = None
    correct: bool | None = None
    reported_at: datetime | None = None

    def to_params(self, sqlite: bool = False) -> tuple[Any, ...]:
        """Column values in `_COLUMNS` order as the driver stores them (`sqlite`: timestamps as text)."""
        e = self.explanation
        when = self.created_at or datetime.now(UTC)
        return (
            self.request_id,
            self.tenant,
            self.query_id,
            self.tier,
            self.strategy,
            self.target,
            float(self.expected_quality),
            float(self.expected_cost_usd),
            _ENCODE(e if isinstance(e, dict) else dict(e)),
            self.catalog_version,
            self.predictor_version,
            sqlite_time(when) if sqlite else when,
        )


class AuditLog:
    """Append-only decisions table."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def write_many(self, decisions: Iterable[DecisionRecord]) -> int:
        """Insert decisions in one transaction; returns how many were written."""
        sqlite = self.db.dialect == "sqlite"
        params = [d.to_params(sqlite) for d in decisions]
        if not params:
            return 0
        with self.db.begin() as conn:
            execute_many(conn, insert_sql(self.db.dialect, DECISIONS.name, _COLUMNS), params)
        return len(params)

    def recent(
        self, tenant: str | None = None, request_id: str | None = None, limit: int = 100
    ) -> list[DecisionRecord]:
        """Newest first."""
        c = DECISIONS.c
        stmt = select(DECISIONS).order_by(c.created_at.desc(), c.id.desc()).limit(limit)
        if tenant is not None:
            stmt = stmt.where(c.tenant == tenant)
        if request_id is not None:
            stmt = stmt.where(c.request_id == request_id)
        with self.db.engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(stmt)]
        out = []
        for row in rows:
            row.pop("id")
            row["explanation"] = json.loads(row["explanation"])
            out.append(DecisionRecord(**row))
        return out
