"""Difficulty predictor quality on GSM8K (or any run file): held-out AUC / ECE beside kNN and MF baselines.

On a query-level 70/30 split (several seeds), in the same run:
- mean AUC over tiers, pooled AUC, Brier, log-loss, ECE, token error of the predictor and of the per-tier
  prior, kNN (RouterBench-style) and matrix-factorisation (RouteLLM-style) baselines fitted on the same
  queries;
- sparsity: the predictor refitted with a random 30% of the training (query, tier) cells removed, AUC drop;
- training time on all runs of the file, beside the prior baseline's fit time.

Usage: python bench/predictors_quality.py [PATH] [--seeds 0,1,2] [--plot out.png] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from models.data import default_run_name_map, read_run_csv
from models.evaluate import drop_cells, evaluate, split_queries
from models.report import compare, make_forecaster

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data" / "runs" / "gsm8k_zeroeval.csv.gz"


def one_seed(frame: Any, name_map: dict[str, str], seed: int, drop: float) -> dict[str, Any]:
    train, test = split_queries(frame, 0.3, seed)
    names = ("predictor", "prior", "knn", "mf")
    report = compare(
        train, test, {n: make_forecaster(n, name_map, seed) for n in names}, config={"seed": seed}
    )
    sparse_train = drop_cells(train, drop, seed)
    start = time.perf_counter()
    sparse_model = make_forecaster("predictor", name_map, seed).fit(sparse_train)
    sparse_fit_s = time.perf_counter() - start
    sparse_ev = evaluate("predictor_drop", sparse_model, test)
    full = report.by_name("predictor")
    return {
        "seed": seed,
        "report": report,
        "summary": report.to_dict()["summary"],
        "drop": {
            "fraction": drop,
            "train_runs": len(sparse_train),
            "mean_tier_auc": sparse_ev.mean_tier_auc,
            "pooled_auc": sparse_ev.pooled.auc,
            "ece": sparse_ev.pooled.ece,
            "auc_drop": full.mean_tier_auc - sparse_ev.mean_tier_auc,
            "pooled_auc_drop": (full.pooled.auc or 0) - (sparse_ev.pooled.auc or 0),
            "fit_s": sparse_fit_s,
        },
    }


def _row(result: dict[str, Any], name: str) -> dict[str, Any]:
    return next(r for r in result["summary"] if r["forecaster"] == name)


def train_all(frame: Any, name_map: dict[str, str]) -> dict[str, float]:
    out = {"runs": float(len(frame))}
    for name in ("predictor", "prior"):
        start = time.perf_counter()
        make_forecaster(name, name_map).fit(frame)
        out[f"{name}_fit_s"] = time.perf_counter() - start
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?", type=Path, default=DEFAULT)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--drop", type=float, default=0.3)
    parser.add_argument("--plot", type=Path, default=None)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    name_map = default_run_name_map()
    frame = read_run_csv(args.path, name_map)
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    results = []
    for seed in seeds:
        results.append(one_seed(frame, name_map, seed, args.drop))
        if not args.json:
            print(f"seed {seed} done", file=sys.stderr, flush=True)
    if args.plot is not None:
        from models.plots import reliability_png

        reliability_png(
            results[0]["report"], args.plot, title=f"{args.path.name}: held-out 30% (seed {seeds[0]})"
        )
    names = [row["forecaster"] for row in results[0]["summary"]]
    keys = ("mean_tier_auc", "pooled_auc", "brier", "log_loss", "ece", "token_mdale", "fit_s")
    mean = {name: {k: float(np.mean([_row(r, name)[k] for r in results])) for k in keys} for name in names}
    drop = {k: float(np.mean([r["drop"][k] for r in results])) for k in results[0]["drop"]}
    trained = train_all(frame, name_map)
    out = {
        "path": str(args.path),
        "runs": len(frame),
        "seeds": seeds,
        "mean_over_seeds": mean,
        "drop_cells": drop,
        "per_seed": [{"seed": r["seed"], "summary": r["summary"], "drop": r["drop"]} for r in results],
        "train_all": trained,
    }
    if args.json:
        print(json.dumps(out))
        return
    print(f"{out['runs']} runs, seeds {seeds}; means over seeds:")
    for name, vals in mean.items():
        print(f"  {name:10s} " + "  ".join(f"{k}={v:.4f}" for k, v in vals.items()))
    print("  drop 30% cells: " + "  ".join(f"{k}={v:.4f}" for k, v in drop.items()))
    print("  train on all runs: " + "  ".join(f"{k}={v:.2f}" for k, v in trained.items()))


if __name__ == "__main__":
    main()
