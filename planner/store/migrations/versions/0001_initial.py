"""Initial schema: runs, catalog versions, predictors, decisions, budget ledger.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("task", sa.String(), nullable=False),
        sa.Column("query_id", sa.String(), nullable=False),
        sa.Column("prompt", sa.Text(), nullable=True),
        sa.Column("prompt_chars", sa.Integer(), nullable=True),
        sa.Column("output_chars", sa.Integer(), nullable=True),
        sa.Column("tags", sa.String(), nullable=True),
        sa.Column("features", sa.Text(), nullable=True),
        sa.Column("model", sa.String(), nullable=False),
        sa.Column("tier", sa.String(), nullable=False),
        sa.Column("strategy", sa.String(), nullable=False),
        sa.Column("strategy_params", sa.Text(), nullable=True),
        sa.Column("target", sa.String(), nullable=False),
        sa.Column("sample_index", sa.Integer(), nullable=False),
        sa.Column("correct", sa.Integer(), nullable=True),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("input_tokens", sa.Integer(), nullable=True),
        sa.Column("output_tokens", sa.Integer(), nullable=True),
        sa.Column("cost_usd", sa.Float(), nullable=True),
        sa.Column("latency_s", sa.Float(), nullable=True),
        sa.Column("energy_j", sa.Float(), nullable=True),
        sa.Column("timestamp", TS, nullable=True),
        sa.Column("tenant", sa.String(), nullable=False),
        sa.Column("source", sa.String(), nullable=True),
        sa.UniqueConstraint("task", "query_id", "model", "strategy", "target", "sample_index", name="uq_runs_key"),
    )
    for col in ("query_id", "model", "tier"):  # task: leading column of uq_runs_key
        op.create_index(f"ix_runs_{col}", "runs", [col])

    op.create_table(
        "catalog_versions",
        sa.Column("hash", sa.String(), primary_key=True),
        sa.Column("toml", sa.Text(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
    )
    op.create_table(
        "predictors",
        sa.Column("version", sa.String(), primary_key=True),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("metrics", sa.Text(), nullable=False),
        sa.Column("artifact", sa.LargeBinary(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("promoted_at", TS, nullable=True),
    )
    op.create_index("ix_predictors_kind_status", "predictors", ["kind", "status"])
    op.create_table(
        "decisions",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.String(), nullable=False),
        sa.Column("tenant", sa.String(), nullable=False),
        sa.Column("query_id", sa.String(), nullable=False),
        sa.Column("tier", sa.String(), nullable=False),
        sa.Column("strategy", sa.String(), nullable=False),
        sa.Column("target", sa.String(), nullable=False),
        sa.Column("expected_quality", sa.Float(), nullable=False),
        sa.Column("expected_cost_usd", sa.Float(), nullable=False),
        sa.Column("explanation", sa.Text(), nullable=False),
        sa.Column("catalog_version", sa.String(), nullable=True),
        sa.Column("predictor_version", sa.String(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index("ix_decisions_request_id", "decisions", ["request_id"])
    op.create_index("ix_decisions_tenant_created", "decisions", ["tenant", "created_at"])
    op.create_table(
        "budget_ledger",
        sa.Column("tenant", sa.String(), primary_key=True),
        sa.Column("period", sa.String(), primary_key=True),
        sa.Column("spent_usd", sa.Float(), nullable=False),
        sa.Column("energy_j", sa.Float(), nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("budget_ledger")
    op.drop_index("ix_decisions_tenant_created", table_name="decisions")
    op.drop_index("ix_decisions_request_id", table_name="decisions")
    op.drop_table("decisions")
    op.drop_index("ix_predictors_kind_status", table_name="predictors")
    op.drop_table("predictors")
    op.drop_table("catalog_versions")
    for col in ("query_id", "model", "tier"):
        op.drop_index(f"ix_runs_{col}", table_name="runs")
    op.drop_table("runs")
