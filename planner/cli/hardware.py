"""`planner hardware price` and `planner hardware calibrate`: the hardware & cost model from the command line.

`price` prints the unit cost of every (tier, target) placement of a catalog (or of one tier / target), with
the inputs each one extrapolates from; `calibrate CSV` refits the efficiency factors on ML.ENERGY-format
measurements, reports in-sample and leave-one-model-out errors and writes the calibration JSON when `--out`
is given. With `--json` each prints exactly one JSON object.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from planner.catalog import load_catalog
from planner.cli.app import app

# The cost model is imported when a command runs, so `planner --help` stays fast.
if TYPE_CHECKING:
    from simulator.costmodel import CostModel

hardware_app = typer.Typer(name="hardware", help="Hardware performance & cost model.", no_args_is_help=True)
app.add_typer(hardware_app, name="hardware")


def _unit_rows(model: CostModel, tier: str | None, target: str | None) -> list[dict[str, Any]]:
    cat = model.catalog
    rows = []
    for t in cat.tiers if tier is None else (cat.tier(tier),):
        for g in cat.placements(t):
            if target is not None and g.name != target:
                continue
            unit = asdict(model.unit_cost(t, g))
            unit["price_model"] = g.price_model.value
            unit["extrapolation"] = list(unit["extrapolation"])
            rows.append(unit)
    return rows


def _short(note: str) -> str:
    """The input named by a note (the table keeps the input, the JSON the whole reason)."""
    return note.split(" was ")[0].split(" is ")[0]


@hardware_app.command("price")
def price(
    tier: Annotated[str | None, typer.Option(help="Only this tier.")] = None,
    target: Annotated[str | None, typer.Option(help="Only this target.")] = None,
    catalog: Annotated[
        Path | None, typer.Option("--catalog", help="Catalog TOML (default: packaged).")
    ] = None,
    calibration: Annotated[
        Path | None, typer.Option(help="Calibration JSON (default: packaged H100).")
    ] = None,
    batch: Annotated[float | None, typer.Option(help="Operating decode batch of device targets.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Unit costs (per token) of tiers on targets at their operating point."""
    from simulator.calibration import load_calibration
    from simulator.costmodel import CostModel

    model = CostModel(load_catalog(catalog), load_calibration(calibration), operating_batch=batch)
    rows = _unit_rows(model, tier, target)
    if as_json:
        typer.echo(json.dumps({"calibration": model.calibration.source, "units": rows}))
        return
    table = Table(title=f"unit costs ({model.calibration.source})")
    for col in (
        "tier",
        "target",
        "price",
        "dev x batch",
        "$/M out",
        "$/M in",
        "ms/token",
        "J/out token",
        "notes",
    ):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r["tier"],
            r["target"],
            r["price_model"],
            f"{r['n_devices']} x {r['batch_size']:g}",
            f"{r['usd_per_output_token'] * 1e6:.3f}",
            f"{r['usd_per_input_token'] * 1e6:.3f}",
            f"{r['s_per_output_token'] * 1e3:.1f}",
            f"{r['energy_j_per_output_token']:.3f}" + (" (est.)" if r["energy_is_estimate"] else ""),
            "; ".join(_short(n) for n in r["extrapolation"]),
        )
    Console().print(table)


@hardware_app.command("calibrate")
def calibrate_cmd(
    csv: Annotated[Path, typer.Argument(help="ML.ENERGY-format measurements (mlenergy_h100.csv).")],
    out: Annotated[Path | None, typer.Option(help="Write the calibration JSON here.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Fit the efficiency factors on measured rows; report in-sample and leave-one-model-out errors."""
    from simulator.calibrate import calibrate, load_measurements

    cal = calibrate(load_measurements(csv), f"{csv.name}, fitted by planner hardware calibrate")
    if out is not None:
        out.write_text(json.dumps(cal.to_dict(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    if as_json:
        typer.echo(json.dumps(cal.to_dict()))
        return
    for name, value in cal.metrics.items():
        typer.echo(f"{name:28s} {value:.4g}")
    for name, value in cal.efficiency.as_dict().items():
        typer.echo(f"  {name:26s} {value:.4g}")
