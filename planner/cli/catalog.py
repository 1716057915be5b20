"""`planner catalog show|validate|derive`: inspect and check catalog TOML files, and see what the planner
makes of run models and strategies a catalog lacks.

`show` prints the tiers, strategies and targets of a catalog (the packaged default unless `--path` is given)
as rich tables, or with `--json` exactly one JSON object. `validate FILE` prints every violation with its
field path and value and exits with status 1 when the file is not a valid catalog.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from planner.catalog import Catalog, PriceModel, load_catalog
from planner.cli.app import PricesOption, RunsOption, RunsUrlOption, app, fail
from planner.errors import CatalogError

catalog_app = typer.Typer(name="catalog", help="Inspect and validate catalogs.", no_args_is_help=True)
app.add_typer(catalog_app, name="catalog")


def summary(catalog: Catalog) -> dict[str, Any]:
    """A JSON-ready summary: counts, content hash and one row per tier, strategy and target."""
    tiers = [
        {
            "name": t.name,
            "open_weights": t.open_weights,
            "provider": t.provider,
            "total_params_b": t.total_params_b,
            "active_params_b": t.active_params_b,
            "precision": t.precision,
            "context_length": t.context_length,
            "reasoning": t.reasoning,
            "run_names": list(t.run_names),
            "strategies": list(t.strategies),
            "targets": [x.name for x in catalog.placements(t)],
        }
        for t in catalog.tiers
    ]
    strategies = [
        {
            "name": s.name,
            "kind": s.kind.value,
            "samples": s.samples,
            "serial_steps": s.serial_steps,
            "output_multiplier": s.output_multiplier,
            "high_compute": s.high_compute,
        }
        for s in catalog.strategies
    ]
    targets = [
        {
            "name": t.name,
            "family": t.family.value,
            "price_model": t.price_model.value,
            "provider": t.provider,
            "region": t.region,
            "memory_gb": t.memory_gb,
            "max_devices": t.max_devices,
            "hourly_usd": t.hourly_usd,
            "hosted_tiers": sorted(t.token_prices),
        }
        for t in catalog.targets
    ]
    return {
        "name": catalog.name,
        "content_hash": catalog.content_hash(),
        "counts": {
            "tiers": len(catalog.tiers),
            "strategies": len(catalog.strategies),
            "targets": len(catalog.targets),
            "regions": len(catalog.regions),
            "tenants": len(catalog.tenants),
            "combinations": sum(1 for _ in catalog.combinations()),
        },
        "tiers": tiers,
        "strategies": strategies,
        "targets": targets,
        "regions": [
            {"name": r.name, "grid_gco2_per_kwh": r.grid_gco2_per_kwh, "pue": r.pue} for r in catalog.regions
        ],
        "tenants": [t.name for t in catalog.tenants],
    }


def _tier_table(catalog: Catalog) -> Table:
    table = Table(title="Model tiers")
    table.add_column("tier", no_wrap=True)
    for col in ("weights", "params B (active)", "provider", "strategies", "targets"):
        table.add_column(col)
    for t in catalog.tiers:
        table.add_row(
            t.name + (" (reasoning)" if t.reasoning else ""),
            "open" if t.open_weights else "closed",
            f"{t.total_params_b:g} ({t.active_params_b:g})",
            t.provider,
            str(len(t.strategies)),
            str(len(catalog.placements(t))),
        )
    return table


def _strategy_table(catalog: Catalog) -> Table:
    table = Table(title="Strategies")
    for col in ("strategy", "kind", "samples", "steps", "x tokens", "high compute"):
        table.add_column(col)
    for s in catalog.strategies:
        table.add_row(
            s.name,
            s.kind.value,
            str(s.samples),
            str(s.serial_steps),
            f"{s.output_multiplier:.2f}",
            "yes" if s.high_compute else "",
        )
    return table


def _target_table(catalog: Catalog) -> Table:
    table = Table(title="Targets")
    table.add_column("target", no_wrap=True)
    for col in ("family", "price", "memory", "region", "hosts"):
        table.add_column(col)
    for t in catalog.targets:
        if t.price_model is PriceModel.PER_TOKEN:
            price, memory, hosts = "per token", "-", f"{len(t.token_prices)} tiers"
        else:
            price = f"${t.hourly_usd:.3f}/h ({t.price_model.value})"
            memory = f"{t.memory_gb:g} GB x {t.max_devices}"
            hosts = f"{sum(1 for tier in catalog.tiers if catalog.fits(tier, t))} tiers"
        table.add_row(t.name, t.family.value, price, memory, t.region, hosts)
    return table


def _print_errors(console: Console, exc: CatalogError) -> None:
    console.print(f"[red]{exc.message}[/red]")
    for v in exc.violations:
        console.print(f"  {v.field} = {v.value!r}: {v.reason}", markup=False, highlight=False)


@catalog_app.command("show")
def show(
    path: Annotated[Path | None, typer.Option("--path", help="Catalog TOML file (default: packaged)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object")] = False,
) -> None:
    """Summarise a catalog: tiers, strategies and targets."""
    try:
        catalog = load_catalog(path)
    except CatalogError as exc:
        if as_json:
            typer.echo(json.dumps(_error_json(exc)))
        else:
            _print_errors(Console(stderr=True), exc)
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(json.dumps(summary(catalog)))
        return
    console = Console()
    console.print(f"catalog [bold]{catalog.name}[/bold]  version {catalog.content_hash()}")
    console.print(_tier_table(catalog))
    console.print(_strategy_table(catalog))
    console.print(_target_table(catalog))


def _error_json(exc: CatalogError) -> dict[str, Any]:
    return {
        "valid": False,
        "message": exc.message,
        "violations": [
            {"field": v.field, "value": repr(v.value), "reason": v.reason} for v in exc.violations
        ],
    }


@catalog_app.command("validate")
def validate(
    file: Annotated[Path, typer.Argument(help="Catalog TOML file to check")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object")] = False,
) -> None:
    """Check a catalog file; print each violation (field path, value, reason); exit 1 when invalid."""
    try:
        catalog = load_catalog(file)
    except CatalogError as exc:
        if as_json:
            typer.echo(json.dumps(_error_json(exc)))
        else:
            _print_errors(Console(), exc)
        raise typer.Exit(1) from None
    counts = summary(catalog)["counts"]
    if as_json:
        typer.echo(json.dumps({"valid": True, "content_hash": catalog.content_hash(), "counts": counts}))
    else:
        typer.echo(f"{file}: valid catalog {catalog.name!r}, version {catalog.content_hash()}, {counts}")


@catalog_app.command("derive")
def derive(
    runs: RunsOption = None,
    database_url: RunsUrlOption = None,
    path: Annotated[Path | None, typer.Option("--path", help="Catalog TOML file (default: packaged)")] = None,
    prices: PricesOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object")] = False,
) -> None:
    """What the planner makes of run models and strategies the catalog lacks: aliases, derived tiers and
    strategies (with how each was priced or measured), and what is left out."""
    from planner.cli.policy import runs_and_catalog
    from planner.errors import PlannerError

    try:
        base = load_catalog(path)
        extended, _, notes = runs_and_catalog(runs, database_url, None, path, prices)
    except (PlannerError, ValueError) as exc:
        fail(exc, as_json)
    known_tiers, known_strategies = {t.name for t in base.tiers}, {s.name for s in base.strategies}
    new = summary(extended)
    out = {
        "notes": list(notes),
        "derived_tiers": [t for t in new["tiers"] if t["name"] not in known_tiers],
        "derived_strategies": [s for s in new["strategies"] if s["name"] not in known_strategies],
        "content_hash": new["content_hash"],
    }
    if as_json:
        typer.echo(json.dumps(out))
        return
    console = Console()
    for note in notes:
        console.print(note, markup=False, highlight=False)
    if not notes:
        console.print("every run model and strategy is already in the catalog")
