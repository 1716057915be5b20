"""`planner simulate`: one JSON object with --json, a report folder, clean errors."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from planner.cli import app
from tests.simulator.scenarios import SMALL_TOML

runner = CliRunner()


def test_simulate_two_scenarios_json_and_report(tmp_path: Path) -> None:
    a, b = tmp_path / "a.toml", tmp_path / "b.toml"
    a.write_text(SMALL_TOML.format(name="single", strategy="single"))
    b.write_text(SMALL_TOML.format(name="vote5", strategy="vote5"))
    res = runner.invoke(app, ["simulate", str(a), str(b), "--report", str(tmp_path / "rep"), "--json"])
    assert res.exit_code == 0, res.output
    payload = json.loads(res.stdout)
    assert [s["scenario"] for s in payload["scenarios"]] == ["single", "vote5"]
    assert payload["scenarios"][0]["replicates"] == 2
    assert Path(payload["report"]).is_file()
    single, vote = (s["metrics"]["output_tokens_per_s"]["mean"] for s in payload["scenarios"])
    assert vote > single


def test_simulate_table_and_errors(tmp_path: Path) -> None:
    a = tmp_path / "a.toml"
    a.write_text(SMALL_TOML.format(name="x", strategy="single"))
    res = runner.invoke(app, ["simulate", str(a), "--replicates", "1"])
    assert res.exit_code == 0 and "SLO attainment" in res.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text(SMALL_TOML.format(name="x", strategy="no-such-strategy"))
    res = runner.invoke(app, ["simulate", str(bad), "--json"])
    assert res.exit_code == 2
    err = json.loads(res.stdout)
    assert err["error"] == "InvalidArgumentError" and "routes" in err["message"]


def test_simulate_with_the_planner_policy(tmp_path: Path) -> None:
    import pandas as pd

    from planner.catalog import load_catalog
    from planner.demo import demo_records

    runs = tmp_path / "runs.csv"
    pd.DataFrame(demo_records(load_catalog(), 200, seed=2)).to_csv(runs, index=False)
    a = tmp_path / "a.toml"
    a.write_text(SMALL_TOML.format(name="p", strategy="single"))
    args = ["simulate", str(a), "--policy", "planner", "--runs", str(runs), "--replicates", "1", "--json"]
    res = runner.invoke(app, [*args, "--budget-usd-per-request", "0.001"])
    assert res.exit_code == 0, res.output
    (s,) = json.loads(res.stdout)["scenarios"]
    assert s["scenario"] == "p+planner"
    assert 0 < s["metrics"]["expected_quality"]["mean"] <= 1
    res = runner.invoke(app, ["simulate", str(a), "--policy", "planner", "--json"])
    assert res.exit_code == 2 and "runs" in json.loads(res.stdout)["message"]
