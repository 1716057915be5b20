"""The runs' idempotency key leads with query_id; the separate `ix_runs_query_id` index goes.

`uq_runs_key` holds the same six columns (the idempotency key is unchanged), now in the order (query_id, task,
model, strategy, target, sample_index), so its index also serves lookups by query_id alone and the table has
one index less to maintain on every insert (the run import's largest cost). Filters on task alone no longer
have an index: they select a whole task's runs (training frames, statistics), which a table scan serves.
On SQLite the constraint change rebuilds the table (Alembic batch mode); every row and id is carried over.
Downgrade restores the 0002 key order and index.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

OLD_KEY = ["task", "query_id", "model", "strategy", "target", "sample_index"]
NEW_KEY = ["query_id", "task", "model", "strategy", "target", "sample_index"]


def _rekey(columns: list[str]) -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_constraint("uq_runs_key", type_="unique")
        batch.create_unique_constraint("uq_runs_key", columns)


def upgrade() -> None:
    op.drop_index("ix_runs_query_id", table_name="runs")
    _rekey(NEW_KEY)


def downgrade() -> None:
    _rekey(OLD_KEY)
    op.create_index("ix_runs_query_id", "runs", ["query_id"])
