"""`planner evaluate`: the held-out evaluation report on a run file, JSON and PNG."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from planner.cli import app


def _small_run_file(gsm8k_runs_path: Path, tmp_path: Path) -> Path:
    raw = pd.read_csv(gsm8k_runs_path)
    ids = np.random.default_rng(0).choice(raw["query_id"].unique(), size=150, replace=False)
    path = tmp_path / "runs.csv"
    raw[raw["query_id"].isin(ids)].to_csv(path, index=False)
    return path


def test_evaluate_json_with_baselines_and_plot(gsm8k_runs_path: Path, tmp_path: Path) -> None:
    runs = _small_run_file(gsm8k_runs_path, tmp_path)
    png = tmp_path / "rel.png"
    args = ["evaluate", "--runs", str(runs), "--baselines", "prior", "--plot", str(png), "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert [r["forecaster"] for r in out["summary"]] == ["predictor", "prior"]
    pred = out["summary"][0]
    assert 0.5 < pred["pooled_auc"] <= 1 and 0 <= pred["ece"] < 0.2
    assert out["n_test_queries"] == 45
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_evaluate_rejects_bad_arguments(gsm8k_runs_path: Path, tmp_path: Path) -> None:
    runs = _small_run_file(gsm8k_runs_path, tmp_path)
    bad = CliRunner().invoke(app, ["evaluate", "--runs", str(runs), "--baselines", "oracle", "--json"])
    assert bad.exit_code == 2 and "baselines" in bad.output
    bad = CliRunner().invoke(app, ["evaluate", "--runs", str(runs), "--test-fraction", "1.5"])
    assert bad.exit_code == 2


def test_evaluate_a_saved_artifact(gsm8k_runs_path: Path, tmp_path: Path) -> None:
    from models import persist
    from models.data import read_run_csv
    from models.predictor import DifficultyPredictor

    runs = _small_run_file(gsm8k_runs_path, tmp_path)
    artifact = tmp_path / "predictor.skops"
    model = DifficultyPredictor(n_components=8, mf_rank=0).fit(read_run_csv(runs))
    artifact.write_bytes(persist.dumps(model))
    args = ["evaluate", "--runs", str(runs), "--artifact", str(artifact), "--baselines", "", "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert [r["forecaster"] for r in out["summary"]] == ["predictor"]
    assert "fit_s" not in out["summary"][0]
    (tmp_path / "bad.skops").write_bytes(b"junk")
    bad = CliRunner().invoke(
        app, ["evaluate", "--runs", str(runs), "--artifact", str(tmp_path / "bad.skops")]
    )
    assert bad.exit_code == 2 and "skops" in bad.output
