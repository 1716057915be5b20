"""Transfer to an unseen task: calibration before and after `recalibrate` on 200 runs of the new task.

Two settings, both judged on held-out queries of the new task:
- real -> synthetic: train on all of the run file (GSM8K), apply to each task of the planner's seeded demo
  history (`planner.demo`, tiers named as in the catalog, other prompts and difficulty);
- synthetic held-out task: train on three demo tasks, apply to the fourth (`reasoning`).
For each, the new task's queries are split 50/50 into a calibration pool and a test half; `recalibrate` sees
200 plain runs drawn from the pool (several draws: mean and range) and, for reference, the whole pool.

Usage: python bench/predictors_transfer.py [PATH] [--draws 5] [--sample 200] [--json]
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from models.data import plain_runs, prepare_runs, read_run_csv
from models.evaluate import Evaluation, evaluate, split_queries
from models.predictor import DifficultyPredictor
from planner.catalog import load_catalog
from planner.demo import demo_records

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data" / "runs" / "gsm8k_zeroeval.csv.gz"


def _figures(ev: Evaluation) -> dict[str, float]:
    return {
        "ece": ev.pooled.ece,
        "log_loss": ev.pooled.log_loss,
        "brier": ev.pooled.brier,
        "mean_tier_auc": ev.mean_tier_auc,
        "token_mdale": ev.tokens.median_abs_log_error if ev.tokens else float("nan"),
    }


def transfer(model: DifficultyPredictor, task_runs: pd.DataFrame, draws: int, sample: int) -> dict[str, Any]:
    pool, test = split_queries(plain_runs(task_runs), 0.5, 0)
    before = _figures(evaluate("before", model, test))
    after = []
    for d in range(draws):
        runs = pool.sample(min(sample, len(pool)), random_state=d)
        after.append(_figures(evaluate("after", copy.deepcopy(model).recalibrate(runs), test)))
    full = _figures(evaluate("pool", copy.deepcopy(model).recalibrate(pool), test))
    keys = list(before)
    return {
        "test_runs": len(test),
        "before": before,
        "after_mean": {k: float(np.mean([a[k] for a in after])) for k in keys},
        "after_min_max_ece": [min(a["ece"] for a in after), max(a["ece"] for a in after)],
        "after_whole_pool": {**full, "pool_runs": len(pool)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?", type=Path, default=DEFAULT)
    parser.add_argument("--draws", type=int, default=5)
    parser.add_argument("--sample", type=int, default=200)
    parser.add_argument("--demo-queries", type=int, default=3000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    catalog = load_catalog()
    name_map = catalog.run_name_map()
    demo = prepare_runs(pd.DataFrame(demo_records(catalog, args.demo_queries, seed=1)), name_map)
    real = read_run_csv(args.path, name_map)
    out: dict[str, Any] = {"sample": args.sample, "draws": args.draws, "settings": {}}
    model = DifficultyPredictor(run_name_map=name_map).fit(real)
    for task in sorted(demo["task"].unique()):
        out["settings"][f"{args.path.name} -> demo:{task}"] = transfer(
            model, demo[demo["task"] == task], args.draws, args.sample
        )
    held_out = "reasoning"
    model = DifficultyPredictor(run_name_map=name_map).fit(demo[demo["task"] != held_out])
    out["settings"][f"demo:other tasks -> demo:{held_out}"] = transfer(
        model, demo[demo["task"] == held_out], args.draws, args.sample
    )
    if args.json:
        print(json.dumps(out))
        return
    for name, res in out["settings"].items():
        b, a = res["before"], res["after_mean"]
        print(
            f"{name}: ECE {b['ece']:.3f} -> {a['ece']:.3f} (range {res['after_min_max_ece'][0]:.3f}-"
            f"{res['after_min_max_ece'][1]:.3f}; whole pool {res['after_whole_pool']['ece']:.3f}), "
            f"log-loss {b['log_loss']:.4f} -> {a['log_loss']:.4f}, AUC {b['mean_tier_auc']:.3f}"
        )


if __name__ == "__main__":
    main()
