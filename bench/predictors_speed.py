"""Difficulty predictor speed: training on all runs, one query for all tiers and strategies, 10,000 queries.

In one process, after fitting on the whole run file:
- hot path: `DifficultyPredictor.score_one(query, catalog strategies)` (every tier, every strategy of the
  default catalog), median and p99 over distinct queries; beside it, in the same run, the same result through
  the batch path for one query (`forecast_batch([q])` + `quality` per strategy: scikit-learn-style validation,
  sparse matrices, closed forms evaluated per call: `exact_quality`);
- batch: `forecast` of 10,000 queries (all tiers) and then `quality` of every strategy on it, beside the
  per-tier prior baseline's `forecast` of the same batch.

Usage: python bench/predictors_speed.py [PATH] [--calls 2000] [--json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from models.baseline import PriorForecaster
from models.data import queries_from_frame, read_run_csv
from models.predictor import DifficultyPredictor
from planner.catalog import load_catalog

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data" / "runs" / "gsm8k_zeroeval.csv.gz"


def _timings(fn: Any, items: list[Any]) -> np.ndarray:
    out = np.empty(len(items))
    for i, item in enumerate(items):
        start = time.perf_counter()
        fn(item)
        out[i] = time.perf_counter() - start
    return out


def _best_of(fn: Any, repeats: int = 3) -> tuple[float, float]:
    """(best wall seconds, best CPU seconds of this process) over `repeats` runs."""
    wall = cpu = float("inf")
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        wall = min(wall, time.perf_counter() - start)
        cpu = min(cpu, time.process_time() - start_cpu)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?", type=Path, default=DEFAULT)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    catalog = load_catalog()
    frame = read_run_csv(args.path, catalog.run_name_map())
    start = time.perf_counter()
    model = DifficultyPredictor(run_name_map=catalog.run_name_map()).fit(frame)
    fit_s = time.perf_counter() - start
    strategies = catalog.strategies
    queries = queries_from_frame(frame)
    calls = [queries[i % len(queries)] for i in range(args.calls)]
    model.score_one(calls[0], strategies)  # builds the strategy tables once

    def batch_path(q: Any) -> None:
        fc = model.forecast_batch([q])  # `forecast([q])` itself now takes the hot path
        for s in strategies:
            model.exact_quality(fc, s)

    hot = _timings(lambda q: model.score_one(q, strategies), calls)
    slow = _timings(batch_path, calls[: max(50, args.calls // 10)])
    big = [queries[i % len(queries)] for i in range(10_000)]
    prior = PriorForecaster(run_name_map=catalog.run_name_map()).fit(frame)
    holder: dict[str, Any] = {}

    def forecast_big() -> None:
        holder["fc"] = model.forecast(big)

    batch_s = _best_of(forecast_big)
    quality_s = _best_of(lambda: [model.quality(holder["fc"], s) for s in strategies])
    prior_s = _best_of(lambda: prior.forecast(big))
    out = {
        "runs": len(frame),
        "tiers": len(model.tiers),
        "strategies": len(strategies),
        "fit_s": fit_s,
        "score_one_us": {"median": float(np.median(hot) * 1e6), "p99": float(np.quantile(hot, 0.99) * 1e6)},
        "batch_path_one_query_us": {
            "median": float(np.median(slow) * 1e6),
            "p99": float(np.quantile(slow, 0.99) * 1e6),
        },
        "hot_vs_batch_path_speedup": float(np.median(slow) / np.median(hot)),
        "forecast_10k_s": batch_s[0],
        "forecast_10k_cpu_s": batch_s[1],
        "quality_all_strategies_10k_s": quality_s[0],
        "prior_forecast_10k_s": prior_s[0],
    }
    if args.json:
        print(json.dumps(out))
        return
    for key, value in out.items():
        print(f"{key}: {value}")


if __name__ == "__main__":
    main()
