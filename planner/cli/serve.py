"""`planner serve`: open (and migrate) the store, optionally seed the demo history, run the gRPC server."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Annotated, NoReturn

import structlog
import typer

from planner.catalog import Catalog
from planner.cli.app import app
from planner.errors import PlannerError

# The server and the store are imported when the command runs, so `planner --help` stays fast.
if TYPE_CHECKING:
    import grpc

    from planner.store import Database

log = structlog.get_logger(__name__)


def seed_demo_if_empty(db: Database, catalog: Catalog) -> int:
    """Seed the synthetic demo history (`planner.demo.seed_demo`) when the store has no runs; runs written."""
    from planner.demo import seed_demo
    from planner.store import RunStore

    if RunStore(db).count() > 0:
        return 0
    return seed_demo(db, catalog)


@app.command("serve")
def serve_command(
    address: Annotated[str | None, typer.Option(help="host:port to bind (PLANNER_ADDRESS).")] = None,
    database_url: Annotated[str | None, typer.Option(help="Store URL (PLANNER_DATABASE_URL).")] = None,
    demo: Annotated[bool, typer.Option("--demo/--no-demo", help="Seed the demo history if empty.")] = False,
) -> None:
    """Run the planner's gRPC server until SIGTERM / SIGINT."""
    from planner.logging import configure_logging
    from planner.server import initial_catalog, serve
    from planner.settings import load_settings
    from planner.store import Database

    try:
        settings = load_settings(address=address, database_url=database_url)
        configure_logging(settings)
        db = Database(settings.database_url)
    except PlannerError as exc:
        _fail(exc)

    def ready(_server: grpc.aio.Server, port: int) -> None:
        log.info("serve.listening", address=settings.address, port=port)

    try:
        if demo:
            log.info("demo.seeded", runs=seed_demo_if_empty(db, initial_catalog(settings, db)[0]))
        asyncio.run(serve(settings, db=db, on_ready=ready))
    except PlannerError as exc:
        _fail(exc)
    finally:
        db.dispose()


def _fail(exc: PlannerError) -> NoReturn:
    typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(2) from None
