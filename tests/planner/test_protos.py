"""The committed stubs under planner/v1/ match the .proto files, and the API passes `buf lint`."""

from __future__ import annotations

import filecmp
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
STUBS = REPO / "planner" / "v1"


def _generated_files(root: Path) -> set[str]:
    return {p.name for p in root.iterdir() if p.is_file() and p.suffix in (".py", ".pyi")}


def test_committed_stubs_are_up_to_date(tmp_path: Path) -> None:
    subprocess.run(
        ["bash", str(REPO / "scripts" / "gen_protos.sh"), str(tmp_path)],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
    )
    fresh = tmp_path / "planner" / "v1"
    expected = _generated_files(fresh)
    committed = _generated_files(STUBS)
    assert expected == committed, (
        f"stub files differ: missing {sorted(expected - committed)}, extra {sorted(committed - expected)};"
        " run scripts/gen_protos.sh"
    )
    _, mismatch, errors = filecmp.cmpfiles(fresh, STUBS, sorted(expected), shallow=False)
    assert not mismatch and not errors, f"stale stubs {mismatch + errors}: run scripts/gen_protos.sh"


def test_every_service_imports_and_has_a_descriptor() -> None:
    from planner.v1 import catalog_pb2, predictors_pb2, routing_pb2, runs_pb2, simulation_pb2

    services = {
        name
        for module in (catalog_pb2, runs_pb2, predictors_pb2, routing_pb2, simulation_pb2)
        for name in module.DESCRIPTOR.services_by_name
    }
    assert services == {
        "CatalogService",
        "RunService",
        "PredictorService",
        "RoutingService",
        "SimulationService",
    }


def test_buf_lint_passes() -> None:
    buf = shutil.which("buf")
    if buf is None:
        pytest.skip("buf binary not installed")
    result = subprocess.run([buf, "lint"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
