"""`planner serve --demo` as a process: seeds the demo history, binds, answers, stops cleanly on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from planner.v1 import runs_pb2, runs_pb2_grpc


def _port_from_logs(proc: subprocess.Popen[str]) -> int:
    assert proc.stderr is not None
    for line in proc.stderr:
        if line.startswith("{"):
            event = json.loads(line)
            if event.get("event") == "serve.listening":
                return int(event["port"])
    raise AssertionError(f"server exited before listening (rc={proc.wait()})")


def test_serve_demo_runs_until_sigterm(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PLANNER_LOG_FORMAT": "json",
        "PLANNER_GRACE_S": "1",
        "PLANNER_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}",
    }
    cmd = [
        sys.executable,
        "-c",
        "from planner.cli import app; app()",
        "serve",
        "--demo",
        "--address",
        "127.0.0.1:0",
    ]
    proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    try:
        port = _port_from_logs(proc)
        threading.Thread(target=proc.stderr.read, daemon=True).start()  # type: ignore[union-attr]
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service="planner.v1.RunService"), timeout=10
            )
            stats = runs_pb2_grpc.RunServiceStub(channel).GetRunStats(
                runs_pb2.GetRunStatsRequest(), timeout=30
            )
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        assert stats.total_runs > 0 and len(stats.tiers) > 1
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
