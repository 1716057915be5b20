"""Benchmark of the predictor lifecycle on a real server (one process, loopback, temporary SQLite store).

Figures:
- server start time: empty store (baseline) vs a store with runs and no predictor (a prior is bootstrapped,
  stored and promoted) vs a store with a promoted predictor (loaded from its skops artifact);
- TrainPredictor (difficulty) over RPC: total wall time and the share spent outside the estimator's own fit
  (loading runs, fingerprint, split, held-out scoring, saving), from the progress stream's timestamps;
- PromotePredictor latency (artifact load + store switch + swap);
- Route latency p50/p95 without and with promotes every `--swap-ms` running concurrently, and the number of
  failed Route calls (must be 0: the swap never drops a request).

Data: the GSM8K runs from ../shared/data (`--data gsm8k`, default when present) or the seeded demo history.
Usage: python bench/predictors_lifecycle.py [--data gsm8k|demo] [--calls 300] [--swap-ms 1000] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc

from planner.catalog import load_catalog
from planner.demo import seed_demo
from planner.ingest import import_file, preset
from planner.server import create_server, stop_server
from planner.settings import Settings
from planner.store import Database
from planner.v1 import common_pb2, routing_pb2, routing_pb2_grpc
from planner.v1 import predictors_pb2 as pb
from planner.v1 import predictors_pb2_grpc as pb_grpc

GSM8K = Path(__file__).resolve().parents[2] / "shared" / "data" / "runs" / "gsm8k_zeroeval.csv.gz"


def _seed(db: Database, data: str) -> str:
    if data == "gsm8k":
        import_file(GSM8K, db, preset("zeroeval"), 20_000, catalog=load_catalog())
        return "gsm8k"
    seed_demo(db, load_catalog(), n_queries=1000)
    return "demo"


async def _start_time(url: str) -> float:
    db = Database(url)
    start = time.perf_counter()
    server, _ = await create_server("127.0.0.1:0", Settings(database_url=url), db=db)
    elapsed = time.perf_counter() - start
    await stop_server(server, 0)
    db.dispose()
    return elapsed


def _pcts(times: list[float]) -> dict[str, float]:
    times = sorted(times)
    return {
        "p50_ms": 1e3 * statistics.median(times),
        "p95_ms": 1e3 * times[int(0.95 * (len(times) - 1))],
        "max_ms": 1e3 * times[-1],
    }


async def _train(stub: pb_grpc.PredictorServiceStub, **kw: Any) -> dict[str, Any]:
    start = time.perf_counter()
    fit_start = fit_end = None
    last = None
    async for message in stub.TrainPredictor(pb.TrainPredictorRequest(**kw)):
        now = time.perf_counter() - start
        if message.stage in (pb.TRAIN_STAGE_FEATURES, pb.TRAIN_STAGE_FITTING) and fit_start is None:
            fit_start = now
        if message.stage == pb.TRAIN_STAGE_EVALUATING:
            fit_end = now
        last = message
    total = time.perf_counter() - start
    assert last is not None and fit_start is not None and fit_end is not None
    fit = fit_end - fit_start
    return {
        "version": last.predictor.version,
        "total_s": total,
        "fit_s": fit,
        "overhead_s": total - fit,
        "overhead_share": (total - fit) / total,
        "holdout_brier": last.predictor.metrics.brier,
        "holdout_auc": last.predictor.metrics.auc,
        "holdout_ece": last.predictor.metrics.ece,
        "prior_brier": last.predictor.metrics.baseline_brier,
    }


def _route_request(i: int) -> routing_pb2.RouteRequest:
    query = common_pb2.QueryInput(
        query_id=f"b{i}", prompt=f"Tom has {i} apples and buys {i + 3}.", task="gsm"
    )
    return routing_pb2.RouteRequest(query=query, dry_run=True)


async def _routes(stub: routing_pb2_grpc.RoutingServiceStub, n: int) -> tuple[list[float], int]:
    times, failures = [], 0
    for i in range(n):
        start = time.perf_counter()
        try:
            await stub.Route(_route_request(i))
        except grpc.aio.AioRpcError:
            failures += 1
        times.append(time.perf_counter() - start)
    return times, failures


async def _swapping(
    stub: pb_grpc.PredictorServiceStub, versions: list[str], every_s: float, stop: asyncio.Event
) -> int:
    swaps = 0
    while not stop.is_set():
        await stub.PromotePredictor(pb.PromotePredictorRequest(version=versions[swaps % len(versions)]))
        swaps += 1
        await asyncio.sleep(every_s)
    return swaps


async def run(data: str, calls: int, swap_ms: float) -> dict[str, Any]:
    out: dict[str, Any] = {"calls": calls, "swap_ms": swap_ms}
    with tempfile.TemporaryDirectory() as tmp:
        empty_url = f"sqlite:///{Path(tmp) / 'empty.db'}"
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        Database(empty_url).dispose()
        out["data"] = _seed(Database(url), data)
        empty = await _start_time(empty_url)
        bootstrap = await _start_time(url)  # no predictor yet: bootstraps and promotes a prior
        loaded_prior = await _start_time(url)
        out["start_s"] = {
            "empty_store": empty,
            "bootstrap_prior": bootstrap,
            "load_promoted_prior": loaded_prior,
        }
        db = Database(url)
        server, port = await create_server("127.0.0.1:0", Settings(database_url=url), db=db)
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = pb_grpc.PredictorServiceStub(channel)
                route = routing_pb2_grpc.RoutingServiceStub(channel)
                prior = server.planner_state.predictor_version  # type: ignore[attr-defined]
                out["train_difficulty"] = await _train(stub, kind="difficulty")
                learned = out["train_difficulty"]["version"]
                promote_times = []
                for v in [learned, prior] * 3:
                    start = time.perf_counter()
                    await stub.PromotePredictor(pb.PromotePredictorRequest(version=v))
                    promote_times.append(time.perf_counter() - start)
                out["promote"] = _pcts(promote_times)
                after_swap = []
                for v in [
                    learned,
                    prior,
                ] * 3:  # first Route after a swap (the router rebuilds for the new one)
                    await stub.PromotePredictor(pb.PromotePredictorRequest(version=v))
                    after_swap += (await _routes(route, 1))[0]
                out["first_route_after_swap"] = _pcts(after_swap)
                await _routes(route, 20)  # warm up the router
                quiet, quiet_fail = await _routes(route, calls)
                stop = asyncio.Event()
                swapper = asyncio.create_task(_swapping(stub, [learned, prior], swap_ms / 1e3, stop))
                busy, busy_fail = await _routes(route, calls)
                stop.set()
                swaps = await swapper
                out["route_quiet"] = {**_pcts(quiet), "failed": quiet_fail}
                out["route_during_swaps"] = {**_pcts(busy), "failed": busy_fail, "swaps": swaps}
                out["route_p50_ratio_swapping_vs_quiet"] = statistics.median(busy) / statistics.median(quiet)
                await stub.PromotePredictor(pb.PromotePredictorRequest(version=learned))
        finally:
            await stop_server(server, 0)
            db.dispose()
        out["start_s"]["load_difficulty"] = await _start_time(url)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=["gsm8k", "demo"], default="gsm8k" if GSM8K.is_file() else "demo")
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--swap-ms", type=float, default=1000.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    from planner.logging import configure_logging

    configure_logging(Settings(log_level="WARNING"))  # server logs: stderr, warnings only
    result = asyncio.run(run(args.data, args.calls, args.swap_ms))
    if args.json:
        print(json.dumps(result))
        return
    for key, value in result.items():
        print(f"{key}: {value}")


if __name__ == "__main__":
    main()
