"""Spend forecasts backtested with a rolling origin: interval coverage and MAPE vs a seasonal-naive baseline.

Histories (all in one run):
- synthetic: 365 days of seeded daily spend (trend, weekly cycle, 8% log-normal noise) for `--seeds` seeds;
  ETS (auto) and, with `--sarimax`, SARIMAX(1,1,1)(0,1,1,7); horizon 14 days, 12 folds;
- synthetic with a +30% level shift 40 days before the end (a regime change the models have not seen);
- store: the project's seeded demo history (30 days of timestamped runs, priced at the default catalog's
  unit costs), loaded into a temporary SQLite store and read back through `RunStore.load_frame`;
  horizon 7, as many folds as 30 days allow;
- azure: the Azure conv trace priced as llama-3.1-70b on H100 (tokens x catalog unit cost). The trace spans
  ~58 minutes, so it is aggregated PER MINUTE (a daily or even hourly series cannot be built from it), no
  seasonality; horizon 5 minutes, 12 folds. This is a short-horizon check of the method, not a spend forecast.

Coverage is the share of actual periods inside the 80% / 95% prediction intervals (nominal 0.80 / 0.95).
Usage: python bench/forecast_backtest.py [--seeds N] [--sarimax] [--json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

from planner.catalog import load_catalog
from planner.demo import seed_demo
from planner.store import Database, RunStore
from simulator.costmodel import CostModel
from simulator.forecast import backtest
from simulator.history import runs_spend, synthetic_daily, trace_span, trace_spend

TRACE = Path(__file__).resolve().parents[2] / "shared" / "data" / "traces" / "azure_llm_2023_conv.csv"
LEVELS = (0.8, 0.95)


def run(name: str, series: pd.Series, horizon: int, model: str, season: int, folds: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    bt = backtest(series, horizon, LEVELS, model, season, folds, min_train=max(3 * season, 10))
    out = {"history": name, "periods": len(series), "wall_s": time.perf_counter() - t0, **bt.to_dict()}
    return out


def store_history(cm: CostModel) -> pd.Series:
    with tempfile.TemporaryDirectory() as tmp:
        db = Database(f"sqlite:///{tmp}/bench.db")
        seed_demo(db, cm.catalog, n_queries=1000, seed=0)
        frame = RunStore(db).load_frame()
        db.dispose()
    return runs_spend(frame, cm).spend


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--sarimax", action="store_true")
    ap.add_argument("--trace", default=str(TRACE))
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    cm = CostModel(load_catalog())
    rows: list[dict[str, Any]] = []
    for seed in range(args.seeds):
        y = synthetic_daily(365, seed).spend
        rows.append(run(f"synthetic seed {seed}", y, 14, "auto", 7, 12))
        if args.sarimax:
            rows.append(run(f"synthetic seed {seed}", y, 14, "sarimax", 7, 12))
    shifted = synthetic_daily(365, 100, step_day=325, step_factor=1.3).spend
    rows.append(run("synthetic +30% shift at day 325", shifted, 14, "auto", 7, 12))
    rows.append(run("store demo history (30 days)", store_history(cm), 7, "auto", 7, 12))
    first, last = trace_span(args.trace)
    minute = trace_spend(args.trace, cm, "llama-3.1-70b", "H100-SXM5-80GB", "min").spend
    rows.append(run("azure conv per minute", minute, 5, "auto", 1, 12))
    synth = [r for r in rows if r["history"].startswith("synthetic seed") and r["model"] == "ets"]
    summary = {
        "synthetic_ets_mean": {
            "mape": sum(r["mape"] for r in synth) / len(synth),
            "baseline_mape": sum(r["baseline_mape"] for r in synth) / len(synth),
            "coverage_80": sum(r["coverage"]["0.8"] for r in synth) / len(synth),
            "coverage_95": sum(r["coverage"]["0.95"] for r in synth) / len(synth),
        },
        "azure_trace_span": [str(first), str(last)],
    }
    if args.json:
        print(json.dumps({"rows": rows, "summary": summary}))
        return
    print(f"{'history':34} {'model':8} {'n':>4} {'folds':>5} {'h':>3} {'MAPE':>7} {'naive':>7} "
          f"{'cov80':>6} {'cov95':>6} {'naive80':>7} {'naive95':>7} {'s':>5}")  # fmt: skip
    for r in rows:
        print(
            f"{r['history']:34} {r['model']:8} {r['periods']:4d} {r['folds']:5d} {r['horizon']:3d} "
            f"{r['mape']:7.3f} {r['baseline_mape']:7.3f} {r['coverage']['0.8']:6.3f} "
            f"{r['coverage']['0.95']:6.3f} {r['baseline_coverage']['0.8']:7.3f} "
            f"{r['baseline_coverage']['0.95']:7.3f} {r['wall_s']:5.1f}"
        )
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
