"""The store's tables as sqlmodel classes on a registry of their own (so `STORE_METADATA` holds exactly them).

The Alembic migrations in `planner/store/migrations/versions/` create the same schema (a test compares).
JSON fields are stored as text (canonical `json.dumps(..., sort_keys=True)`) so SQLite and PostgreSQL agree.
`runs.target` and `runs.params_key` are `""` rather than NULL when unknown / absent: NULLs never collide in a
unique constraint, and the idempotency key must collide.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

_REGISTRY = registry()


class StoreModel(SQLModel, registry=_REGISTRY):
    """Base of every store table; its metadata is the store's own, not SQLModel's global one."""


STORE_METADATA = StoreModel.metadata

RUN_KEY = ("task", "query_id", "model", "strategy", "params_key", "target", "sample_index")
"""The idempotency key of a historical run; `params_key` is its strategy_params in canonical JSON (migration
0005: before it, runs differing only in strategy_params, e.g. majority_vote n=5 and n=16, collided)."""
RUN_KEY_INDEX_ORDER = ("query_id", "task", "model", "strategy", "params_key", "target", "sample_index")
"""`RUN_KEY` in its unique index's column order: query_id first, so the index serves lookups by query_id."""


class RunRow(StoreModel, table=True):
    """One historical run: one sample of one model with one strategy on one query (see `planner.ingest`)."""

    __tablename__ = "runs"
    __table_args__ = (
        sa.UniqueConstraint(*RUN_KEY_INDEX_ORDER, name="uq_runs_key"),
        sa.Index("ix_runs_model", "model"),
        sa.Index("ix_runs_tier", "tier"),
        # query_id is served by uq_runs_key, whose leading column it is (migration 0003: one index less to
        # maintain on import); task alone has no index: a task filter selects a whole data set's runs.
    )

    id: int | None = Field(default=None, primary_key=True)
    task: str = "default"
    query_id: str
    prompt: str | None = Field(default=None, sa_type=sa.Text)
    """Only a prompt that differs from its query's one in `queries`; readers coalesce the two."""
    prompt_chars: int | None = None
    output_chars: int | None = None
    tags: str | None = None
    features: str | None = Field(default=None, sa_type=sa.Text)
    model: str
    tier: str
    strategy: str = "single"
    strategy_params: str | None = Field(default=None, sa_type=sa.Text)
    params_key: str = Field(default="", sa_type=sa.Text, sa_column_kwargs={"server_default": ""})
    """strategy_params as canonical JSON (`planner.store.run_insert.params_key`), `""` for none: part of the
    idempotency key. Written by the import; readers do not return it."""
    target: str = ""
    sample_index: int = 0
    correct: int | None = None
    score: float
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost_usd: float | None = None
    latency_s: float | None = None
    energy_j: float | None = None
    timestamp: datetime | None = Field(default=None, sa_type=sa.DateTime(timezone=True))
    tenant: str = "default"
    source: str | None = None


class QueryRow(StoreModel, table=True):
    """The prompt text of one query, stored once rather than with each of its runs (see `RunStore`)."""

    __tablename__ = "queries"

    task: str = Field(primary_key=True)
    query_id: str = Field(primary_key=True)
    prompt: str = Field(sa_type=sa.Text)


class CatalogVersionRow(StoreModel, table=True):
    """A catalog as TOML text, keyed by its content hash; at most one row is active."""

    __tablename__ = "catalog_versions"

    hash: str = Field(primary_key=True)
    toml: str = Field(sa_type=sa.Text)
    created_at: datetime = Field(sa_type=sa.DateTime(timezone=True))
    active: bool = False


class PredictorRow(StoreModel, table=True):
    """A trained predictor: skops artifact bytes, metrics and lifecycle status."""

    __tablename__ = "predictors"
    __table_args__ = (sa.Index("ix_predictors_kind_status", "kind", "status"),)

    version: str = Field(primary_key=True)
    kind: str
    metrics: str = Field(default="{}", sa_type=sa.Text)
    artifact: bytes = Field(sa_type=sa.LargeBinary)
    status: str = "candidate"
    created_at: datetime = Field(sa_type=sa.DateTime(timezone=True))
    promoted_at: datetime | None = Field(default=None, sa_type=sa.DateTime(timezone=True))


class DecisionRow(StoreModel, table=True):
    """Audit record of one routing / planning decision."""

    __tablename__ = "decisions"
    __table_args__ = (
        sa.Index("ix_decisions_request_id", "request_id"),
        sa.Index("ix_decisions_tenant_created", "tenant", "created_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    request_id: str
    tenant: str
    query_id: str
    tier: str
    strategy: str
    target: str
    expected_quality: float
    expected_cost_usd: float
    explanation: str = Field(default="{}", sa_type=sa.Text)
    catalog_version: str | None = None
    predictor_version: str | None = None
    created_at: datetime = Field(sa_type=sa.DateTime(timezone=True))
    actual_cost_usd: float | None = None
    """Reported after the fact (`ReportOutcomes`); NULL until then."""
    actual_energy_j: float | None = None
    correct: bool | None = None
    reported_at: datetime | None = Field(default=None, sa_type=sa.DateTime(timezone=True))


class LedgerRow(StoreModel, table=True):
    """Spend and energy of one tenant in one budget period (`2026-11-23` or `2026-11-23T10`)."""

    __tablename__ = "budget_ledger"

    tenant: str = Field(primary_key=True)
    period: str = Field(primary_key=True)
    spent_usd: float = 0.0
    energy_j: float = 0.0
    updated_at: datetime = Field(sa_type=sa.DateTime(timezone=True))
