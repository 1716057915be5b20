"""The planner's store: sqlmodel tables, Alembic migrations applied on open, and small repositories.

SQLite file by default, PostgreSQL by URL. `Database(url)` opens (and migrates) a database; `RunStore`,
`Ledger`, `AuditLog` (and `record_outcomes` for reported actual costs), `PredictorRegistryStore` and
`CatalogStore` work on it.
"""

from planner.store.audit import AuditLog, DecisionRecord
from planner.store.catalogs import CatalogStore, CatalogVersion
from planner.store.database import Database, normalise_url
from planner.store.ledger import Ledger, Spend, period_key
from planner.store.outcomes import (
    Outcome,
    OutcomeCalibration,
    OutcomeReport,
    outcome_calibration,
    record_outcomes,
)
from planner.store.registry import PredictorRegistryStore, PredictorStatus, PredictorVersion
from planner.store.runs import CANONICAL_COLUMNS, RunFilter, RunStats, RunStore, TierStats

__all__ = [
    "CANONICAL_COLUMNS",
    "AuditLog",
    "CatalogStore",
    "CatalogVersion",
    "Database",
    "DecisionRecord",
    "Ledger",
    "Outcome",
    "OutcomeCalibration",
    "OutcomeReport",
    "PredictorRegistryStore",
    "PredictorStatus",
    "PredictorVersion",
    "RunFilter",
    "RunStats",
    "RunStore",
    "Spend",
    "TierStats",
    "normalise_url",
    "outcome_calibration",
    "period_key",
    "record_outcomes",
]
