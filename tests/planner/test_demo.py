"""Demo history: deterministic, idempotent, accuracies follow the published figures, CLI seeds it."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from planner.catalog import load_catalog
from planner.cli import app
from planner.demo import PUBLISHED_GSM8K, demo_records, seed_demo
from planner.store import Database, RunStore


def test_demo_records_are_deterministic_per_seed() -> None:
    catalog = load_catalog()
    first = demo_records(catalog, n_queries=60, seed=3)
    assert first == demo_records(catalog, n_queries=60, seed=3)
    assert first != demo_records(catalog, n_queries=60, seed=4)


def test_seed_demo_is_idempotent_and_has_several_tasks_strategies_and_days(sqlite_db: Database) -> None:
    catalog = load_catalog()
    inserted = seed_demo(sqlite_db, catalog, n_queries=300, seed=0)
    assert inserted > 300 * 5
    assert seed_demo(sqlite_db, catalog, n_queries=300, seed=0) == 0
    frame = RunStore(sqlite_db).load_frame()
    assert len(frame) == inserted
    assert frame["task"].nunique() >= 3 and frame["strategy"].nunique() >= 2
    assert frame["sample_index"].max() >= 2 and frame["tenant"].nunique() >= 2
    assert frame["timestamp"].dt.floor("D").nunique() >= 25
    assert frame["prompt_chars"].notna().all() and frame["input_tokens"].notna().all()
    assert set(frame["tier"]) <= {t.name for t in catalog.tiers}


def test_demo_accuracies_follow_published_figures() -> None:
    catalog = load_catalog()
    frame = pd.DataFrame(demo_records(catalog, n_queries=1500, seed=0))
    math = frame[(frame["task"] == "math") & (frame["strategy"] == "single") & (frame["sample_index"] == 0)]
    acc = math.groupby("tier")["correct"].mean()
    for tier, (published, _source) in PUBLISHED_GSM8K.items():
        if tier in acc.index:
            assert abs(acc[tier] - published) < 0.08, (tier, acc[tier], published)
    assert acc["llama-3.1-405b"] > acc["llama-3.1-8b"] > acc["gemma-2-2b"]


def test_harder_queries_have_longer_prompts_and_outputs() -> None:
    frame = pd.DataFrame(demo_records(load_catalog(), n_queries=800, seed=1))
    plain = frame[(frame["strategy"] == "single") & (frame["sample_index"] == 0)]
    per_query = plain.groupby("query_id").agg(
        acc=("correct", "mean"), length=("prompt", lambda s: len(s.iloc[0])), tokens=("output_tokens", "mean")
    )
    assert per_query["acc"].corr(per_query["length"]) < -0.2
    assert per_query["acc"].corr(per_query["tokens"]) < -0.2


def test_cli_demo_and_stats_json(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    runner = CliRunner()
    out = runner.invoke(app, ["demo", "--queries", "50", "--database-url", url, "--json"])
    assert out.exit_code == 0, out.output
    seeded = json.loads(out.stdout)
    assert seeded["inserted"] == seeded["total_runs"] > 0
    again = json.loads(
        runner.invoke(app, ["demo", "--queries", "50", "--database-url", url, "--json"]).stdout
    )
    assert again["inserted"] == 0
    stats = json.loads(runner.invoke(app, ["runs", "stats", "--database-url", url, "--json"]).stdout)
    assert stats["rows"] == seeded["total_runs"] and stats["tasks"] >= 3
