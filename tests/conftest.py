"""Shared fixtures: where the shared real data lives, and the default catalog."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(__import__("os").environ.get("PLANNER_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def gsm8k_runs_path(shared_data: Path) -> Path:
    return shared_data / "runs" / "gsm8k_zeroeval.csv.gz"
