"""Reports and sweeps: files written, JSON standard, Markdown compares scenarios; parallel == in-process."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from planner.errors import FailedPreconditionError
from simulator.report import write_report
from simulator.run import simulate
from simulator.scenario import load_scenario
from simulator.sweep import run_sweep
from tests.simulator.scenarios import H100, TIER, small

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "simulator" / "scenarios").glob("*.toml"))


def test_report_files_and_side_by_side_markdown(tmp_path: Path) -> None:
    a = simulate(small(name="base", replicates=2))
    b = simulate(small(name="bon", replicates=2, routes=[{"tier": TIER, "strategy": "bon4", "target": H100}]))
    md = write_report([a, b], tmp_path / "rep")
    names = {p.name for p in (tmp_path / "rep").iterdir()}
    assert {"report.md", "report.html", "result.json", "latency_cdf.png", "comparison.png"} <= names
    assert {"spend_per_hour.png", "energy_per_hour.png"} <= names
    text = md.read_text()
    assert "| metric | base | bon |" in text and "end-to-end p99" in text and "CO2e" in text
    payload = json.loads((tmp_path / "rep" / "result.json").read_text())
    assert [s["scenario"] for s in payload["scenarios"]] == ["base", "bon"]
    assert payload["scenarios"][1]["latency_cdf"]["e2e_s"]["cdf"][-1] == pytest.approx(1.0)
    assert "<table" in (tmp_path / "rep" / "report.html").read_text()


def test_parallel_sweep_equals_in_process() -> None:
    scs = [small(name="a", replicates=2), small(name="b", seed=9)]
    local = run_sweep(scs, workers=1)
    parallel = run_sweep(scs, workers=2)
    assert [r.to_dict() for r in local] == [r.to_dict() for r in parallel]
    assert local[0].to_dict() == simulate(scs[0]).to_dict()


def test_ray_sweep_without_ray_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # as if the distributed extra were not installed
    with pytest.raises(FailedPreconditionError, match="distributed"):
        run_sweep([small()], ray_address="auto")


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="needs the distributed extra (ray)")
def test_ray_sweep_matches_local() -> None:  # scripts/test.sh installs the distributed extra
    sc = small(replicates=2)
    assert run_sweep([sc], ray_address="local")[0].to_dict() == simulate(sc).to_dict()


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_scenarios_load_and_validate(path: Path, shared_data: Path) -> None:
    from simulator.run import prepare

    setup = prepare(load_scenario(path))
    assert setup.pools
