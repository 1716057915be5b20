"""Decisions carry their reported outcome: actual cost and energy, correctness, when it was reported.

All four columns are nullable (NULL until `ReportOutcomes` reports the decision), so existing rows need no
data change. Downgrade drops them (on SQLite through Alembic's batch mode, which rebuilds the table).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

COLUMNS = ("actual_cost_usd", "actual_energy_j", "correct", "reported_at")


def upgrade() -> None:
    with op.batch_alter_table("decisions") as batch:
        batch.add_column(sa.Column("actual_cost_usd", sa.Float(), nullable=True))
        batch.add_column(sa.Column("actual_energy_j", sa.Float(), nullable=True))
        batch.add_column(sa.Column("correct", sa.Boolean(), nullable=True))
        batch.add_column(sa.Column("reported_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("decisions") as batch:
        for name in reversed(COLUMNS):
            batch.drop_column(name)
