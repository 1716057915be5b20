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
_ENCODE = json.JSONEncoder(sort_keys=True, default=str).encode
"""Explanations as JSON text (one encoder for all rows: `json.dumps` with options builds one per call)."""


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
        return {
            "request_id": self.request_id,
            "tenant": self.tenant,
            "query_id": self.query_id,
            "tier": self.tier,
            "strategy": self.strategy,
            "target": self.target,
            "expected_quality": self.expected_quality,
            "expected_cost_usd": self.expected_cost_usd,
            "explanation": _ENCODE(e if isinstance(e := self.explanation, dict) else dict(e)),
            "catalog_version": self.catalog_version,
            "predictor_version": self.predictor_version,
            "created_at": self.created_at or datetime.now(UTC),
        }


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
