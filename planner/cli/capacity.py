"""`planner capacity plan` and `planner forecast`: capacity planning and spend forecasts on the command line.

`capacity plan` sizes the cheapest fleet for a workload (an Azure trace or Poisson arrivals) under a fixed
policy (`--route TIER:STRATEGY:SHARE`, repeatable) and an SLO, and confirms it by simulation
(`simulator.capacity_sim.plan_capacity`). `forecast` fits a spend forecast with prediction intervals and a
rolling-origin backtest on the store's runs (daily), a seeded synthetic history (daily), or an Azure trace
(per minute: the public traces span about an hour). With `--json` each prints exactly one JSON object.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from planner.catalog import PriceModel, load_catalog
from planner.cli.app import JsonOption, UrlOption, app, database_url, fail
from planner.errors import InvalidArgumentError, PlannerError

if TYPE_CHECKING:  # the simulator is imported by the commands that use it: `planner --help` stays fast
    from simulator.capacity import Route
    from simulator.costmodel import CostModel
    from simulator.history import SpendHistory
    from simulator.workload import Workload

capacity_app = typer.Typer(name="capacity", help="Capacity planning.", no_args_is_help=True)
app.add_typer(capacity_app, name="capacity")

CatalogOption = Annotated[Path | None, typer.Option("--catalog", help="Catalog TOML (default: packaged).")]
DEFAULT_ROUTES = ["llama-3.1-70b:single:0.6", "llama-3.1-8b:cot:0.3", "llama-3.1-8b:vote5:0.1"]


def parse_routes(specs: list[str]) -> list[Route]:
    from simulator.capacity import Route

    routes = []
    for i, spec in enumerate(specs):
        parts = spec.split(":")
        try:
            tier, strategy, share = parts[0], parts[1], float(parts[2]) if len(parts) > 2 else 1.0
        except (IndexError, ValueError):
            raise InvalidArgumentError.for_field(
                f"route[{i}]", spec, "expected TIER:STRATEGY[:SHARE]"
            ) from None
        routes.append(Route(tier, strategy, share))
    return routes


def parse_counts(specs: list[str]) -> dict[str, int]:
    out = {}
    for spec in specs:
        name, sep, count = spec.partition("=")
        if not sep or not count.isdigit():
            raise InvalidArgumentError.for_field("available", spec, "expected TARGET=COUNT")
        out[name] = int(count)
    return out


def _workload(trace: Path | None, time_scale: float, rate: float, duration: float) -> Workload:
    from simulator.workload import PoissonWorkload, TokenDist, TraceWorkload

    if trace is not None:
        return TraceWorkload(str(trace), "azure", time_scale=time_scale)
    return PoissonWorkload(
        input_tokens=TokenDist(1020.0, 0.9), output_tokens=TokenDist(129.0, 0.8), duration_s=duration,
        rate_per_s=rate,
    )  # fmt: skip


@capacity_app.command("plan")
def plan_command(
    route: Annotated[
        list[str] | None, typer.Option("--route", help="TIER:STRATEGY:SHARE of the policy (repeatable).")
    ] = None,
    trace: Annotated[Path | None, typer.Option("--trace", help="Azure trace CSV to replay.")] = None,
    time_scale: Annotated[float, typer.Option(help="Trace speed-up (2 = twice the rate).")] = 1.0,
    rate: Annotated[float, typer.Option(help="Poisson rate, req/s (without --trace).")] = 5.0,
    duration: Annotated[float, typer.Option(help="Poisson span, s (without --trace).")] = 1800.0,
    ttft: Annotated[float, typer.Option(help="SLO: time to first token, s.")] = 2.0,
    tpot: Annotated[float, typer.Option(help="SLO: time per output token, s.")] = 0.1,
    attainment: Annotated[float, typer.Option(help="SLO: share of requests meeting both.")] = 0.95,
    target: Annotated[
        list[str] | None,
        typer.Option("--target", help="Allowed target (repeatable; default: devices)."),
    ] = None,
    available: Annotated[
        list[str] | None, typer.Option("--available", help="TARGET=DEVICES available (repeatable).")
    ] = None,
    seeds: Annotated[int, typer.Option(help="Confirmation runs (seeds 0..n-1).")] = 2,
    headroom: Annotated[float, typer.Option(help="Plan on this share of measured capacity.")] = 0.9,
    catalog: CatalogOption = None,
    as_json: JsonOption = False,
) -> None:
    """Cheapest fleet meeting the SLO for the load and policy, confirmed by discrete-event simulation."""
    from simulator.capacity import Slo
    from simulator.capacity_sim import plan_capacity
    from simulator.costmodel import CostModel

    try:
        cat = load_catalog(catalog)
        targets = target or [g.name for g in cat.targets if g.price_model is not PriceModel.PER_TOKEN]
        result = plan_capacity(
            CostModel(cat),
            _workload(trace, time_scale, rate, duration),
            parse_routes(route or DEFAULT_ROUTES),
            Slo(ttft, tpot, attainment),
            targets=targets,
            available=parse_counts(available or []),
            seeds=tuple(range(max(1, seeds))),
            headroom=headroom,
        )
    except PlannerError as exc:
        fail(exc, as_json)
        return
    out = result.to_dict()
    if as_json:
        typer.echo(json.dumps(out, default=float))
        return
    _print_plan(out)


def _print_plan(out: dict[str, Any]) -> None:
    console = Console()
    table = Table("pool", "replicas", "share", "req/s per replica", "USD/h")
    for p in out["plan"]["pools"]:
        table.add_row(
            p["pool"], str(p["replicas"]), f"{p['share']:.2f}", f"{p['cap_rps_per_replica']:.2f}",
            f"{p['usd_per_hour']:.2f}",
        )  # fmt: skip
    console.print(table)
    status = "confirmed" if out["confirmed"] else "NOT confirmed"
    att = ", ".join(f"{a:.4f}" for a in out["simulated_attainment"])
    console.print(
        f"{out['usd_per_hour']:.2f} USD/h ({status} by simulation: attainment {att} vs "
        f"{out['slo']['attainment']}); analytic first plan {out['analytic_usd_per_hour']:.2f} USD/h; "
        f"{len(out['iterations'])} iteration(s)"
    )
    singles = ", ".join(f"{k} {v:.2f}" for k, v in out["single_target_usd_per_hour"].items())
    console.print(f"single-target fleets (analytic, USD/h): {singles}")


@app.command("forecast")
def forecast_command(
    horizon: Annotated[int, typer.Option(help="Periods ahead (days; minutes for --trace).")] = 30,
    level: Annotated[float, typer.Option(help="Prediction interval level.")] = 0.9,
    model: Annotated[str, typer.Option(help="auto, ets, holt, sarimax, seasonal_naive, naive.")] = "auto",
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's runs.")] = None,
    synthetic: Annotated[bool, typer.Option("--synthetic", help="Seeded synthetic daily history.")] = False,
    days: Annotated[int, typer.Option(help="Days of synthetic history.")] = 365,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic history.")] = 0,
    trace: Annotated[Path | None, typer.Option("--trace", help="Azure trace CSV (per-minute spend).")] = None,
    tier: Annotated[str, typer.Option(help="Tier serving the trace.")] = "llama-3.1-70b",
    target: Annotated[str | None, typer.Option(help="Target serving the trace (default cheapest).")] = None,
    folds: Annotated[int, typer.Option(help="Backtest folds.")] = 12,
    backtest_horizon: Annotated[
        int | None, typer.Option(help="Backtest horizon (default min(14, horizon)).")
    ] = None,
    catalog: CatalogOption = None,
    database_url_: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Spend forecast with prediction intervals, backtested (80%/95% coverage, MAPE vs seasonal naive)."""
    from simulator.costmodel import CostModel
    from simulator.forecast import backtest, forecast

    try:
        cm = CostModel(load_catalog(catalog))
        history, season = _history(cm, synthetic, days, seed, trace, tier, target, tenant, database_url_)
        fc = forecast(history.spend, horizon, level, model, season)
        bt_h = backtest_horizon or min(14, horizon)
        levels = tuple(sorted({0.8, 0.95, level}))
        bt = backtest(history.spend, bt_h, levels, model, season, folds)
    except PlannerError as exc:
        fail(exc, as_json)
        return
    out = {
        "source": history.source,
        "history_periods": len(history.spend),
        "history_start": history.spend.index[0].isoformat(),
        "history_end": history.spend.index[-1].isoformat(),
        "season": season,
        "skipped_runs": history.skipped_rows,
        "forecast": fc.to_dict(),
        "total_forecast_usd": float(fc.mean.sum()),
        "backtest": bt.to_dict(),
    }
    if as_json:
        typer.echo(json.dumps(out))
        return
    _print_forecast(out)


