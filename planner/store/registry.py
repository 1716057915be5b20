"""Predictor registry: versioned skops artifacts with metrics and metadata; promote and roll back.

A version id is given by the caller (the lifecycle uses a content hash of the training data and config) or,
by default, the content hash of the artifact bytes; storing an existing version again is a no-op.

At most one version is promoted at a time (the active predictor of the service). `promote` retires the
previously promoted version; `rollback` retires the promoted one, clears its `promoted_at` (so it is never a
roll-back target again) and re-promotes the most recently promoted retired version -- repeated roll-backs walk
back through the promotion history. The `metrics` column holds a JSON document
``{"metrics": {...}, "meta": {...}}`` (metrics: held-out figures; meta: task, tiers, config, ...).
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
    meta: Mapping[str, Any] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        return self.status is PredictorStatus.PROMOTED


def content_version(artifact: bytes) -> str:
    """The version id of an artifact: the first 16 hex digits of its SHA-256."""
    return hashlib.sha256(artifact).hexdigest()[:16]


def _document(metrics: Mapping[str, Any] | None, meta: Mapping[str, Any] | None) -> str:
    return json.dumps(
        {"metrics": dict(metrics or {}), "meta": dict(meta or {})}, sort_keys=True, default=float
    )


def _parse_document(text: str) -> tuple[dict[str, Any], dict[str, Any]]:
    doc = json.loads(text or "{}")
    if isinstance(doc, dict) and set(doc) == {"metrics", "meta"}:
        return dict(doc["metrics"]), dict(doc["meta"])
    return (dict(doc) if isinstance(doc, dict) else {}), {}  # a bare metrics object (older rows)


def _version(row: Any, with_artifact: bool) -> PredictorVersion:
    metrics, meta = _parse_document(row["metrics"])
    return PredictorVersion(
        version=row["version"],
        kind=row["kind"],
        status=PredictorStatus(row["status"]),
        metrics=metrics,
        created_at=_utc(row["created_at"]),
        promoted_at=_utc(row["promoted_at"]),
        artifact=bytes(row["artifact"]) if with_artifact else b"",
        meta=meta,
    )


def _utc(value: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes; everything stored is UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


class PredictorRegistryStore:
    """CRUD and lifecycle over the `predictors` table."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def put(
        self,
        kind: str,
        artifact: bytes,
        metrics: Mapping[str, Any] | None = None,
        *,
        version: str | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> PredictorVersion:
        """Store an artifact as a candidate (or return the existing row with the same version id)."""
        version = version or content_version(artifact)
        with self.db.begin() as conn:
            existing = self._row(conn, version, with_artifact=False)
            if existing is not None:
                return existing
            conn.execute(
                insert(PREDICTORS).values(
                    version=version,
                    kind=kind,
                    metrics=_document(metrics, meta),
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

    def find(self, version: str) -> PredictorVersion | None:
        """The version's metadata (no artifact), or None when it is not stored."""
        with self.db.engine.connect() as conn:
            return self._row(conn, version, with_artifact=False)

    def list(self, kind: str | None = None) -> list[PredictorVersion]:
        """All versions (without artifact bytes), newest first."""
        cols = [c for c in PREDICTORS.c if c.name != "artifact"]
        stmt = select(*cols).order_by(PREDICTORS.c.created_at.desc(), PREDICTORS.c.version)
        if kind is not None:
            stmt = stmt.where(PREDICTORS.c.kind == kind)
        with self.db.engine.connect() as conn:
            return [_version(r._mapping, with_artifact=False) for r in conn.execute(stmt)]

    def promoted(self, kind: str | None = None) -> PredictorVersion | None:
        """The promoted version (of `kind`, when given) with its artifact, or None."""
        stmt = select(PREDICTORS.c.version).where(PREDICTORS.c.status == PredictorStatus.PROMOTED.value)
        if kind is not None:
            stmt = stmt.where(PREDICTORS.c.kind == kind)
        with self.db.engine.connect() as conn:
            version = conn.execute(stmt.limit(1)).scalar_one_or_none()
        return None if version is None else self.get(version)

    def promoted_version(self) -> str | None:
        """Only the id of the promoted version (a cheap query, for polling)."""
        stmt = select(PREDICTORS.c.version).where(PREDICTORS.c.status == PredictorStatus.PROMOTED.value)
        with self.db.engine.connect() as conn:
            found = conn.execute(stmt.limit(1)).scalar_one_or_none()
        return None if found is None else str(found)

    def promote(self, version: str) -> PredictorVersion:
        """Make `version` the promoted one; the previously promoted one (of any kind) is retired."""
        self.get(version, with_artifact=False)  # NotFoundError for an unknown version
        with self.db.begin() as conn:
            _promote(conn, version)
        return self.get(version, with_artifact=False)

    def rollback_target(self, kind: str | None = None) -> str | None:
        """The version `rollback(kind)` would re-promote, or None."""
        c = PREDICTORS.c
        stmt = (
            select(c.version)
            .where(c.status == PredictorStatus.RETIRED.value, c.promoted_at.is_not(None))
            .order_by(c.promoted_at.desc())
            .limit(1)
        )
        if kind is not None:
            stmt = stmt.where(c.kind == kind)
        with self.db.engine.connect() as conn:
            found = conn.execute(stmt).scalar_one_or_none()
        return None if found is None else str(found)

    def rollback(self, kind: str | None = None) -> PredictorVersion:
        """Retire the promoted version and re-promote the one promoted before it (of `kind`, when given)."""
        c = PREDICTORS.c
        previous = self.rollback_target(kind)
        if previous is None:
            what = "predictor" if kind is None else f"{kind!r} predictor"
            raise FailedPreconditionError(f"no previously promoted {what} to roll back to")
        with self.db.begin() as conn:
            conn.execute(
                update(PREDICTORS)
                .where(c.status == PredictorStatus.PROMOTED.value)
                .values(status=PredictorStatus.RETIRED.value, promoted_at=None)
            )
            _promote(conn, previous)
        return self.get(previous, with_artifact=False)


def _promote(conn: Connection, version: str) -> None:
    c = PREDICTORS.c
    conn.execute(
        update(PREDICTORS)
        .where(c.status == PredictorStatus.PROMOTED.value, c.version != version)
        .values(status=PredictorStatus.RETIRED.value)
    )
    conn.execute(
        update(PREDICTORS)
        .where(c.version == version)
        .values(status=PredictorStatus.PROMOTED.value, promoted_at=datetime.now(UTC))
    )
