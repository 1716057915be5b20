"""Audit log of decisions: batched writes (off the routing hot path) and simple reads."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, select

from planner.store.database import Database
from planner.store.tables import DecisionRow

DECISIONS = DecisionRow.__table__  # type: ignore[attr-defined]


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

    def to_row(self) -> dict[str, Any]:
        row = {c.name: getattr(self, c.name) for c in DECISIONS.c if c.name != "id"}
        row["explanation"] = json.dumps(dict(self.explanation), sort_keys=True, default=str)
        row["created_at"] = self.created_at or datetime.now(UTC)
        return row


class AuditLog:
    """Append-only decisions table."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def write_many(self, decisions: Iterable[DecisionRecord]) -> int:
        """Insert decisions in one transaction; returns how many were written."""
        rows = [d.to_row() for d in decisions]
        if not rows:
            return 0
        with self.db.begin() as conn:
            conn.execute(insert(DECISIONS), rows)
        return len(rows)

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
