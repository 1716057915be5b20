"""Reported outcomes: the ledger moves by actual - expected once per decision; bad reports name the field."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from planner.errors import InvalidArgumentError
from planner.store import AuditLog, Database, DecisionRecord, Ledger, Outcome, period_key, record_outcomes

WHEN = datetime(2026, 11, 23, 10, 30, tzinfo=UTC)
DAY = period_key(WHEN, "day")


def decided(db: Database, n: int = 3, tenant: str = "acme", expected: float = 0.01) -> list[str]:
    """n audited decisions of `expected` USD and 100 J each, charged to the tenant's day like Route does."""
    ids = [f"d{i}" for i in range(n)]
    exp = {"extra": {"period": "day"}, "energy_j": 100.0}
    AuditLog(db).write_many(
        [
            DecisionRecord(i, tenant, f"q{i}", "small", "single", "gpu", 0.9, expected, exp, created_at=WHEN)
            for i in ids
        ]
    )
    Ledger(db).reserve(tenant, DAY, expected * n, 100.0 * n)
    return ids


def test_outcomes_move_the_ledger_by_actual_minus_expected(db: Database) -> None:
    ids = decided(db)
    report = record_outcomes(
        db,
        [Outcome(ids[0], 0.004, energy_j=40.0, correct=True), Outcome(ids[1], 0.025), Outcome("nope", 1.0)],
    )
    assert (report.applied, report.already_reported, report.unknown) == (2, 0, ("nope",))
    assert report.spend_delta_usd == pytest.approx(-0.006 + 0.015)
    spent = Ledger(db).spent("acme", DAY)
    assert spent.spent_usd == pytest.approx(0.004 + 0.025 + 0.01)  # the third decision is still expected
    assert spent.energy_j == pytest.approx(40.0 + 100.0 + 100.0)  # energy reported for the first only
    rows = {r.request_id: r for r in AuditLog(db).recent(tenant="acme")}
    assert rows[ids[0]].actual_cost_usd == 0.004 and rows[ids[0]].correct is True
    assert rows[ids[0]].reported_at is not None and rows[ids[2]].actual_cost_usd is None


def test_an_outcome_is_applied_once(db: Database) -> None:
    ids = decided(db, n=1)
    assert record_outcomes(db, [Outcome(ids[0], 0.0)]).applied == 1
    again = record_outcomes(db, [Outcome(ids[0], 5.0)])
    assert (again.applied, again.already_reported, again.spend_delta_usd) == (0, 1, 0.0)
    assert Ledger(db).spent("acme", DAY).spent_usd == pytest.approx(0.0)


def test_bad_outcomes_name_the_field_and_apply_nothing(db: Database) -> None:
    ids = decided(db, n=2)
    with pytest.raises(InvalidArgumentError) as err:
        record_outcomes(
            db,
            [
                Outcome(ids[0], 0.001),
                Outcome(ids[1], -1.0),
                Outcome("", 0.0),
                Outcome(ids[0], 0.002, energy_j=float("nan")),
            ],
        )
    fields = {v.field for v in err.value.violations}
    assert fields == {
        "outcomes[1].cost_usd",
        "outcomes[2].decision_id",
        "outcomes[3].decision_id",
        "outcomes[3].energy_j",
    }
    assert Ledger(db).spent("acme", DAY).spent_usd == pytest.approx(0.02)  # unchanged
    assert all(r.actual_cost_usd is None for r in AuditLog(db).recent(tenant="acme"))


def test_calibration_compares_promised_with_delivered(db: Database) -> None:
    from planner.store import outcome_calibration

    ids = decided(db, n=40, expected=0.01)  # each promises quality 0.9 at $0.01
    report = [Outcome(d, 0.02, correct=i < 10) for i, d in enumerate(ids[:30])]  # 10 of 30 correct
    record_outcomes(db, [*report, Outcome(ids[30], 0.01)])  # one without correctness
    rows = outcome_calibration(db)
    (group, total) = rows
    assert (group.tier, group.strategy, group.reported, group.scored) == ("small", "single", 31, 30)
    assert group.expected_quality == pytest.approx(0.9) and group.observed_accuracy == pytest.approx(1 / 3)
    assert group.ci_low < 1 / 3 < group.ci_high < 0.9 and group.quality_off
    assert group.spend_ratio == pytest.approx((30 * 0.02 + 0.01) / (31 * 0.01))
    assert (total.tier, total.reported) == ("*", 31)
    assert outcome_calibration(db, tenant="other") == []
    assert outcome_calibration(db, since=datetime(2030, 1, 1, tzinfo=UTC)) == []
    with pytest.raises(InvalidArgumentError, match="level"):
        outcome_calibration(db, level=1.5)


def test_outcomes_cli_reports_calibration(db: Database) -> None:
    import json

    from typer.testing import CliRunner

    from planner.cli import app

    ids = decided(db, n=5)
    record_outcomes(db, [Outcome(i, 0.01, correct=True) for i in ids])
    url = str(db.engine.url.render_as_string(hide_password=False))
    out = CliRunner().invoke(app, ["outcomes", "--database-url", url, "--json"])
    assert out.exit_code == 0, out.output
    rows = json.loads(out.output)["rows"]
    assert rows[0]["observed_accuracy"] == 1.0 and rows[0]["quality_off"] is False
    bad = CliRunner().invoke(app, ["outcomes", "--database-url", url, "--since", "yesterday", "--json"])
    assert bad.exit_code == 2 and "since" in bad.output
