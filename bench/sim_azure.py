"""Azure LLM conversation trace replayed on a stated H100 fleet; the simulator's speed and memory at scale.

Part 1 (replay): `simulator/scenarios/h100_baseline.toml` (the 2023-11-16 conv trace, 19,366 requests in
~58 min, on 16 x H100-SXM5-80GB serving llama-3.1-70b as 4 tensor-parallel replicas of 4 GPUs, continuous
batching up to 256 sequences) and the what-if `lpu_offload_bon8.toml` (30% of chat to groq-lpu, best-of-8 for
the 20% of requests tagged reasoning): throughput, TTFT / time-between-tokens / end-to-end p50-p95-p99,
energy, CO2 and spend.

Part 2 (scale): the baseline with the trace replayed back to back until N requests (N = 100k, 300k, 1M by
default), each N in a fresh single-threaded process: wall and CPU seconds, microseconds per request and peak
RSS. Baseline in the same run: streaming the same N requests through the workload reader alone (no routing,
no engine), the floor every simulation pays.

Usage: python bench/sim_azure.py [--sizes 100000,300000,1000000] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from simulator.run import simulate
from simulator.scenario import Scenario, load_scenario

SCENARIOS = Path(__file__).resolve().parents[1] / "simulator" / "scenarios"
KEYS = (
    "requests", "throughput_rps", "output_tokens_per_s", "spend_usd", "usd_per_1k_requests", "energy_kwh",
    "it_energy_kwh", "co2_kg", "slo_attainment", "ttft_s.p50", "ttft_s.p95", "ttft_s.p99", "tbt_s.p50",
    "tbt_s.p95", "tbt_s.p99", "e2e_s.p50", "e2e_s.p95", "e2e_s.p99", "horizon_s",
)  # fmt: skip


def _scaled(n: int) -> Scenario:
    sc = load_scenario(SCENARIOS / "h100_baseline.toml")
    wl = sc.workload.model_copy(update={"repeat": n // 19_366 + 1, "max_requests": n})
    return sc.model_copy(update={"replicates": 1, "workload": wl})


def replay() -> list[dict[str, Any]]:
    out = []
    for name in ("h100_baseline", "lpu_offload_bon8"):
        sc = load_scenario(SCENARIOS / f"{name}.toml").model_copy(update={"replicates": 1})
        t0 = time.process_time()
        r = simulate(sc)
        row: dict[str, Any] = {"scenario": r.scenario, "cpu_s": time.process_time() - t0}
        row |= {k: r.metric(k) for k in KEYS}
        row["pools"] = r.pools
        row["spend_by_target_usd"] = r.breakdown["spend_by_target_usd"]
        out.append(row)
    return out


def child(n: int, mode: str) -> dict[str, Any]:
    sc = _scaled(n)
    t0, w0 = time.process_time(), time.perf_counter()
    if mode == "read":
        count = sum(len(c) for c in sc.build_workload().chunks(sc.seed))
        extra: dict[str, Any] = {"requests": count}
    else:
        r = simulate(sc)
        extra = {"requests": r.metric("requests"), "e2e_p99_s": r.metric("e2e_s.p99")}
    cpu, wall = time.process_time() - t0, time.perf_counter() - w0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"n": n, "mode": mode, "cpu_s": cpu, "wall_s": wall, "peak_rss_mb": rss} | extra


def scale(sizes: list[int]) -> list[dict[str, Any]]:
    env = os.environ | {k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    rows = []
    for n in sizes:
        for mode in ("read", "simulate"):
            cmd = [sys.executable, __file__, "--child", str(n), "--mode", mode]
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return rows


def _print(rep: list[dict[str, Any]], sc: list[dict[str, Any]]) -> None:
    print("| metric | " + " | ".join(r["scenario"] for r in rep) + " |")
    print("|---|" + "---|" * len(rep))
    for k in KEYS:
        print(f"| {k} | " + " | ".join(f"{r[k]:,.4g}" for r in rep) + " |")
    print()
    cols = ("requests", "read-only CPU s", "simulate CPU s", "simulate wall s", "us/request (CPU)")
    print("| " + " | ".join((*cols, "x read-only", "peak RSS MB")) + " |")
    print("|---|---|---|---|---|---|---|")
    reads = {r["n"]: r for r in sc if r["mode"] == "read"}
    for r in (r for r in sc if r["mode"] == "simulate"):
        base = reads[r["n"]]
        print(
            f"| {r['n']:,} | {base['cpu_s']:.2f} | {r['cpu_s']:.2f} | {r['wall_s']:.2f} | "
            f"{1e6 * r['cpu_s'] / r['n']:.1f} | {r['cpu_s'] / base['cpu_s']:.1f} | {r['peak_rss_mb']:.0f} |"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100000,300000,1000000")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--mode", default="simulate", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.mode)))
        return
    rep = replay()
    sc = scale([int(s) for s in args.sizes.split(",")])
    if args.json:
        print(json.dumps({"replay": rep, "scale": sc}))
        return
    _print(rep, sc)


if __name__ == "__main__":
    main()
