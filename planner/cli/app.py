"""The root typer application, and what every command module shares: the `--json` and `--database-url`
options, the options of commands that read runs from a file or the store (`--runs`, `--prices`), the store URL
resolution, and the one way a command fails on a domain error (exit code 2)."""

from __future__ import annotations

import json
from pathlib import Path
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
RunsOption = Annotated[
    Path | None, typer.Option("--runs", help="Run file (CSV/CSV.gz/Parquet); default: the store.")
]
RunsUrlOption = Annotated[
    str | None, typer.Option("--database-url", help="Store URL when --runs is not given.")
]
PricesOption = Annotated[
    Path | None,
    typer.Option(
        "--prices",
        help="API price CSV (model, input_usd_per_mtok, output_usd_per_mtok) for run models the catalog "
        "does not know; default: PLANNER_PRICE_TABLE. Tried before tokencost's list prices "
        "(PLANNER_LIST_PRICES=false turns those off).",
    ),
]


def database_url(explicit: str | None) -> str:
    """The store URL: the option, else `planner.settings.Settings().database_url` (env / .env / default)."""
    if explicit:
        return explicit
    from planner.settings import load_settings

    return load_settings().database_url


def fail(exc: PlannerError | ValueError, as_json: bool) -> NoReturn:
    """Report a domain error or a bad value (one JSON object with --json, else a red line on stderr) and exit
    with code 2."""
    if as_json:
        typer.echo(json.dumps({"error": type(exc).__name__, "message": str(exc)}))
    else:
        Console(stderr=True).print(f"[red]error:[/red] {exc}")
    raise typer.Exit(code=2)
