"""Generalisation check: the policy evaluation on run logs of models, strategies and tasks the catalog has
never seen, in the import format (a seeded synthetic log written by this script: no such real log is at hand).

    python bench/generalisation.py [--queries 800] [--coverage 1.0] [--score] [--predictor auto] [--json]

(`--predictor difficulty-raw` vs `difficulty+interaction` compares the predictor without and with its
(query x tier) interaction calibration through the same path.)

The log: two tasks; seven models -- three open-weight models unknown to the catalog with their size in
the name (priced on the catalog's GPUs), two closed models unknown to the catalog whose runs record
`cost_usd` (per-token prices fitted from it), a catalog model under another spelling (`GPT-4o-mini@azure`,
an alias) and one model nothing prices (left out, with a note); strategies under foreign names (`greedy`,
`chain_of_thought`, `majority_vote` with `{"n": 5}` and `{"n": 9}`) recorded on part of the queries;
per-task skills, so the best model depends on the query. `--coverage` < 1 drops (query, model) pairs at
random (a sparse log); `--score` replaces 0/1 correctness by a graded score in [0, 1]. The script then
runs what `planner evaluate-policy --runs FILE` runs (derived catalog entries, cross-fitted forecasts,
budget sweep, baselines) and prints what was derived and the acceptance figures.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from models.report import json_safe

REPO = Path(__file__).resolve().parents[1]
DEFAULT_PRICES = REPO.parent / "shared" / "data" / "hardware" / "api_prices_tokencost_0.1.26.csv"
# model -> (ability, skill on task "proofs", tokens per answer, recorded $ per 1k in/out tokens or None)
MODELS: dict[str, tuple[float, float, float, tuple[float, float] | None]] = {
    "Nova-3B-Instruct": (-0.8, -0.3, 180, None),
    "Nova-14B-Instruct": (0.3, 0.2, 220, None),
    "Nova-70B-Instruct": (1.1, 0.6, 260, None),
    "zenith-pro": (1.6, -0.4, 300, (0.003, 0.015)),
    "zenith-lite": (0.5, 0.5, 240, (0.0002, 0.0008)),
    "GPT-4o-mini@azure": (0.7, 0.0, 230, None),
    "unpriced-model": (0.4, 0.0, 200, None),
}
WORDS = {
    "arith": ["sum", "product", "ratio", "percent", "total", "remainder", "average", "price"],
    "proofs": ["prove", "lemma", "integer", "prime", "divides", "induction", "bound", "graph"],
}


def make_log(queries: int, coverage: float, graded: bool, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows: list[dict[str, Any]] = []
    for q in range(queries):
        task = "proofs" if q % 3 == 0 else "arith"
        hard = rng.normal(0.0, 1.2)
        words = rng.choice(WORDS[task], size=4 + int(2 * max(hard + 1.0, 0)))
        prompt = f"{task} item {q}: " + " ".join(words) + ("; show every step" if hard > 1 else "")
        for model, (ability, skill, tokens, price) in MODELS.items():
            if rng.random() > coverage:
                continue
            theta = ability + (skill if task == "proofs" else 0.0) - hard
            p = 1 / (1 + np.exp(-(theta + rng.normal(0, 0.3))))
            out = float(tokens * np.exp(0.25 * hard + rng.normal(0, 0.3)))
            base = {"task": task, "query_id": f"{task}-{q}", "prompt": prompt, "model": model}
            runs = [("greedy", None, p, 1.0)]
            if rng.random() < 0.4:
                runs.append(("chain_of_thought", None, 1 / (1 + np.exp(-(theta + 0.6))), 3.0))
            for n in (5, 9):
                if rng.random() < 0.3:
                    runs.append(("majority_vote", {"n": n}, None, float(n)))
            for strategy, params, p_run, mult in runs:
                if p_run is None:  # majority of n correlated samples
                    p_q = np.clip(p + rng.normal(0, 0.1), 0.01, 0.99)
                    p_run = float((rng.random(int(mult)) < p_q).sum() * 2 > mult)
                    ok = bool(p_run)
                else:
                    ok = bool(rng.random() < p_run)
                tin, tout = len(prompt) // 4 + 1, max(1, round(out * mult))
                row = base | {"strategy": strategy, "input_tokens": tin, "output_tokens": tout}
                row["strategy_params"] = json.dumps(params) if params else None
                row["score" if graded else "correct"] = (
                    float(np.clip(0.75 * ok + 0.25 * rng.random(), 0, 1)) if graded else int(ok)
                )
                if price is not None:
                    row["cost_usd"] = (price[0] * tin + price[1] * tout) / 1000.0
                rows.append(row)
    return pd.DataFrame(rows)


def run(args: argparse.Namespace) -> dict[str, Any]:
    from planner.cli.policy import runs_and_catalog
    from planner.evaluation.forecasters import fit_forecaster
    from planner.evaluation.harness import evaluate
    from simulator.costmodel import CostModel

    log = make_log(args.queries, args.coverage, args.score, args.seed)
    prices = args.prices if args.prices is not None and args.prices.exists() else None
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "unseen.csv"
        log.to_csv(path, index=False)
        t0 = time.perf_counter()
        catalog, frame, derived = runs_and_catalog(path, None, None, None, prices)
    names = catalog.run_name_map()
    report = evaluate(
        frame,
        catalog,
        CostModel(catalog),
        lambda train: fit_forecaster(args.predictor, train, names),
        folds=args.folds,
        simulate=False,
    )
    fig = report.figures
    return {
        "queries": args.queries,
        "coverage": args.coverage,
        "graded_score": args.score,
        "runs": len(log),
        "prices": str(prices) if prices else None,
        "forecaster": report.forecaster,
        "seconds": time.perf_counter() - t0,
        "derived": list(derived),
        "aiq": {k: v.get("aiq") for k, v in fig["routers"].items()},
        "best_single": fig.get("best_single"),
        "at_best_single_cost": fig.get("planner_at_best_single_cost"),
        "reaches_best_single": fig.get("planner_reaches_best_single"),
        "calibration": fig.get("planner_calibration"),
        "recorded_strategies": fig.get("recorded_strategies"),
        "coverage_figures": fig.get("coverage"),
        "notes": list(report.notes),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=800)
    parser.add_argument("--coverage", type=float, default=1.0)
    parser.add_argument("--score", action="store_true", help="graded scores instead of 0/1 correctness")
    parser.add_argument(
        "--predictor",
        default="auto",
        help="auto | prior | difficulty | difficulty+interaction | difficulty-raw",
    )
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--prices", type=Path, default=DEFAULT_PRICES)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if not 0 < args.coverage <= 1:
        print(f"--coverage {args.coverage} must be in (0, 1]", file=sys.stderr)
        return 2
    out = run(args)
    if args.json:
        print(json.dumps(json_safe(out)))
        return 0
    for note in out["derived"]:
        print("derived:", note)
    print(f"{out['runs']} runs, {out['queries']} queries, coverage {out['coverage']}, {out['forecaster']}")
    print("AIQ:", {k: round(v, 4) for k, v in out["aiq"].items() if v is not None})
    print("best single:", out["best_single"])
    print("planner at the best single's cost:", out["at_best_single_cost"])
    print("reaches the best single:", out["reaches_best_single"])
    print("calibration:", out["calibration"])
    print(f"wall {out['seconds']:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
