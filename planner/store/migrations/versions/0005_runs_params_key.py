"""strategy_params joins the runs' idempotency key, as a `params_key` column (canonical JSON, '' for none).

Before, the key (query_id, task, model, strategy, target, sample_index) made runs that differ only in their
strategy_params (majority_vote with {"n": 5} and with {"n": 16}: a test-time-compute scaling sweep) collide,
and the import silently skipped the second as a re-import. `params_key` holds
`json.dumps(params, sort_keys=True, separators=(",", ":"))` of the parsed strategy_params (whole-number
floats written as ints: a protobuf Struct from `RecordRuns` turns 5 into 5.0), or '' when there are none
(NULL, an empty object): NOT NULL, because NULLs are distinct in a unique index and re-imports of runs
without parameters would then add rows. Existing rows are backfilled from their stored strategy_params (by
id, each distinct text parsed once); `uq_runs_key` becomes (query_id, task, model, strategy, params_key, target,
sample_index), query_id still first (0003). On SQLite the constraint change rebuilds the table (Alembic batch
mode); every row and id is carried over.

Downgrade restores the 0004 key and drops the column. Runs that the old key cannot tell apart cannot all
stay: of each group, the one with the lowest id is kept and the others are DELETED (exactly what the old
import would have stored), and the count is logged.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""

import json
import logging
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

OLD_KEY = ["query_id", "task", "model", "strategy", "target", "sample_index"]
NEW_KEY = ["query_id", "task", "model", "strategy", "params_key", "target", "sample_index"]
_LOG = logging.getLogger("alembic.runtime.migration")
_UPDATES_PER_CALL = 10_000


def _ints(obj: Any) -> Any:
    if isinstance(obj, float) and obj.is_integer():
        return int(obj)
    if isinstance(obj, dict):
        return {k: _ints(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_ints(v) for v in obj]
    return obj


def _canonical(text: str) -> str:
    """The key of one stored strategy_params text: a frozen copy of `planner.store.run_insert.params_key`'s
    rule (sorted keys, no spaces, whole-number floats as ints, '' for null / {}; text that is not JSON keys
    as itself, so distinct texts stay distinct)."""
    try:
        obj = json.loads(text)
    except ValueError:
        return text.strip()
    if obj is None or obj == {}:
        return ""
    return json.dumps(_ints(obj), sort_keys=True, separators=(",", ":"))


def _rekey(columns: list[str], drop_params_key: bool = False) -> None:
    with op.batch_alter_table("runs") as batch:  # on SQLite: one table rebuild for all of these
        batch.drop_constraint("uq_runs_key", type_="unique")
        batch.create_unique_constraint("uq_runs_key", columns)
        if drop_params_key:
            batch.drop_column("params_key")


def _backfill() -> None:
    """params_key of every run with strategy_params, updated by id (each distinct text parsed once); work in
    proportion to the runs that have parameters, whatever the number of distinct ones."""
    conn = op.get_bind()
    keys: dict[str, str] = {}
    rows = conn.execute(sa.text("SELECT id, strategy_params FROM runs WHERE strategy_params IS NOT NULL"))
    updates = []
    for run_id, text in rows.all():
        key = keys.get(text)
        if key is None:
            key = keys[text] = _canonical(text)
        if key:
            updates.append({"k": key, "i": run_id})
    for start in range(0, len(updates), _UPDATES_PER_CALL):
        conn.execute(
            sa.text("UPDATE runs SET params_key = :k WHERE id = :i"), updates[start : start + _UPDATES_PER_CALL]
        )


def upgrade() -> None:
    op.add_column("runs", sa.Column("params_key", sa.Text(), nullable=False, server_default=""))
    _backfill()
    _rekey(NEW_KEY)


_SAME_OLD_KEY = " AND ".join(f"o.{c} = runs.{c}" for c in OLD_KEY)


def downgrade() -> None:
    conn = op.get_bind()
    if conn.execute(sa.text("SELECT 1 FROM runs WHERE params_key <> '' LIMIT 1")).first() is not None:
        older = f"SELECT 1 FROM runs o WHERE {_SAME_OLD_KEY} AND o.id < runs.id"
        deleted = conn.execute(sa.text(f"DELETE FROM runs WHERE EXISTS ({older})")).rowcount
        _LOG.warning("0005 downgrade: deleted %s runs that differ only in strategy_params", deleted)
    _rekey(OLD_KEY, drop_params_key=True)
