"""CLI: `planner evaluate` -- the predictor's evaluation report on a held-out query split, beside baselines.

Per tier and pooled: AUC, Brier score, log-loss, expected calibration error; token forecast error (median
absolute log error of p50, p90 coverage); a reliability diagram PNG; side by side with the per-tier prior, kNN
(RouterBench-style) and matrix factorisation (RouteLLM-style) fitted on the same training queries.
`--artifact` evaluates a saved predictor (skops bytes from `models.persist`) instead of training one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from planner.cli.app import RunsOption, RunsUrlOption, app
from planner.errors import PlannerError


def _table(report: dict[str, Any]) -> Table:
    table = Table(title=f"held-out split: {report['n_test_queries']} queries, {report['n_test_runs']} runs")
    columns = ("forecaster", "mean_tier_auc", "pooled_auc", "brier", "log_loss", "ece", "token_mdale")
    for col in (*columns, "token_p90_coverage", "fit_s"):
        table.add_column(col)
    for row in report["summary"]:
        cells = [row.get(c) for c in (*columns, "token_p90_coverage", "fit_s")]
        table.add_row(*(f"{v:.4f}" if isinstance(v, float) else "-" if v is None else str(v) for v in cells))
    return table


@app.command("evaluate")
def evaluate_predictor(
    runs: RunsOption = None,
    database_url: RunsUrlOption = None,
    task: Annotated[str | None, typer.Option(help="Only runs of this task (store only).")] = None,
    catalog: Annotated[Path | None, typer.Option(help="Catalog TOML (default: packaged).")] = None,
    test_fraction: Annotated[float, typer.Option(help="Held-out share of queries.")] = 0.3,
    drop_cells: Annotated[
        float, typer.Option(help="Share of (query, tier) cells removed from training (sparsity test).")
    ] = 0.0,
    baselines: Annotated[str, typer.Option(help="Comma-separated: prior,knn,mf (empty: none).")] = (
        "prior,knn,mf"
    ),
    artifact: Annotated[
        Path | None, typer.Option(help="Evaluate this saved predictor (skops) instead of training one.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Split seed.")] = 0,
    plot: Annotated[Path | None, typer.Option(help="Write the reliability diagram PNG here.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print exactly one JSON object.")] = False,
) -> None:
    """Evaluate the difficulty predictor on held-out queries beside the prior, kNN and MF baselines."""
    from models import persist
    from models.evaluate import drop_cells as drop
    from models.evaluate import split_queries
    from models.report import compare, make_forecaster, names_from
    from planner.cli.policy import runs_and_catalog

    if not 0.0 < test_fraction < 1.0:
        raise typer.BadParameter(f"--test-fraction must be in (0, 1), got {test_fraction}")
    if not 0.0 <= drop_cells < 1.0:
        raise typer.BadParameter(f"--drop-cells must be in [0, 1), got {drop_cells}")
    try:
        # run models and strategies the catalog lacks under their own names are mapped onto it first
        cat, frame, _ = runs_and_catalog(runs, database_url, task, catalog, None)
        name_map = cat.run_name_map()
        train, test = split_queries(frame, test_fraction, seed)
        if drop_cells > 0:
            train = drop(train, drop_cells, seed)
        to_fit: dict[str, Any] = {}
        fitted: dict[str, Any] = {}
        if artifact is not None:
            fitted["predictor"] = persist.loads(artifact.read_bytes())
        else:
            to_fit["predictor"] = make_forecaster("predictor", name_map, seed)
        for name in names_from(baselines):
            to_fit[name] = make_forecaster(name, name_map, seed)
        config = {"test_fraction": test_fraction, "drop_cells": drop_cells, "seed": seed}
        report = compare(train, test, to_fit, fitted, config=config)
        if plot is not None:
            from models.plots import reliability_png

            reliability_png(report, plot, title=f"held-out {test_fraction:.0%} of queries")
    except PlannerError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    except OSError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    out = report.to_dict()
    if plot is not None:
        out["plot"] = str(plot)
    if as_json:
        typer.echo(json.dumps(out))
        return
    Console().print(_table(out))
    if plot is not None:
        typer.echo(f"reliability diagram: {plot}")
