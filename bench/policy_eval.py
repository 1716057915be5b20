"""Policy evaluation benchmark: replay historical runs out of fold and compare the planner with baselines.

    python bench/policy_eval.py [--runs PATH] [--predictor auto|prior|difficulty] [--folds 5] [--json]

Fits the forecaster per fold (k-fold query-level cross-fitting: every query is held out once), prices options
with the default catalog and the one cost model, sweeps the planner's budget through `planner.solve`, and
prints the acceptance figures of the allocation issue (quality at the best single model's cost, cost to reach
its accuracy, AIQ vs the threshold and kNN routers, predicted vs realised quality and spend per plan) with
APGR / CPT / AIQ of every router, the simulated strategy figures, the wall time of each stage, and writes the
quality-vs-cost PNG (`--plot`, default bench/out/policy_quality_cost.png; `--figure` a copy to commit).
With `--json` it prints exactly one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from models.report import json_safe

REPO = Path(__file__).resolve().parents[1]
DEFAULT_RUNS = REPO.parent / "shared" / "data" / "runs" / "gsm8k_zeroeval.csv.gz"


def run(args: argparse.Namespace) -> dict[str, Any]:
    from models.data import read_run_csv
    from planner.catalog import load_catalog
    from planner.evaluation.forecasters import fit_forecaster
    from planner.evaluation.harness import evaluate
    from planner.evaluation.plots import plot_quality_cost
    from simulator.costmodel import CostModel

    t0 = time.perf_counter()
    catalog = load_catalog()
    name_map = catalog.run_name_map()
    runs = read_run_csv(args.runs, name_map)
    t_load = time.perf_counter() - t0
    t1 = time.perf_counter()
    report = evaluate(
        runs,
        catalog,
        CostModel(catalog),
        lambda train: fit_forecaster(args.predictor, train, name_map),
        seed=args.seed,
        folds=args.folds,
        simulate=not args.no_simulate,
    )
    t_eval = time.perf_counter() - t1
    plot_quality_cost(report, args.plot)
    if args.figure:
        Path(args.figure).parent.mkdir(parents=True, exist_ok=True)
        plot_quality_cost(report, args.figure, dpi=70)
    fig = report.figures
    return {
        "runs": str(args.runs),
        "n_runs": len(runs),
        "n_queries": report.n_test_queries,
        "folds": args.folds,
        "forecaster": report.forecaster,
        "targets": fig["targets"],
        "best_single": fig["best_single"],
        "weak": fig["weak"],
        "oracle": fig["oracle"],
        "routers": fig["routers"],
        "planner_at_best_single_cost": fig["planner_at_best_single_cost"],
        "planner_reaches_best_single": fig["planner_reaches_best_single"],
        "best_single_ex_ante": fig["best_single_ex_ante"],
        "planner_at_ex_ante_best_single_cost": fig["planner_at_ex_ante_best_single_cost"],
        "planner_reaches_ex_ante_best_single": fig["planner_reaches_ex_ante_best_single"],
        "planner_calibration": fig["planner_calibration"],
        "forecast_resolution": fig["forecast_resolution"],
        "simulated": fig.get("simulated"),
        "recorded_strategies": fig.get("recorded_strategies"),
        "coverage": fig.get("coverage"),
        "planner_points": [p.to_dict() for p in report.policy("planner").points],
        "notes": list(report.notes),
        "seconds": {"load": t_load, "evaluate": t_eval},
        "plot": str(args.plot),
        "figure": str(args.figure) if args.figure else None,
    }


def _print(out: dict[str, Any]) -> None:
    print(
        f"{out['n_queries']} queries replayed out of fold ({out['folds']} folds), "
        f"forecaster {out['forecaster']}"
    )
    b = out["best_single"]
    print(f"best single: {b['tier']} quality {b['quality']:.4f} at ${b['cost_usd']:.3g}/query")
    for name, t in out["targets"].items():
        print(f"  {'MET ' if t['met'] else 'MISS'} {name}: {json.dumps(json_safe(t))}")
    print(f"{'router':<26}{'AIQ':>8}{'APGR':>8}{'CPT50':>8}{'CPT80':>8}{'CPT95':>8}")
    for name, r in out["routers"].items():
        vals = [r.get(k, float("nan")) for k in ("aiq", "apgr", "cpt50", "cpt80", "cpt95")]
        print(f"{name:<26}" + "".join(f"{v:>8.4f}" for v in vals))
    if out["simulated"]:
        print(f"simulated: {json.dumps(json_safe(out['simulated']))}")
    print(f"seconds: {out['seconds']}; plot {out['plot']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=DEFAULT_RUNS)
    parser.add_argument(
        "--predictor",
        default="auto",
        help="auto | prior | difficulty | difficulty+interaction | difficulty-raw",
    )
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-simulate", action="store_true")
    parser.add_argument("--plot", type=Path, default=REPO / "bench" / "out" / "policy_quality_cost.png")
    parser.add_argument("--figure", type=Path, default=None, help="also write a small PNG here (to commit)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if not args.runs.exists():
        print(f"runs file not found: {args.runs}", file=sys.stderr)
        return 2
    out = run(args)
    if args.json:
        print(json.dumps(json_safe(out)))
    else:
        _print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
