"""Budget ledger: spend and energy per (tenant, period), safe to share between server replicas.

`reserve` is one conditional UPDATE (`... SET spent = spent + x WHERE spent + x <= cap`) after making sure the
row exists (`INSERT ... ON CONFLICT DO NOTHING`), both in one transaction. The database serialises concurrent
updates of the row (PostgreSQL row lock with re-check of the WHERE clause; SQLite's single writer), so no two
processes can both pass the cap check on a stale value: the ledger never overspends.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection, case, select, update
from sqlalchemy.dialects import postgresql, sqlite

from planner.errors import InvalidArgumentError
from planner.store.database import Database
from planner.store.tables import LedgerRow

LEDGER = LedgerRow.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Spend:
    """What a tenant has spent in one period."""

    tenant: str
    period: str
    spent_usd: float
    energy_j: float


def period_key(when: datetime, period: str = "day") -> str:
    """The ledger key of a UTC time: `2026-11-23` (day), `2026-11-23T10` (hour), `2026-W48`, `2026-11`."""
    when = when.astimezone(UTC) if when.tzinfo else when
    if period == "day":
        return when.strftime("%Y-%m-%d")
    if period == "hour":
        return when.strftime("%Y-%m-%dT%H")
    if period == "week":
        year, week, _ = when.isocalendar()
        return f"{year}-W{week:02d}"
    if period == "month":
        return when.strftime("%Y-%m")
    raise InvalidArgumentError.for_field("period", period, "not one of ['day', 'hour', 'month', 'week']")


def _check_amounts(usd: float, energy_j: float) -> None:
    if not usd >= 0:
        raise InvalidArgumentError.for_field("usd", usd, "must be >= 0")
    if not energy_j >= 0:
        raise InvalidArgumentError.for_field("energy_j", energy_j, "must be >= 0")


def _ensure_row(conn: Connection, tenant: str, period: str) -> None:
    values = {"tenant": tenant, "period": period, "spent_usd": 0.0, "energy_j": 0.0,
              "updated_at": datetime.now(UTC)}  # fmt: skip
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    conn.execute(dialect.insert(LEDGER).values(**values).on_conflict_do_nothing())


def adjust(conn: Connection, tenant: str, period: str, usd: float, energy_j: float = 0.0) -> None:
    """Move a period's spend and energy by signed amounts (actual - expected, reported after the fact), in the
    caller's transaction; floors at 0. No cap applies: what was spent was spent."""
    if not (math.isfinite(usd) and math.isfinite(energy_j)):
        raise InvalidArgumentError.for_field("adjustment", (usd, energy_j), "must be finite")
    _ensure_row(conn, tenant, period)
    c = LEDGER.c
    stmt = (
        update(LEDGER)
        .where(c.tenant == tenant, c.period == period)
        .values(
            spent_usd=case((c.spent_usd + usd < 0, 0.0), else_=c.spent_usd + usd),
            energy_j=case((c.energy_j + energy_j < 0, 0.0), else_=c.energy_j + energy_j),
            updated_at=datetime.now(UTC),
        )
    )
    conn.execute(stmt)


class Ledger:
    """Atomic spend accounting over the `budget_ledger` table."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def reserve(
        self,
        tenant: str,
        period: str,
        usd: float,
        energy_j: float = 0.0,
        cap_usd: float | None = None,
        cap_energy_j: float | None = None,
    ) -> bool:
        """Add `usd` and `energy_j` to the tenant's period iff totals stay within the caps (None: no cap).

        Returns whether the reservation was made. Safe across threads, processes and replicas.
        """
        _check_amounts(usd, energy_j)
        c = LEDGER.c
        stmt = (
            update(LEDGER)
            .where(c.tenant == tenant, c.period == period)
            .values(spent_usd=c.spent_usd + usd, energy_j=c.energy_j + energy_j, updated_at=datetime.now(UTC))
        )
        if cap_usd is not None:
            stmt = stmt.where(c.spent_usd + usd <= cap_usd)
        if cap_energy_j is not None:
            stmt = stmt.where(c.energy_j + energy_j <= cap_energy_j)
        with self.db.begin() as conn:
            _ensure_row(conn, tenant, period)
            return conn.execute(stmt).rowcount == 1

    def record(self, tenant: str, period: str, usd: float, energy_j: float = 0.0) -> None:
        """Add spend unconditionally (actual spend reported after the fact)."""
        self.reserve(tenant, period, usd, energy_j)

    def release(self, tenant: str, period: str, usd: float, energy_j: float = 0.0) -> None:
        """Give back part of a reservation (e.g. the actual cost came in below the estimate); floors at 0."""
        _check_amounts(usd, energy_j)
        c = LEDGER.c
        stmt = (
            update(LEDGER)
            .where(c.tenant == tenant, c.period == period)
            .values(spent_usd=c.spent_usd - usd, energy_j=c.energy_j - energy_j, updated_at=datetime.now(UTC))
        )
        with self.db.begin() as conn:
            conn.execute(stmt)
            key = (c.tenant == tenant, c.period == period)
            conn.execute(update(LEDGER).where(*key, c.spent_usd < 0).values(spent_usd=0.0))
            conn.execute(update(LEDGER).where(*key, c.energy_j < 0).values(energy_j=0.0))

    def spent(self, tenant: str, period: str) -> Spend:
        """Spend so far (zeros when nothing was recorded)."""
        c = LEDGER.c
        stmt = select(c.spent_usd, c.energy_j).where(c.tenant == tenant, c.period == period)
        with self.db.engine.connect() as conn:
            row = conn.execute(stmt).first()
        if row is None:
            return Spend(tenant, period, 0.0, 0.0)
        return Spend(tenant, period, float(row[0]), float(row[1]))

    def periods(self, tenant: str | None = None) -> list[Spend]:
        """Every recorded (tenant, period), ordered by tenant then period."""
        c = LEDGER.c
        stmt = select(c.tenant, c.period, c.spent_usd, c.energy_j).order_by(c.tenant, c.period)
        if tenant is not None:
            stmt = stmt.where(c.tenant == tenant)
        with self.db.engine.connect() as conn:
            return [Spend(str(t), str(p), float(s), float(e)) for t, p, s, e in conn.execute(stmt)]
