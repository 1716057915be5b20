"""Reported outcomes of routed decisions: actual cost and energy move the tenant's ledger by actual minus
expected; `outcome_calibration` compares what decisions promised with what they delivered.

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

import sqlalchemy as sa
from sqlalchemy import Connection, func, select, update
from statsmodels.stats.proportion import proportion_confint

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


@dataclass(frozen=True)
class OutcomeCalibration:
    """Promised vs delivered over the reported decisions of one (tier, strategy); tier "*" = all of them.

    Quality is compared on the decisions reported with `correct`: the mean promised quality against the
    observed accuracy and its Wilson interval (`level`); spend on every reported decision."""

    tier: str
    strategy: str
    reported: int
    scored: int
    expected_quality: float
    observed_accuracy: float
    ci_low: float
    ci_high: float
    expected_cost_usd: float
    actual_cost_usd: float

    @property
    def quality_off(self) -> bool:
        """The promised quality lies outside the observed accuracy's interval."""
        return self.scored > 0 and not self.ci_low <= self.expected_quality <= self.ci_high

    @property
    def spend_ratio(self) -> float:
        """Actual over promised spend (nan when nothing was promised)."""
        return self.actual_cost_usd / self.expected_cost_usd if self.expected_cost_usd > 0 else math.nan

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = dict(self.__dict__)
        out["quality_off"], out["spend_ratio"] = self.quality_off, self.spend_ratio
        return out


def outcome_calibration(
    db: Database, tenant: str | None = None, since: datetime | None = None, level: float = 0.95
) -> list[OutcomeCalibration]:
    """Per (tier, strategy), then all together: promised vs delivered quality and spend of the decisions
    with a reported outcome (optionally of one tenant, decided at or after `since`)."""
    if not 0.0 < level < 1.0:
        raise InvalidArgumentError.for_field("level", level, "must be in (0, 1)")
    c = DECISIONS.c
    scored = c.correct.is_not(None)
    columns = (
        func.count(),
        func.sum(sa.case((scored, 1), else_=0)),
        func.sum(sa.case((scored, c.expected_quality), else_=0.0)),
        func.sum(sa.case((c.correct.is_(True), 1), else_=0)),
        func.sum(c.expected_cost_usd),
        func.sum(c.actual_cost_usd),
    )
    where = [c.actual_cost_usd.is_not(None)]
    if tenant is not None:
        where.append(c.tenant == tenant)
    if since is not None:
        where.append(c.created_at >= since)
    stmt = select(c.tier, c.strategy, *columns).where(*where).group_by(c.tier, c.strategy)
    with db.engine.connect() as conn:
        rows = [tuple(r) for r in conn.execute(stmt.order_by(c.tier, c.strategy))]
    out = [_calibration(str(r[0]), str(r[1]), r[2:], level) for r in rows]
    if out:
        totals = [sum(float(r[i] or 0) for r in rows) for i in range(2, 8)]
        out.append(_calibration("*", "*", totals, level))
    return out


def _calibration(tier: str, strategy: str, sums: Sequence[float | None], level: float) -> OutcomeCalibration:
    reported, scored, promised, hits, expected_usd, actual_usd = (float(v or 0) for v in sums)
    if scored > 0:
        low, high = proportion_confint(hits, scored, alpha=1 - level, method="wilson")
        quality, accuracy = promised / scored, hits / scored
    else:
        low = high = quality = accuracy = math.nan
    return OutcomeCalibration(
        tier, strategy, int(reported), int(scored), quality, accuracy, float(low), float(high),
        expected_usd, actual_usd,
    )  # fmt: skip
