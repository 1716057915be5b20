"""`planner serve`: open (and migrate) the store, optionally seed the demo history, run the gRPC server."""

from __future__ import annotations

import asyncio
import importlib
from typing import Annotated, Any

import grpc
import structlog
import typer

from planner.cli.app import app
from planner.errors import PlannerError
from planner.logging import configure_logging
from planner.server import serve
from planner.settings import load_settings
from planner.store import Database, RunStore

log = structlog.get_logger(__name__)


def seed_demo_if_empty(db: Database) -> int:
    """Seed the demo history with `planner.demo.seed_demo(db)` when the store has no runs; rows written."""
    if RunStore(db).count() > 0:
        return 0
    try:
        demo: Any = importlib.import_module("planner.demo")
    except ModuleNotFoundError:
        log.warning("demo.unavailable", reason="planner.demo is not installed")
        return 0
    result = demo.seed_demo(db)
    return int(getattr(result, "inserted", result) or 0)


@app.command("serve")
def serve_command(
    address: Annotated[str | None, typer.Option(help="host:port to bind (PLANNER_ADDRESS).")] = None,
    database_url: Annotated[str | None, typer.Option(help="Store URL (PLANNER_DATABASE_URL).")] = None,
    demo: Annotated[bool, typer.Option("--demo/--no-demo", help="Seed the demo history if empty.")] = False,
) -> None:
    """Run the planner's gRPC server until SIGTERM / SIGINT."""
    try:
        settings = load_settings(address=address, database_url=database_url)
        configure_logging(settings)
        db = Database(settings.database_url)
    except PlannerError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if demo:
        log.info("demo.seeded", rows=seed_demo_if_empty(db))

    def ready(_server: grpc.aio.Server, port: int) -> None:
        log.info("serve.listening", address=settings.address, port=port)

    try:
        asyncio.run(serve(settings, db=db, on_ready=ready))
    except PlannerError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    finally:
        db.dispose()