def _history(
    cm: CostModel,
    synthetic: bool,
    days: int,
    seed: int,
    trace: Path | None,
    tier: str,
    target: str | None,
    tenant: str | None,
    url: str | None,
) -> tuple[SpendHistory, int]:
    from simulator.history import runs_spend, synthetic_daily, trace_spend

    if synthetic:
        return synthetic_daily(days, seed), 7
    if trace is not None:
        return trace_spend(str(trace), cm, tier, target, "min"), 1
    from planner.servicers.forecasting import history_frame
    from planner.store import Database

    frame = history_frame(Database(database_url(url)), tenant)
    return runs_spend(frame, cm, tenant=tenant), 7


def _print_forecast(out: dict[str, Any]) -> None:
    console = Console()
    fc, bt = out["forecast"], out["backtest"]
    console.print(
        f"{out['source']}: {out['history_periods']} periods; model {fc['model']}; "
        f"total forecast {out['total_forecast_usd']:.2f} USD"
    )
    table = Table("period", "mean", f"lo ({fc['level']:g})", "hi")
    for p in fc["points"][:14]:
        table.add_row(p["period"][:16], f"{p['mean']:.2f}", f"{p['lo']:.2f}", f"{p['hi']:.2f}")
    console.print(table)
    cov = ", ".join(f"{k}: {v:.3f}" for k, v in bt["coverage"].items())
    bcov = ", ".join(f"{k}: {v:.3f}" for k, v in bt["baseline_coverage"].items())
    console.print(
        f"backtest ({bt['folds']} folds x {bt['horizon']}): MAPE {bt['mape']:.3f} vs seasonal naive "
        f"{bt['baseline_mape']:.3f}; coverage {cov} (baseline {bcov})"
    )
