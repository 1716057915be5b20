"""Benchmark of online routing: `Route` over loopback gRPC against an empty-RPC echo baseline, same run.

- Server: a separate process running `planner.server.create_server` on a temporary SQLite store seeded with
  the demo history (so the server bootstraps a prior predictor), with the ledger and audit writer live
  (decisions are charged and audited; a large budget override keeps them from being refused).
- Echo baseline: the standard `grpc.health.v1.Health/Check` RPC of the same server (empty request, tiny
  reply, same interceptors) -- the cost of an RPC that does nothing.
- Client: a separate process, `--concurrency` calls in flight on one channel; echo and Route rounds
  alternate (`--rounds` each) so machine noise hits both; throughput = calls / wall time of a round.
  Also CPU time per call of the server and client processes (from /proc; less sensitive to other jobs on a
  shared machine than wall-clock throughput): server-bound throughput ratio = echo CPU / Route CPU.
- In-process decision time (no gRPC): `OnlineRouter.route` on one query (p50/p99) and per query in a batch.

Usage: python bench/route_rpc.py [--calls 3000] [--rounds 3] [--concurrency 32] [--dry-run]
                                 [--predictor prior|difficulty] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from planner.v1 import common_pb2, routing_pb2, routing_pb2_grpc

PROMPTS = [
    "What is 17 * 23?",
    "A train leaves at 3pm travelling 60 km/h; another at 4pm at 80 km/h. When does the second catch up?",
    "Prove that the square root of 2 is irrational." * 3,
    "Summarise the causes of the French revolution in three sentences.",
]


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _serve(url: str, ready: Any, stop: Any, predictor: str = "prior") -> None:
    from planner.catalog import load_catalog
    from planner.demo import seed_demo
    from planner.logging import configure_logging
    from planner.server import create_server, stop_server
    from planner.settings import Settings
    from planner.store import Database

    async def main() -> None:
        settings = Settings(database_url=url, address="127.0.0.1:0", log_level="WARNING")
        configure_logging(settings)
        db = Database(url)
        catalog = load_catalog()
        seed_demo(db, catalog, n_queries=300)
        if predictor == "difficulty":  # the learned predictor, trained on the demo history and promoted
            from planner.predictors.lifecycle import TrainConfig, promote_version, train_predictor

            trained = train_predictor(db, TrainConfig.create(kind="difficulty"), catalog.run_name_map())
            promote_version(db, trained.version.version)
        server, port = await create_server("127.0.0.1:0", settings, db=db)
        ready.put(port)
        await asyncio.get_running_loop().run_in_executor(None, stop.wait)
        routing = server.planner_state.extras.get("routing")  # type: ignore[attr-defined]
        ready.put({"batches": routing.batches, "decided": routing.decided} if routing is not None else {})
        await stop_server(server, 1.0)
        db.dispose()

    asyncio.run(main())


def _route_request(i: int, dry_run: bool = False) -> routing_pb2.RouteRequest:
    return routing_pb2.RouteRequest(
        dry_run=dry_run,
        query=common_pb2.QueryInput(query_id=f"b{i}", prompt=PROMPTS[i % len(PROMPTS)], tenant="default"),
        budget_override=common_pb2.Budget(spend_usd=1e9, period=common_pb2.BUDGET_PERIOD_DAY),
    )


async def _round(call: Any, requests: list[Any], concurrency: int, server_pid: int = 0) -> dict[str, Any]:
    latencies: list[float] = []
    cpu0 = (_cpu_s(server_pid) if server_pid else 0.0, time.process_time())
    queue = list(reversed(requests))

    async def worker() -> None:
        while queue:
            req = queue.pop()
            start = time.perf_counter()
            await call(req)
            latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - start
    server_cpu = (_cpu_s(server_pid) if server_pid else 0.0) - cpu0[0]
    client_cpu = time.process_time() - cpu0[1]
    lat = np.array(latencies) * 1e3
    return {
        "calls_per_s": len(requests) / wall,
        "server_cpu_us": 1e6 * server_cpu / len(requests),
        "client_cpu_us": 1e6 * client_cpu / len(requests),
        "p50_ms": float(np.percentile(lat, 50)),
        "p99_ms": float(np.percentile(lat, 99)),
    }


def _client(port: int, pid: int, calls: int, rounds: int, concurrency: int, dry_run: bool, out: Any) -> None:
    async def main() -> dict[str, Any]:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            echo = health_pb2_grpc.HealthStub(ch).Check
            route = routing_pb2_grpc.RoutingServiceStub(ch).Route
            probe = await route(_route_request(-1))  # builds the router (fits the prior) before timing
            echo_req = [health_pb2.HealthCheckRequest()] * calls
            route_req = [_route_request(i, dry_run) for i in range(calls)]
            await _round(echo, echo_req[:200], concurrency)  # warm up both paths
            await _round(route, route_req[:200], concurrency)
            res: dict[str, list[dict[str, Any]]] = {"echo": [], "route": []}
            for _ in range(rounds):
                res["echo"].append(await _round(echo, echo_req, concurrency, pid))
                res["route"].append(await _round(route, route_req, concurrency, pid))
            return {"rounds": res, "example": probe.decision.explanation.summary}

    out.put(asyncio.run(main()))


def _in_process(n_single: int, batch: int) -> dict[str, float]:
    """Decision time without gRPC: `OnlineRouter.route` on a memory ledger (thread CPU time)."""
    import pandas as pd

    from models.api import Query
    from models.baseline import PriorForecaster
    from planner.catalog import load_catalog
    from planner.demo import demo_records
    from planner.online import CallOptions, OnlineRouter
    from planner.options import OptionSet
    from planner.pacing import Budget, MemoryLedger
    from simulator.costmodel import CostModel

    catalog = load_catalog()
    forecaster = PriorForecaster(catalog.run_name_map()).fit(pd.DataFrame(demo_records(catalog, 300)))
    options = OptionSet.build(catalog, CostModel(catalog), forecaster.tiers)
    router = OnlineRouter(catalog, options, forecaster, MemoryLedger())
    call = CallOptions(budget=Budget(spend_usd=1e9))
    qs = [
        Query(query_id=f"q{i}", prompt=PROMPTS[i % 4], tenant="default") for i in range(max(n_single, batch))
    ]

    async def main() -> dict[str, float]:
        times = []
        for q in qs[:50]:
            await router.route([q], call)
        for q in qs[:n_single]:
            start = time.thread_time()
            await router.route([q], call)
            times.append(time.thread_time() - start)
        start = time.thread_time()
        await router.route(qs[:batch], call)
        per_query = (time.thread_time() - start) / batch
        t = np.array(times) * 1e6
        return {
            "options": float(len(options)),
            "single_p50_us": float(np.percentile(t, 50)),
            "single_p99_us": float(np.percentile(t, 99)),
            "batch_per_query_us": per_query * 1e6,
            "batch": float(batch),
        }

    return asyncio.run(main())


def run(
    calls: int, rounds: int, concurrency: int, dry_run: bool = False, predictor: str = "prior"
) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        ready, stop, out = ctx.Queue(), ctx.Event(), ctx.Queue()
        server = ctx.Process(target=_serve, args=(url, ready, stop, predictor))
        server.start()
        try:
            port = ready.get(timeout=300)
            client = ctx.Process(
                target=_client, args=(port, server.pid, calls, rounds, concurrency, dry_run, out)
            )
            client.start()
            result = out.get(timeout=1800)
            client.join(60)
        finally:
            stop.set()
            result["coalescer"] = ready.get(timeout=60) if server.is_alive() else {}
            server.join(60)
    echo = [r["calls_per_s"] for r in result["rounds"]["echo"]]
    route = [r["calls_per_s"] for r in result["rounds"]["route"]]
    ratios = [r / e for r, e in zip(route, echo, strict=True)]

    def med(kind: str, key: str) -> float:
        return float(statistics.median(r[key] for r in result["rounds"][kind]))

    return {
        "calls_per_round": calls,
        "dry_run": dry_run,
        "predictor": predictor,
        "rounds": rounds,
        "concurrency": concurrency,
        "echo_calls_per_s": statistics.median(echo),
        "route_calls_per_s": statistics.median(route),
        "throughput_ratio": statistics.median(ratios),
        "ratio_per_round": ratios,
        "echo_p50_ms": statistics.median(r["p50_ms"] for r in result["rounds"]["echo"]),
        "echo_p99_ms": statistics.median(r["p99_ms"] for r in result["rounds"]["echo"]),
        "route_p50_ms": statistics.median(r["p50_ms"] for r in result["rounds"]["route"]),
        "route_p99_ms": statistics.median(r["p99_ms"] for r in result["rounds"]["route"]),
        "echo_server_cpu_us": med("echo", "server_cpu_us"),
        "route_server_cpu_us": med("route", "server_cpu_us"),
        "echo_client_cpu_us": med("echo", "client_cpu_us"),
        "route_client_cpu_us": med("route", "client_cpu_us"),
        "server_cpu_ratio": med("echo", "server_cpu_us") / med("route", "server_cpu_us"),
        "coalescer": result["coalescer"],
        "in_process": _in_process(500, 1000),
        "example_explanation": result["example"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--dry-run", action="store_true", help="Route without ledger charge and audit")
    parser.add_argument(
        "--predictor",
        choices=("prior", "difficulty"),
        default="prior",
        help="active predictor: per-tier prior (demo default) or a DifficultyPredictor trained on the demo",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    res = run(args.calls, args.rounds, args.concurrency, args.dry_run, args.predictor)
    if args.json:
        print(json.dumps(res))
        return
    ip = res["in_process"]
    print(
        f"echo (Health/Check): {res['echo_calls_per_s']:.0f} calls/s, p50 {res['echo_p50_ms']:.2f} ms, "
        f"p99 {res['echo_p99_ms']:.2f} ms"
    )
    print(
        f"Route: {res['route_calls_per_s']:.0f} calls/s, p50 {res['route_p50_ms']:.2f} ms, "
        f"p99 {res['route_p99_ms']:.2f} ms"
    )
    print(
        f"throughput ratio Route/echo: {res['throughput_ratio']:.2f} "
        f"(per round {', '.join(f'{r:.2f}' for r in res['ratio_per_round'])}; target >= 0.70)"
    )
    print(
        f"server CPU per call: echo {res['echo_server_cpu_us']:.0f} us, "
        f"Route {res['route_server_cpu_us']:.0f} us "
        f"(server-bound throughput ratio {res['server_cpu_ratio']:.2f}); client CPU per call: echo "
        f"{res['echo_client_cpu_us']:.0f} us, Route {res['route_client_cpu_us']:.0f} us"
    )
    print(
        f"in-process decision ({ip['options']:.0f} options): single query p50 {ip['single_p50_us']:.0f} us, "
        f"p99 {ip['single_p99_us']:.0f} us; "
        f"batch of {ip['batch']:.0f}: {ip['batch_per_query_us']:.1f} us/query"
    )


if __name__ == "__main__":
    main()
