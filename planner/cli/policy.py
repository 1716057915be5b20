"""CLI: `planner evaluate-policy` -- replay held-out runs, sweep the budget, compare with baselines."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from planner.catalog import load_catalog
from planner.cli.app import PricesOption, RunsOption, RunsUrlOption, app, fail
from planner.errors import InvalidArgumentError, PlannerError

if TYPE_CHECKING:  # pandas and the models are imported when the command runs: `planner --help` stays fast
    import pandas as pd


def load_runs(
    runs: Path | None, database_url: str | None, task: str | None, name_map: dict[str, str]
) -> pd.DataFrame:
    """Prepared runs from a CSV/Parquet file (ZeroEval column names accepted) or from the store."""
    import pandas as pd

    from models.data import prepare_runs
    from planner.ingest import preset

    if runs is not None:
        try:
            raw = pd.read_parquet(runs) if runs.suffix == ".parquet" else pd.read_csv(runs)
        except OSError as exc:
            raise InvalidArgumentError.for_field("runs", str(runs), f"cannot read: {exc.strerror}") from None
        raw = raw.rename(columns=preset("zeroeval"))
        return prepare_runs(raw, name_map)
    from planner.cli.app import database_url as resolve_url
    from planner.store import Database, RunStore

    frame = RunStore(Database(resolve_url(database_url))).load_frame(task=task)
    return prepare_runs(frame, name_map)


def runs_and_catalog(
    runs: Path | None,
    database_url: str | None,
    task: str | None,
    catalog: Path | None,
    prices: Path | None,
) -> tuple[Any, pd.DataFrame, tuple[str, ...]]:
    """The catalog extended with a tier (strategy) for every run model (strategy) it does not know
    (`planner.derived_tiers`), the prepared runs mapped onto it, and a note per derived entry."""
    from planner.derived_tiers import extend_catalog, remap_runs
    from planner.prices import price_tables
    from planner.settings import load_settings

    cat = load_catalog(catalog)
    frame = load_runs(runs, database_url, task, cat.run_name_map())
    settings = load_settings()
    path = prices if prices is not None else settings.price_table
    ext = extend_catalog(cat, frame, price_tables(path, settings.list_prices))
    return ext.catalog, remap_runs(frame, ext), ext.notes


@app.command("evaluate-policy")
def evaluate_policy(
    runs: RunsOption = None,
    database_url: RunsUrlOption = None,
    task: Annotated[str | None, typer.Option(help="Only runs of this task (store only).")] = None,
    catalog: Annotated[Path | None, typer.Option(help="Catalog TOML (default: packaged).")] = None,
    prices: PricesOption = None,
    predictor: Annotated[
        str, typer.Option(help="auto | prior | difficulty | difficulty+interaction | difficulty-raw")
    ] = "auto",
    folds: Annotated[
        int, typer.Option(help="Cross-fitting folds (every query held out once); 1 = one held-out split.")
    ] = 5,
    test_fraction: Annotated[float, typer.Option(help="Held-out share of queries when --folds 1.")] = 0.3,
    simulate: Annotated[
        bool, typer.Option(help="Add the simulated strategy figures (self-consistency, all strategies).")
    ] = True,
    seed: Annotated[int, typer.Option(help="Split seed.")] = 0,
    plot: Annotated[Path | None, typer.Option(help="Write the quality-vs-cost PNG here.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print exactly one JSON object.")] = False,
) -> None:
    """Replay a held-out split: planner vs single models, random mix, threshold, kNN and oracle."""
    from planner.evaluation.forecasters import fit_forecaster
    from planner.evaluation.harness import evaluate
    from simulator.costmodel import CostModel

    try:
        cat, frame, derived = runs_and_catalog(runs, database_url, task, catalog, prices)
        name_map = cat.run_name_map()
        report = evaluate(
            frame,
            cat,
            CostModel(cat),
            lambda train: fit_forecaster(predictor, train, name_map),
            test_fraction=test_fraction,
            seed=seed,
            folds=folds,
            simulate=simulate,
        )
        report = replace(report, notes=(*derived, *report.notes))
    except (PlannerError, ValueError) as exc:
        fail(exc, as_json)
    if plot is not None:
        from planner.evaluation.plots import plot_quality_cost

        plot_quality_cost(report, plot)
    if as_json:
        out = report.to_dict()
        out["plot"] = str(plot) if plot else None
        from models.report import json_safe

        typer.echo(json.dumps(json_safe(out)))
        return
    _print(report)


def _print(report: Any) -> None:
    fig = report.figures
    table = Table(title=f"Routers on {report.n_test_queries} held-out queries ({report.forecaster})")
    for col in ("router", "AIQ", "APGR", "CPT50", "CPT80", "CPT95"):
        table.add_column(col)
    for name, r in fig["routers"].items():
        table.add_row(
            name, *(f"{r.get(k, float('nan')):.4f}" for k in ("aiq", "apgr", "cpt50", "cpt80", "cpt95"))
        )
    console = Console()
    console.print(table)
    for name, t in fig["targets"].items():
        console.print(f"[{'green' if t['met'] else 'red'}]{'MET ' if t['met'] else 'MISS'}[/] {name}: {t}")
    for key in (
        "best_single",
        "planner_at_best_single_cost",
        "planner_reaches_best_single",
        "planner_aiq_beats",
        "planner_calibration",
        "recorded_strategies",
        "coverage",
        "simulated",
    ):
        if key in fig:
            console.print(f"{key}: {fig[key]}")
    for note in report.notes:
        console.print(f"note: {note}")
