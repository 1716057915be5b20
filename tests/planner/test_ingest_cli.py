"""`planner runs import|stats` on the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from planner.cli import app


def _csv(tmp_path: Path, bad_row: int | None = None) -> Path:
    frame = pd.DataFrame(
        {"id": [f"q{i}" for i in range(12)], "text": ["hello"] * 12, "model": "m", "ok": [1, 0] * 6}
    )
    if bad_row is not None:
        frame.loc[bad_row - 1, "ok"] = 3
    path = tmp_path / "runs.csv"
    frame.to_csv(path, index=False)
    return path


def test_import_with_mappings_then_stats(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    path = _csv(tmp_path)
    args = [
        "runs",
        "import",
        str(path),
        "--map",
        "id=query_id",
        "--map",
        "text=prompt",
        "--map",
        "ok=correct",
    ]
    runner = CliRunner()
    out = runner.invoke(app, [*args, "--task", "greet", "--chunk-size", "5", "--database-url", url, "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout) | {"source": ""} == {
        "source": "",
        "rows_read": 12,
        "inserted": 12,
        "skipped_duplicates": 0,
        "ignored_columns": [],
    }
    plain = runner.invoke(app, [*args, "--task", "greet", "--database-url", url])
    assert plain.exit_code == 0 and "12 already present" in plain.stdout
    stats = json.loads(
        runner.invoke(app, ["runs", "stats", "--task", "greet", "--database-url", url, "--json"]).stdout
    )
    assert stats["rows"] == 12 and stats["per_tier"][0]["accuracy"] == 0.5


def test_bad_row_exits_non_zero_with_a_json_error(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    path = _csv(tmp_path, bad_row=8)
    args = ["runs", "import", str(path), "--map", "id=query_id", "--map", "ok=correct", "--database-url", url]
    out = CliRunner().invoke(app, [*args, "--json"])
    assert out.exit_code == 2
    error = json.loads(out.stdout)
    assert error["error"] == "ImportRowError" and "row 8" in error["message"]
    stats = json.loads(CliRunner().invoke(app, ["runs", "stats", "--database-url", url, "--json"]).stdout)
    assert stats["rows"] == 0
