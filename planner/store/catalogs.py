"""Catalog versions: TOML text keyed by the catalog's content hash, with one active version."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import insert, select, update

from planner.catalog import Catalog, parse_catalog
from planner.errors import NotFoundError
from planner.store.database import Database
from planner.store.tables import CatalogVersionRow

CATALOGS = CatalogVersionRow.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class CatalogVersion:
    hash: str
    toml: str
    created_at: datetime
    active: bool

    def catalog(self) -> Catalog:
        return parse_catalog(self.toml, f"catalog version {self.hash}")


class CatalogStore:
    """Stores validated catalogs; `put(..., activate=True)` makes the new one the only active version."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def put(self, toml_text: str, activate: bool = True) -> CatalogVersion:
        """Validate and store a catalog (raises CatalogError when invalid); returns its version."""
        version = parse_catalog(toml_text, "catalog").content_hash()
        c = CATALOGS.c
        with self.db.begin() as conn:
            exists = conn.execute(select(c.hash).where(c.hash == version)).first() is not None
            if not exists:
                conn.execute(
                    insert(CATALOGS).values(
                        hash=version, toml=toml_text, created_at=datetime.now(UTC), active=False
                    )
                )
            if activate:
                conn.execute(update(CATALOGS).where(c.hash != version).values(active=False))
                conn.execute(update(CATALOGS).where(c.hash == version).values(active=True))
        return self.get(version)

    def get(self, version: str) -> CatalogVersion:
        with self.db.engine.connect() as conn:
            row = conn.execute(select(CATALOGS).where(CATALOGS.c.hash == version)).first()
        if row is None:
            raise NotFoundError(f"no catalog version {version!r}")
        return CatalogVersion(**row._mapping)

    def get_active(self) -> CatalogVersion | None:
        with self.db.engine.connect() as conn:
            row = conn.execute(select(CATALOGS).where(CATALOGS.c.active.is_(True))).first()
        return None if row is None else CatalogVersion(**row._mapping)

    def list(self) -> list[CatalogVersion]:
        stmt = select(CATALOGS).order_by(CATALOGS.c.created_at.desc())
        with self.db.engine.connect() as conn:
            return [CatalogVersion(**r._mapping) for r in conn.execute(stmt)]
