"""CLI: `planner outcomes` -- did routed decisions deliver what they promised? (from `ReportOutcomes`)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from planner.cli.app import JsonOption, UrlOption, app, database_url, fail
from planner.errors import InvalidArgumentError, PlannerError


def _since(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidArgumentError.for_field("since", value, "not an ISO 8601 date or time") from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


@app.command("outcomes")
def outcomes_command(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's decisions.")] = None,
    since: Annotated[str | None, typer.Option(help="Only decisions made at or after this ISO time.")] = None,
    level: Annotated[float, typer.Option(help="Confidence level of the accuracy interval.")] = 0.95,
    database_url_: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Promised vs delivered quality and spend of reported decisions, per tier and strategy."""
    from planner.store import Database, outcome_calibration

    try:
        rows = outcome_calibration(Database(database_url(database_url_)), tenant, _since(since), level)
    except PlannerError as exc:
        fail(exc, as_json)
    if as_json:
        typer.echo(json.dumps({"level": level, "rows": [r.to_dict() for r in rows]}, default=str))
        return
    table = Table(title=f"Reported outcomes ({len(rows) - 1 if rows else 0} tier x strategy groups)")
    columns = ("tier", "strategy", "reported", "scored", "promised", "observed", f"{level:.0%} CI", "spend x")
    for col in columns:
        table.add_column(col)
    for r in rows:
        flag = "[red]" if r.quality_off else ""
        table.add_row(
            r.tier, r.strategy, str(r.reported), str(r.scored), f"{r.expected_quality:.3f}",
            f"{flag}{r.observed_accuracy:.3f}", f"{r.ci_low:.3f}-{r.ci_high:.3f}", f"{r.spend_ratio:.2f}",
        )  # fmt: skip
    Console().print(table if rows else "no reported outcomes yet (clients report them with ReportOutcomes)")
