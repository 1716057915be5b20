"""Benchmark of the gRPC server's own overhead: unary round trips and RecordRuns ingest throughput.

Figures (one process, loopback, temporary SQLite store):
- round-trip latency p50/p95 of health Check (transport baseline) and of GetRunStats / GetCatalog;
- RecordRuns records/s against calling `planner.ingest.import_records` directly on the same records
  (ratio = gRPC / direct; the difference is conversion + transport).

Usage: python bench/server_rpc.py [--calls 300] [--records 20000] [--json]
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
from grpc_health.v1 import health_pb2, health_pb2_grpc

from planner.ingest import import_records
from planner.server import create_server, stop_server
from planner.settings import Settings
from planner.store import Database
from planner.v1 import catalog_pb2, catalog_pb2_grpc, runs_pb2, runs_pb2_grpc


def _records(n: int, prefix: str) -> list[runs_pb2.RunRecord]:
    return [
        runs_pb2.RunRecord(
            query_id=f"{prefix}{i // 8}", model=f"model-{i % 8}", task="bench", prompt="What is 2 + 2?" * 4,
            correct=bool(i % 3), output_tokens=100 + i % 50, cost_usd=0.001,
        )
        for i in range(n)
    ]  # fmt: skip


async def _latencies(call: Any, request: Any, n: int) -> dict[str, float]:
    await call(request)  # warm up
    times = []
    for _ in range(n):
        start = time.perf_counter()
        await call(request)
        times.append(time.perf_counter() - start)
    times.sort()
    return {"p50_ms": 1e3 * statistics.median(times), "p95_ms": 1e3 * times[int(0.95 * (n - 1))]}


async def run(calls: int, records: int) -> dict[str, Any]:
    from planner.servicers.run_records import record_from_proto

    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        db = Database(url)
        server, port = await create_server("127.0.0.1:0", Settings(database_url=url), db=db)
        out: dict[str, Any] = {"calls": calls, "records": records}
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
                health = health_pb2_grpc.HealthStub(ch).Check
                runs = runs_pb2_grpc.RunServiceStub(ch)
                catalog = catalog_pb2_grpc.CatalogServiceStub(ch).GetCatalog
                batch = _records(records, "g")
                chunks = [
                    runs_pb2.RecordRunsRequest(records=batch[i : i + 1000]) for i in range(0, records, 1000)
                ]
                start = time.perf_counter()
                reply = await runs.RecordRuns(iter(chunks))
                grpc_s = time.perf_counter() - start
                assert reply.inserted == records, reply
                direct = [record_from_proto(r) for r in _records(records, "d")]
                start = time.perf_counter()
                await asyncio.to_thread(import_records, direct, db, None, 20_000, "bench")
                direct_s = time.perf_counter() - start
                out["record_runs_per_s"] = records / grpc_s
                out["import_records_per_s"] = records / direct_s
                out["record_runs_vs_direct"] = direct_s / grpc_s
                out["health_check"] = await _latencies(health, health_pb2.HealthCheckRequest(), calls)
                out["get_run_stats"] = await _latencies(
                    runs.GetRunStats, runs_pb2.GetRunStatsRequest(), calls
                )
                out["get_catalog"] = await _latencies(
                    catalog, catalog_pb2.GetCatalogRequest(), max(10, calls // 10)
                )
        finally:
            await stop_server(server, 0)
            db.dispose()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = asyncio.run(run(args.calls, args.records))
    if args.json:
        print(json.dumps(result))
        return
    print(
        f"RecordRuns: {result['record_runs_per_s']:.0f} records/s "
        f"(direct import_records {result['import_records_per_s']:.0f}/s, "
        f"ratio {result['record_runs_vs_direct']:.2f})"
    )
    for name in ("health_check", "get_run_stats", "get_catalog"):
        lat = result[name]
        print(f"{name}: p50 {lat['p50_ms']:.2f} ms, p95 {lat['p95_ms']:.2f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
