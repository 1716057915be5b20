"""Predictor registry: versioned skops artifacts, metrics and a candidate -> promoted -> retired lifecycle.

The version id is the content hash of the artifact bytes, so storing the same artifact twice is a no-op.
At most one version per `kind` is promoted; `promote` retires the previous one and `rollback` re-promotes the
most recently retired one that had been promoted before.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, insert, select, update

from planner.errors import FailedPreconditionError, NotFoundError
from planner.store.database import Database
from planner.store.tables import PredictorRow

PREDICTORS = PredictorRow.__table__  # type: ignore[attr-defined]


class PredictorStatus(StrEnum):
    CANDIDATE = "candidate"
    PROMOTED = "promoted"
    RETIRED = "retired"


@dataclass(frozen=True)
class PredictorVersion:
    """Metadata of one stored predictor; `artifact` is empty unless fetched with `get`."""

    version: str
    kind: str
    status: PredictorStatus
    metrics: Mapping[str, Any] = field(default_factory=dict)
    created_at: datetime | None = None
    promoted_at: datetime | None = None
    artifact: bytes = b""


def content_version(artifact: bytes) -> str:
    """The version id of an artifact: the first 16 hex digits of its SHA-256."""
    return hashlib.sha256(artifact).hexdigest()[:16]


def _version(row: Any, with_artifact: bool) -> PredictorVersion:
    return PredictorVersion(
        version=row["version"],
        kind=row["kind"],
        status=PredictorStatus(row["status"]),
        metrics=json.loads(row["metrics"]),
        created_at=row["created_at"],
        promoted_at=row["promoted_at"],
        artifact=bytes(row["artifact"]) if with_artifact else b"",
    )


class PredictorRegistryStore:
    """CRUD and lifecycle over the `predictors` table."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def put(self, kind: str, artifact: bytes, metrics: Mapping[str, Any] | None = None) -> PredictorVersion:
        """Store an artifact as a candidate (or return the existing version with the same content)."""
        version = content_version(artifact)
        with self.db.begin() as conn:
            existing = self._row(conn, version, with_artifact=False)
            if existing is not None:
                return existing
            conn.execute(
                insert(PREDICTORS).values(
                    version=version,
                    kind=kind,
                    metrics=json.dumps(dict(metrics or {}), sort_keys=True, default=float),
                    artifact=artifact,
                    status=PredictorStatus.CANDIDATE.value,
                    created_at=datetime.now(UTC),
                    promoted_at=None,
                )
            )
        return self.get(version, with_artifact=False)

    def _row(self, conn: Connection, version: str, with_artifact: bool) -> PredictorVersion | None:
        row = conn.execute(select(PREDICTORS).where(PREDICTORS.c.version == version)).first()
        return None if row is None else _version(row._mapping, with_artifact)

    def get(self, version: str, with_artifact: bool = True) -> PredictorVersion:
        with self.db.engine.connect() as conn:
            found = self._row(conn, version, with_artifact)
        if found is None:
            raise NotFoundError(f"no predictor version {version!r}")
        return found

    def list(self, kind: str | None = None) -> list[PredictorVersion]:
        """All versions (without artifact bytes), newest first."""
        cols = [c for c in PREDICTORS.c if c.name != "artifact"]
        stmt = select(*cols).order_by(PREDICTORS.c.created_at.desc())
        if kind is not None:
            stmt = stmt.where(PREDICTORS.c.kind == kind)
        with self.db.engine.connect() as conn:
            return [_version(r._mapping, with_artifact=False) for r in conn.execute(stmt)]

    def promoted(self, kind: str) -> PredictorVersion | None:
        """The promoted version of `kind` with its artifact, or None."""
        stmt = select(PREDICTORS.c.version).where(
            PREDICTORS.c.kind == kind, PREDICTORS.c.status == PredictorStatus.PROMOTED.value
        )
        with self.db.engine.connect() as conn:
            version = conn.execute(stmt).scalar_one_or_none()
        return None if version is None else self.get(version)

    def promote(self, version: str) -> PredictorVersion:
        """Make `version` the promoted one of its kind; the previously promoted one is retired."""
        target = self.get(version, with_artifact=False)
        c = PREDICTORS.c
        with self.db.begin() as conn:
            conn.execute(
                update(PREDICTORS)
                .where(
                    c.kind == target.kind, c.status == PredictorStatus.PROMOTED.value, c.version != version
                )
                .values(status=PredictorStatus.RETIRED.value)
            )
            conn.execute(
                update(PREDICTORS)
                .where(c.version == version)
                .values(status=PredictorStatus.PROMOTED.value, promoted_at=datetime.now(UTC))
            )
        return self.get(version, with_artifact=False)

    def rollback(self, kind: str) -> PredictorVersion:
        """Retire the promoted version of `kind` and re-promote the previously promoted one."""
        c = PREDICTORS.c
        stmt = (
            select(c.version)
            .where(c.kind == kind, c.status == PredictorStatus.RETIRED.value, c.promoted_at.is_not(None))
            .order_by(c.promoted_at.desc())
            .limit(1)
        )
        with self.db.engine.connect() as conn:
            previous = conn.execute(stmt).scalar_one_or_none()
        if previous is None:
            raise FailedPreconditionError(f"no previously promoted {kind!r} predictor to roll back to")
        return self.promote(previous)
