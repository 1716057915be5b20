"""Reported outcomes of routed decisions: actual cost and energy move the tenant's ledger by actual minus
expected.

`record_outcomes(db, outcomes)` runs in one transaction. Each outcome first claims its decision row
(`UPDATE decisions SET actual_cost_usd = ... WHERE request_id = ... AND actual_cost_usd IS NULL`), so a
decision's outcome is applied once however often, and from however many replicas, it is reported; then the
decision's ledger row -- the tenant and budget period it was charged to, read back from the audit record --
moves by actual - expected spend (and energy, when reported; `planner.store.ledger.adjust`). Decisions that
are not in the audit log (dry runs are never charged or audited) are reported back as unknown.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection, select, update

from planner.errors import FieldViolation, InvalidArgumentError
from planner.store.audit import DECISIONS
from planner.store.database import Database
from planner.store.ledger import adjust, period_key


@dataclass(frozen=True)
class Outcome:
    """What one routed query actually consumed (`energy_j` None: not measured)."""

    decision_id: str
    cost_usd: float
    energy_j: float | None = None
    correct: bool | None = None

    def violations(self, path: str = "outcome") -> list[FieldViolation]:
        bad = []
        if not self.decision_id:
            bad.append(FieldViolation(f"{path}.decision_id", self.decision_id, "must not be empty"))
        if not (math.isfinite(self.cost_usd) and self.cost_usd >= 0):
            bad.append(FieldViolation(f"{path}.cost_usd", self.cost_usd, "must be finite and >= 0"))
        if self.energy_j is not None and not (math.isfinite(self.energy_j) and self.energy_j >= 0):
            bad.append(FieldViolation(f"{path}.energy_j", self.energy_j, "must be finite and >= 0"))
        return bad


@dataclass(frozen=True)
class OutcomeReport:
    applied: int
    already_reported: int
    unknown: tuple[str, ...]
    spend_delta_usd: float


def record_outcomes(db: Database, outcomes: Sequence[Outcome]) -> OutcomeReport:
    """Apply `outcomes` (see module docstring). Raises InvalidArgumentError naming every bad field (nothing
    is applied then), including a decision reported twice in one call."""
    bad = [v for i, o in enumerate(outcomes) for v in o.violations(f"outcomes[{i}]")]
    seen: dict[str, int] = {}
    for i, o in enumerate(outcomes):
        if o.decision_id and seen.setdefault(o.decision_id, i) != i:
            why = f"repeats outcomes[{seen[o.decision_id]}]"
            bad.append(FieldViolation(f"outcomes[{i}].decision_id", o.decision_id, why))
    if bad:
        raise InvalidArgumentError("invalid outcomes", bad)
    applied = repeated = 0
    unknown: list[str] = []
    delta = 0.0
    now = datetime.now(UTC)
    with db.begin() as conn:
        for o in outcomes:
            if _claim(conn, o, now):
                delta += _settle(conn, o)
                applied += 1
            elif _exists(conn, o.decision_id):
                repeated += 1
            else:
                unknown.append(o.decision_id)
    return OutcomeReport(applied, repeated, tuple(unknown), delta)


def _claim(conn: Connection, o: Outcome, now: datetime) -> bool:
    c = DECISIONS.c
    stmt = (
        update(DECISIONS)
        .where(c.request_id == o.decision_id, c.actual_cost_usd.is_(None))
        .values(actual_cost_usd=o.cost_usd, actual_energy_j=o.energy_j, correct=o.correct, reported_at=now)
    )
    return bool(conn.execute(stmt).rowcount)


def _exists(conn: Connection, decision_id: str) -> bool:
    c = DECISIONS.c
    return conn.execute(select(c.id).where(c.request_id == decision_id).limit(1)).first() is not None


def _settle(conn: Connection, o: Outcome) -> float:
    """Move the decision's ledger row by actual - expected; returns the USD change."""
    c = DECISIONS.c
    columns = (c.tenant, c.created_at, c.expected_cost_usd, c.explanation)
    row = conn.execute(select(*columns).where(c.request_id == o.decision_id)).one()
    explanation = json.loads(row.explanation or "{}")
    period = str(explanation.get("extra", {}).get("period") or "day")
    d_usd = o.cost_usd - float(row.expected_cost_usd)
    expected_j = explanation.get("energy_j")
    d_j = o.energy_j - float(expected_j) if o.energy_j is not None and expected_j is not None else 0.0
    adjust(conn, row.tenant, period_key(row.created_at, period), d_usd, d_j)
    return d_usd
