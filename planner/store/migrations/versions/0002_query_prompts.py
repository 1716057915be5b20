"""Prompts stored once per query: a `queries` table (task, query_id) -> prompt.

Existing runs move their prompt there (the smallest prompt of each query when runs disagree); a run keeps its
own `runs.prompt` only when it differs from its query's. Downgrade copies the prompts back onto the runs.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_QUERY_PROMPT = (
    "(SELECT queries.prompt FROM queries WHERE queries.task = runs.task AND queries.query_id = runs.query_id)"
)


def upgrade() -> None:
    op.create_table(
        "queries",
        sa.Column("task", sa.String(), primary_key=True),
        sa.Column("query_id", sa.String(), primary_key=True),
        sa.Column("prompt", sa.Text(), nullable=False),
    )
    op.execute(
        "INSERT INTO queries (task, query_id, prompt) SELECT task, query_id, MIN(prompt) FROM runs "
        "WHERE prompt IS NOT NULL GROUP BY task, query_id"
    )
    op.execute(f"UPDATE runs SET prompt = NULL WHERE prompt = {_QUERY_PROMPT}")


def downgrade() -> None:
    op.execute(f"UPDATE runs SET prompt = {_QUERY_PROMPT} WHERE prompt IS NULL")
    op.drop_table("queries")
