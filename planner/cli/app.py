"""The root typer application, and what every command module shares: the `--json` and `--database-url`
options, the store URL resolution, and the one way a command fails on a domain error (exit code 2)."""

from __future__ import annotations

import json
from typing import Annotated, NoReturn

import typer
from rich.console import Console

from planner.errors import PlannerError

app = typer.Typer(
    name="planner",
    help="Cost-aware compute allocation planner for LLM inference.",
    no_args_is_help=True,
    add_completion=False,
)

JsonOption = Annotated[bool, typer.Option("--json", help="Print exactly one JSON object.")]
UrlOption = Annotated[
    str | None, typer.Option("--database-url", help="Store URL (default: PLANNER_DATABASE_URL).")
]


def database_url(explicit: str | None) -> str:
    """The store URL: the option, else `planner.settings.Settings().database_url` (env / .env / default)."""
    if explicit:
        return explicit
    from planner.settings import load_settings

    return load_settings().database_url


def fail(exc: PlannerError, as_json: bool) -> NoReturn:
    """Report a domain error (one JSON object with --json, else a red line on stderr) and exit with code 2."""
    if as_json:
        typer.echo(json.dumps({"error": type(exc).__name__, "message": str(exc)}))
    else:
        Console(stderr=True).print(f"[red]error:[/red] {exc}")
    raise typer.Exit(code=2)
