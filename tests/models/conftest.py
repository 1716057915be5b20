"""Fixtures for the predictor tests: a prepared GSM8K frame and a small deterministic subsample of it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models.data import default_run_name_map, read_run_csv


@pytest.fixture(scope="session")
def gsm8k_runs(gsm8k_runs_path: Path) -> pd.DataFrame:
    return read_run_csv(gsm8k_runs_path, default_run_name_map())


@pytest.fixture(scope="session")
def gsm8k_small(gsm8k_runs: pd.DataFrame) -> pd.DataFrame:
    """Runs of 400 random queries (all their tiers): enough signal, fast to fit."""
    rng = np.random.default_rng(0)
    ids = gsm8k_runs["query_id"].unique()
    keep = set(rng.choice(ids, size=400, replace=False))
    return gsm8k_runs[gsm8k_runs["query_id"].isin(keep)].reset_index(drop=True)
