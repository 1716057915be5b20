"""Queueing core against the analytic M/M/c mean wait (Erlang C), and its speed against SimPy.

With one batch slot per replica, no prefill and a batch-independent decode step, a `PoolEngine` pool is an
FCFS M/M/c queue when arrivals are Poisson and work is exponential. For each (c, rho) the script simulates
`--requests` requests per seed over `--seeds` seeds and prints the mean wait in queue against Erlang C, with
a 95% batch-means interval (50 batches per seed). Baseline in the same run: the same M/M/c queue written the
usual SimPy way (one process per customer, `simpy.Resource` with c servers) on `--simpy-requests` requests,
for the speed ratio (microseconds of CPU per request).

Usage: python bench/sim_queueing.py [--requests 1000000] [--seeds 2] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import time
from typing import Any

import numpy as np
import simpy
from scipy import stats

from simulator.engine import Jobs, PoolConfig, PoolEngine

CASES = ((1, 0.5), (4, 0.5), (4, 0.8), (16, 0.9))


class ConstService:
    """Batch-independent unit decode step, no prefill (the engine's M/G/c configuration)."""

    prefill_power_w = 0.0

    def decode_step_s(self, batch: np.ndarray) -> np.ndarray:
        return np.ones(np.shape(batch))

    def prefill_s(self, tokens: np.ndarray) -> np.ndarray:
        return np.zeros(np.shape(tokens))

    def power_w(self, batch: np.ndarray) -> np.ndarray:
        return np.zeros(np.shape(batch))


def erlang_c_wait(lam: float, mu: float, c: int) -> float:
    a = lam / mu
    below = sum(a**k / math.factorial(k) for k in range(c))
    top = a**c / math.factorial(c) / (1 - a / c)
    return top / (below + top) / (c * mu - lam)


def engine_waits(c: int, lam: float, n: int, seed: int) -> tuple[np.ndarray, float]:
    rng = np.random.default_rng(seed)
    arrival = np.cumsum(rng.exponential(1 / lam, n))
    work = rng.exponential(1.0, n)
    waits: list[np.ndarray] = []
    z = np.zeros(n)
    t0 = time.process_time()
    engine = PoolEngine(
        PoolConfig(replicas=c), ConstService(), lambda d: waits.append(d.start_s - d.arrival_s)
    )
    engine.feed(Jobs(arrival, z, work, np.ones(n), np.ones(n), z.astype(np.int64), z.astype(np.int64), z))
    engine.finish()
    return np.concatenate(waits), time.process_time() - t0


def simpy_mean_wait(c: int, lam: float, n: int, seed: int) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    gaps, work = rng.exponential(1 / lam, n).tolist(), rng.exponential(1.0, n).tolist()
    env = simpy.Environment()
    servers = simpy.Resource(env, capacity=c)
    total = [0.0]

    def customer(s: float) -> Any:
        t = env.now
        with servers.request() as req:
            yield req
            total[0] += env.now - t
            yield env.timeout(s)

    def source() -> Any:
        for g, s in zip(gaps, work, strict=True):
            yield env.timeout(g)
            env.process(customer(s))

    t0 = time.process_time()
    env.process(source())
    env.run()
    return total[0] / n, time.process_time() - t0


def case(c: int, rho: float, n: int, seeds: int, simpy_n: int) -> dict[str, Any]:
    lam = rho * c
    expected = erlang_c_wait(lam, 1.0, c)
    means, cpu = [], 0.0
    for s in range(seeds):
        w, t = engine_waits(c, lam, n, s)
        means.append(w[: len(w) // 50 * 50].reshape(50, -1).mean(axis=1))
        cpu += t
    b = np.concatenate(means)
    mean = float(b.mean())
    half = float(stats.t.ppf(0.975, b.size - 1) * b.std(ddof=1) / math.sqrt(b.size))
    simpy_wait, simpy_cpu = simpy_mean_wait(c, lam, simpy_n, 100)
    return {
        "servers": c,
        "rho": rho,
        "requests": n * seeds,
        "erlang_c_wait": expected,
        "sim_wait": mean,
        "ci95": [mean - half, mean + half],
        "rel_error": mean / expected - 1,
        "ci_contains_analytic": mean - half <= expected <= mean + half,
        "engine_us_per_request": 1e6 * cpu / (n * seeds),
        "simpy_us_per_request": 1e6 * simpy_cpu / simpy_n,
        "simpy_rel_error": simpy_wait / expected - 1,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=1_000_000)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--simpy-requests", type=int, default=100_000)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rows = [case(c, rho, args.requests, args.seeds, args.simpy_requests) for c, rho in CASES]
    if args.json:
        print(json.dumps({"cases": rows}))
        return
    head = ("c", "rho", "requests", "Erlang C Wq", "simulated Wq [95% CI]", "rel. error", "engine us/req")
    print("| " + " | ".join((*head, "SimPy us/req")) + " |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        lo, hi = r["ci95"]
        print(
            f"| {r['servers']} | {r['rho']} | {r['requests']:,} | {r['erlang_c_wait']:.4f} | "
            f"{r['sim_wait']:.4f} [{lo:.4f}, {hi:.4f}] | {100 * r['rel_error']:+.2f}% | "
            f"{r['engine_us_per_request']:.1f} | {r['simpy_us_per_request']:.1f} |"
        )


if __name__ == "__main__":
    main()
