"""`planner hardware price|calibrate`: one JSON object with --json, real catalog and calibration."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import planner.cli.hardware  # noqa: F401  (registers the commands)
from planner.cli.app import app


def test_price_json_lists_unit_costs() -> None:
    result = CliRunner().invoke(app, ["hardware", "price", "--tier", "llama-3.1-8b", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    targets = {u["target"] for u in data["units"]}
    assert "H100-SXM5-80GB" in targets and all(u["tier"] == "llama-3.1-8b" for u in data["units"])
    assert all(u["usd_per_output_token"] > 0 for u in data["units"])


def test_price_table_runs() -> None:
    result = CliRunner().invoke(app, ["hardware", "price", "--target", "H100-SXM5-80GB", "--batch", "16"])
    assert result.exit_code == 0, result.output
    assert "H100" in result.output


@pytest.mark.shared_data
def test_calibrate_writes_json(shared_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "cal.json"
    csv = shared_data / "hardware" / "mlenergy_h100.csv"
    result = CliRunner().invoke(app, ["hardware", "calibrate", str(csv), "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["metrics"]["lomo_itl_median_ape"] < 0.2
    assert json.loads(out.read_text())["efficiency"] == data["efficiency"]
