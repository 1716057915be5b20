"""`planner simulate SCENARIO... --report DIR`: project spend, latency, energy and CO2 of scenario files.

Several scenario files are simulated (replicates spread over local processes, or over a Ray cluster with
`--ray-address` and the `distributed` extra) and compared side by side; `--report DIR` writes report.md,
report.html, result.json and PNG plots there. `--runs FILE` fits the per-tier prior forecaster on a
historical runs file to fill in each route's expected quality; with `--policy planner` the planner decides
every request instead of the scenario's routes (`planner.sim_policy`, in this process). With `--json`
exactly one JSON object is printed: ``{"scenarios": [...], "report": path-or-null}``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from planner.catalog import load_catalog
from planner.cli.app import app
from planner.errors import InvalidArgumentError, PlannerError

if TYPE_CHECKING:  # the simulator is imported when a command runs: `planner --help` stays fast
    from simulator.result import SimulationResult
    from simulator.scenario import Scenario


def _with_quality(scenario: Scenario, runs: Path) -> Scenario:
    from planner.sim_quality import prior_from_runs, quality_table

    catalog = load_catalog(scenario.catalog or None)
    table = quality_table(
        prior_from_runs(runs, catalog), catalog, [(r.tier, r.strategy) for r in scenario.routes]
    )
    routes = tuple(
        r
        if r.quality == r.quality
        else r.model_copy(update={"quality": table.get((r.tier, r.strategy), r.quality)})
        for r in scenario.routes
    )
    return scenario.model_copy(update={"routes": routes})


def _load(paths: list[Path], replicates: int | None, seed: int | None, runs: Path | None) -> list[Scenario]:
    from simulator.scenario import load_scenario

    out = []
    for p in paths:
        sc = load_scenario(p)
        update: dict[str, Any] = {}
        if replicates is not None:
            update["replicates"] = replicates
        if seed is not None:
            update["seed"] = seed
        sc = sc.model_copy(update=update)
        out.append(_with_quality(sc, runs) if runs is not None else sc)
    return out


def _planner_runs(
    scenarios: list[Scenario], runs: Path | None, budget: float, slo: float
) -> list[SimulationResult]:
    """Simulate each scenario with the planner's decisions (prior forecaster fitted on `runs`), in process."""
    from planner.sim_policy import PlannerSimPolicy
    from planner.sim_quality import prior_from_runs
    from simulator.costmodel import CostModel
    from simulator.run import simulate as run_one

    if runs is None:
        raise InvalidArgumentError.for_field(
            "runs", None, "--policy planner needs --runs FILE for its forecaster"
        )
    out = []
    for sc in scenarios:
        catalog = load_catalog(sc.catalog or None)
        cost_model = CostModel(catalog)
        policy = PlannerSimPolicy(
            catalog,
            cost_model,
            prior_from_runs(runs, catalog),
            [f.target for f in sc.fleet],
            budget_usd_per_request=budget,
            latency_slo_s=slo,
        )
        named = sc.model_copy(update={"name": f"{sc.name}+planner"})
        out.append(run_one(named, catalog=catalog, cost_model=cost_model, policy=policy))
    return out


def _print(results: list[SimulationResult], report: Path | None) -> None:
    from simulator.report import HEADLINE

    table = Table(title="simulation (mean over replicates)")
    table.add_column("metric")
    for r in results:
        table.add_column(f"{r.scenario} (x{r.replicates})")
    for key, label, fmt in HEADLINE:
        cells = []
        for r in results:
            m = r.metrics.get(key, {}).get("mean", float("nan"))
            cells.append("n/a" if m != m else fmt.format(m))
        table.add_row(label, *cells)
    console = Console()
    console.print(table)
    if report is not None:
        console.print(f"report: {report}")


@app.command("simulate")
def simulate(
    scenarios: Annotated[list[Path], typer.Argument(help="Scenario TOML file(s), compared side by side.")],
    report: Annotated[
        Path | None, typer.Option("--report", help="Write the report into this folder.")
    ] = None,
    replicates: Annotated[int | None, typer.Option(help="Override each scenario's replicates.")] = None,
    seed: Annotated[int | None, typer.Option(help="Override each scenario's seed.")] = None,
    workers: Annotated[int, typer.Option(help="Local worker processes (1 = in this process).")] = 1,
    ray_address: Annotated[str | None, typer.Option(help="Run replicates on this Ray cluster.")] = None,
    runs: Annotated[Path | None, typer.Option(help="Runs file for the routes' expected quality.")] = None,
    policy: Annotated[
        str, typer.Option(help="'fixed' (the scenario's routes) or 'planner' (decisions from --runs).")
    ] = "fixed",
    budget_usd_per_request: Annotated[
        float, typer.Option(help="Planner policy: spend cap per request.")
    ] = 0.0,
    latency_slo_s: Annotated[float, typer.Option(help="Planner policy: p90 latency bound per option.")] = 0.0,
    html: Annotated[bool, typer.Option(help="Also write report.html.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print exactly one JSON object.")] = False,
) -> None:
    """Simulate scenario files and compare them (spend, latency, SLO, energy, CO2, quality)."""
    from simulator.report import write_report
    from simulator.sweep import run_sweep

    try:
        if policy not in ("fixed", "planner"):
            raise InvalidArgumentError.for_field("policy", policy, "must be 'fixed' or 'planner'")
        if policy == "planner":
            results = _planner_runs(
                _load(scenarios, replicates, seed, None), runs, budget_usd_per_request, latency_slo_s
            )
        else:
            results = run_sweep(
                _load(scenarios, replicates, seed, runs), workers=workers, ray_address=ray_address
            )
        path = write_report(results, report, html_too=html) if report is not None else None
    except PlannerError as exc:
        if as_json:
            typer.echo(json.dumps({"error": type(exc).__name__, "message": str(exc)}))
        else:
            Console(stderr=True).print(f"[red]error:[/red] {exc}")
        raise typer.Exit(code=2) from None
    if as_json:
        payload = {"scenarios": [r.to_dict() for r in results], "report": str(path) if path else None}
        typer.echo(json.dumps(payload, allow_nan=False))
        return
    _print(results, path)
