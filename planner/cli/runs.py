"""CLI: `planner runs import|stats` (historical runs) and `planner demo` (seed the synthetic demo history)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from planner.catalog import load_catalog
from planner.cli.app import JsonOption, UrlOption, app, database_url, fail
from planner.errors import PlannerError

# The import pipeline and the store are imported when a command runs, so `planner --help` stays fast.
if TYPE_CHECKING:
    from planner.ingest import ImportProgress
    from planner.store import Database

runs_app = typer.Typer(help="Historical runs: import files, show statistics.", no_args_is_help=True)
app.add_typer(runs_app, name="runs")


def _mapping(pairs: list[str], preset_name: str | None) -> dict[str, str]:
    from planner.ingest import preset

    mapping = preset(preset_name) if preset_name else {}
    for pair in pairs:
        src, sep, dst = pair.partition("=")
        if not sep or not src or not dst:
            raise typer.BadParameter(f"--map expects SRC=DST, got {pair!r}")
        mapping[src] = dst
    return mapping


@runs_app.command("import")
def import_command(
    file: Annotated[Path, typer.Argument(help="CSV, CSV.gz, JSONL(.gz) or Parquet run file.")],
    map_: Annotated[
        list[str] | None, typer.Option("--map", help="Column mapping SRC=DST (repeatable).")
    ] = None,
    preset_name: Annotated[str | None, typer.Option("--preset", help="Named mapping, e.g. zeroeval.")] = None,
    task: Annotated[str | None, typer.Option("--task", help="Task for rows that have none.")] = None,
    chunk_size: Annotated[int, typer.Option("--chunk-size", min=1)] = 20_000,
    database_url_: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Import a run file into the store (all or nothing; re-importing adds nothing)."""
    from planner.ingest import import_file
    from planner.store import Database

    try:
        mapping = _mapping(map_ or [], preset_name)
        db = Database(database_url(database_url_))
        defaults = {"task": task} if task else None
        if as_json:
            result = import_file(file, db, mapping, chunk_size, catalog=load_catalog(), defaults=defaults)
        else:
            result = _import_with_bar(file, db, mapping, chunk_size, defaults)
    except PlannerError as exc:
        fail(exc, as_json)
        return
    if as_json:
        typer.echo(json.dumps(result.to_dict()))
        return
    Console().print(
        f"read {result.rows_read:,} rows: {result.inserted:,} inserted, "
        f"{result.skipped_duplicates:,} already present"
        + (f" (ignored columns: {', '.join(result.ignored_columns)})" if result.ignored_columns else "")
    )


def _import_with_bar(
    file: Path, db: Database, mapping: dict[str, str], chunk_size: int, defaults: dict[str, Any] | None
) -> Any:
    from planner.ingest import import_file

    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True)) as bar:
        task_id = bar.add_task(
            f"importing {file.name}", total=file.stat().st_size if file.is_file() else None
        )

        def update(p: ImportProgress) -> None:
            bar.update(task_id, completed=p.bytes_done, description=f"{file.name}: {p.rows_read:,} rows")

        return import_file(
            file, db, mapping, chunk_size, progress=update, catalog=load_catalog(), defaults=defaults
        )


@runs_app.command("stats")
def stats_command(
    task: Annotated[str | None, typer.Option("--task", help="Only this task.")] = None,
    database_url_: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Counts of runs, queries, models, tiers and tasks, and per-tier accuracy and output tokens."""
    from planner.store import Database, RunStore

    try:
        stats = RunStore(Database(database_url(database_url_))).stats(task)
    except PlannerError as exc:
        fail(exc, as_json)
        return
    if as_json:
        typer.echo(json.dumps(stats.to_dict()))
        return
    console = Console()
    console.print(
        f"{stats.rows:,} runs, {stats.queries:,} queries, {stats.models} models, "
        f"{stats.tiers} tiers, {stats.tasks} tasks"
    )
    table = Table("tier", "runs", "accuracy", "mean output tokens")
    for t in stats.per_tier:
        tokens = "-" if t.mean_output_tokens is None else f"{t.mean_output_tokens:.0f}"
        table.add_row(t.tier, f"{t.rows:,}", f"{t.accuracy:.3f}", tokens)
    console.print(table)


@app.command("demo")
def demo_command(
    queries: Annotated[int, typer.Option("--queries", min=1, help="Synthetic queries to generate.")] = 1000,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    database_url_: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Seed the store with the synthetic demo history (does nothing if demo runs are already there)."""
    from planner.demo import seed_demo
    from planner.store import Database, RunStore

    try:
        db = Database(database_url(database_url_))
        inserted = seed_demo(db, load_catalog(), n_queries=queries, seed=seed)
        total = RunStore(db).count()
    except PlannerError as exc:
        fail(exc, as_json)
        return
    if as_json:
        typer.echo(json.dumps({"inserted": inserted, "total_runs": total}))
    else:
        Console().print(f"demo history: {inserted:,} runs inserted ({total:,} runs in the store)")
