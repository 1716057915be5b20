"""Derived tiers: run models the catalog does not know are aliased, priced from recorded costs, a price
table or their size, or left out with a note -- never silently dropped."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from planner.catalog import PriceModel, load_catalog
from planner.derived_tiers import extend_catalog, remap_runs, size_from_name
from planner.errors import InvalidArgumentError
from planner.options import OptionSet
from planner.prices import load_price_table, normalise, undated
from simulator.costmodel import CostModel


@pytest.fixture(scope="module")
def catalog():  # type: ignore[no-untyped-def]
    return load_catalog()


@pytest.mark.parametrize(
    ("name", "size"),
    [
        ("Qwen2.5-72B-Instruct", (72.0, 72.0)),
        ("Llama-3.2-3B-Instruct", (3.0, 3.0)),
        ("gemma-2-9b-it@together", (9.0, 9.0)),
        ("Mixtral-8x7B-Instruct-v0.1", (56.0, 14.0)),
        ("Qwen3-30B-A3B", (30.0, 3.0)),
        ("SmolLM-360M-Instruct", (0.36, 0.36)),
        ("org/Yi-1.5-34B-Chat", (34.0, 34.0)),
        ("Phi-3.5-mini-instruct", None),
        ("claude-3-5-haiku-20241022", None),
        ("DeepSeek-Coder-V2-0724", None),
    ],
)
def test_size_from_name(name: str, size: tuple[float, float] | None) -> None:
    assert size_from_name(name) == size


def test_names_normalise_without_provider_path_and_date() -> None:
    assert normalise("Meta/Llama-3-8B@groq") == "llama-3-8b"
    assert undated("gpt-4o-2024-08-06") == undated("GPT-4o@azure") == "gpt-4o"
    assert undated("claude-3-5-sonnet-20240620") == "claude-3-5-sonnet"
    assert undated("gpt-3.5-turbo-0125") == "gpt-3.5-turbo"


def _runs(models: dict[str, dict[str, float]], n: int = 40, seed: int = 0) -> pd.DataFrame:
    """Plain runs of `models`; a model's dict may give `in_usd`/`out_usd` per token to record cost_usd."""
    rng = np.random.default_rng(seed)
    rows = []
    for model, spec in models.items():
        for q in range(n):
            tin, tout = int(rng.integers(50, 500)), int(rng.integers(20, 800))
            row = {"model": model, "query_id": f"q{q}", "correct": int(rng.random() < 0.7)}
            row |= {"input_tokens": tin, "output_tokens": tout, "strategy": "single"}
            if "in_usd" in spec:
                row["cost_usd"] = spec["in_usd"] * tin + spec["out_usd"] * tout
                row["latency_s"] = tout / spec.get("tps", 80.0)
            rows.append(row)
    return pd.DataFrame(rows)


def test_known_models_leave_the_catalog_unchanged(catalog) -> None:  # type: ignore[no-untyped-def]
    ext = extend_catalog(catalog, _runs({"gpt-4o-2024-08-06": {}, "gemma-2-2b-it": {}}))
    assert ext.catalog is catalog and not ext.notes


def test_alias_joins_the_one_tier_of_the_same_name(catalog) -> None:  # type: ignore[no-untyped-def]
    ext = extend_catalog(catalog, _runs({"claude-3-5-sonnet@bedrock": {}, "gpt-4o": {}}))
    assert ext.catalog.run_name_map()["claude-3-5-sonnet@bedrock"] == "claude-3.5-sonnet"
    assert "alias" in ext.how["claude-3-5-sonnet@bedrock"]
    # two gpt-4o snapshots share the undated name: ambiguous, so no alias (and nothing else prices it)
    assert ext.how["gpt-4o"].startswith("left out")
    assert len(ext.catalog.tiers) == len(catalog.tiers)


def test_recorded_costs_price_a_closed_model(catalog) -> None:  # type: ignore[no-untyped-def]
    runs = _runs({"acme-pro": {"in_usd": 1e-6, "out_usd": 3e-6, "tps": 120.0}})
    ext = extend_catalog(catalog, runs)
    tier = ext.catalog.tier("acme-pro")
    assert not tier.open_weights and tier.run_names == ("acme-pro",)
    (target,) = ext.catalog.placements(tier)
    assert target.price_model is PriceModel.PER_TOKEN
    price = target.token_prices["acme-pro"]
    assert price.input_usd_per_mtok == pytest.approx(1.0, rel=1e-6)
    assert price.output_usd_per_mtok == pytest.approx(3.0, rel=1e-6)
    assert target.tokens_per_s_per_user == pytest.approx(120.0)
    # the one cost model now prices the run at what it was recorded to cost
    opts = OptionSet.build(ext.catalog, CostModel(ext.catalog), ["acme-pro"], strategies=["single"])
    usd = opts.metrics(np.array([100.0]), np.array([[200.0]]))["usd"]
    assert usd[0, 0] == pytest.approx(1e-6 * 100 + 3e-6 * 200)


def test_price_table_and_size_from_name(catalog, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    table = tmp_path / "prices.csv"
    table.write_text(
        "model,provider,input_usd_per_mtok,output_usd_per_mtok\n"
        "acme-chat-2025-01-01,acme,0.5,1.5\n"
        "somehost/Acme-Coder-32B,somehost,0.2,0.2\n"
    )
    runs = _runs({"acme-chat": {}, "Acme-Coder-32B": {}, "Acme-Tiny-1.5B": {}, "mystery": {}})
    ext = extend_catalog(catalog, runs, (load_price_table(table),))
    cat = ext.catalog
    chat = cat.tier("acme-chat")  # undated match, closed: API only
    assert not chat.open_weights
    assert [t.token_prices["acme-chat"].output_usd_per_mtok for t in cat.placements(chat)] == [1.5]
    coder = cat.tier("Acme-Coder-32B")  # priced API and self-hostable (its size is in the name)
    families = {t.price_model for t in cat.placements(coder)}
    assert coder.open_weights and PriceModel.PER_TOKEN in families and PriceModel.DEVICE_HOUR in families
    tiny = cat.tier("Acme-Tiny-1.5B")
    assert tiny.open_weights and tiny.total_params_b == 1.5
    assert all(t.price_model is not PriceModel.PER_TOKEN for t in cat.placements(tiny))
    assert ext.how["mystery"].startswith("left out") and "price table" in ext.how["mystery"]
    assert "mystery" not in {t.name for t in cat.tiers}
    # every derived tier has priced options
    opts = OptionSet.build(cat, CostModel(cat), ["acme-chat", "Acme-Coder-32B", "Acme-Tiny-1.5B"])
    assert {o.tier for o in opts.options} == {"acme-chat", "Acme-Coder-32B", "Acme-Tiny-1.5B"}


def test_bad_price_table_names_the_line(tmp_path: Path) -> None:
    table = tmp_path / "prices.csv"
    table.write_text("model,input_usd_per_mtok,output_usd_per_mtok\nok,1,2\nbad,cheap,2\n")
    with pytest.raises(InvalidArgumentError, match="line 3"):
        load_price_table(table)
    table.write_text("model,price\nx,1\n")
    with pytest.raises(InvalidArgumentError, match="lacks columns"):
        load_price_table(table)
    with pytest.raises(InvalidArgumentError, match=r"prices.*cannot read"):
        load_price_table(tmp_path / "missing.csv")


def test_remap_maps_stored_model_names_onto_the_extended_catalog(catalog) -> None:  # type: ignore[no-untyped-def]
    runs = _runs({"claude-3-5-sonnet@bedrock": {}, "Acme-7B": {}}, n=3)
    runs["tier"] = runs["model"]  # as stored before the catalog knew them
    ext = extend_catalog(catalog, runs)
    out = remap_runs(runs, ext)
    assert set(out["tier"]) == {"claude-3.5-sonnet", "Acme-7B"}


def test_evaluate_policy_replays_models_the_catalog_lacks(tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from planner.cli import app

    rng = np.random.default_rng(5)
    abilities = {"Acme-Small-7B": -0.3, "Acme-Mid-32B": 0.5, "Acme-Large-110B": 1.4, "mystery-model": 0.0}
    rows = []
    for q in range(90):
        ease = rng.normal(0, 1.2)
        for model, ability in abilities.items():
            p = 1 / (1 + np.exp(-(ability + ease)))
            rows.append(
                {"task": "unseen", "query_id": f"u{q}", "prompt": f"item {q} of kind {q % 5}", "model": model,
                 "correct": int(rng.random() < p), "output_tokens": int(rng.integers(30, 400))}
            )  # fmt: skip
    path = tmp_path / "unseen.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    result = CliRunner().invoke(
        app,
        ["evaluate-policy", "--runs", str(path), "--predictor", "prior", "--folds", "3", "--no-simulate",
         "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    notes = " | ".join(report["notes"])
    assert "'Acme-Large-110B': size from name" in notes and "'mystery-model': left out" in notes
    singles = {p["name"] for p in report["policies"] if p["kind"] == "single"}
    assert singles == {"Acme-Small-7B", "Acme-Mid-32B", "Acme-Large-110B"}


def test_hosted_copies_of_an_unknown_model_are_one_tier(catalog) -> None:  # type: ignore[no-untyped-def]
    runs = _runs({"Acme-70B@hostA": {}, "Acme-70B@hostB": {}, "Acme-8B@hostA": {}})
    ext = extend_catalog(catalog, runs)
    assert ext.catalog.tier("Acme-70B").run_names == ("Acme-70B@hostA", "Acme-70B@hostB")
    assert ext.catalog.tier("Acme-8B@hostA").run_names == ("Acme-8B@hostA",)
    assert "hosted copy" in ext.how["Acme-70B@hostB"]
    runs["tier"] = runs["model"]
    assert set(remap_runs(runs, ext)["tier"]) == {"Acme-70B", "Acme-8B@hostA"}


def test_foreign_plain_strategy_name_still_prices_from_recorded_costs(catalog) -> None:  # type: ignore[no-untyped-def]
    runs = _runs({"acme-pro": {"in_usd": 1e-6, "out_usd": 3e-6}})
    runs["strategy"] = "greedy"  # the plain single pass under another name
    ext = extend_catalog(catalog, runs)
    assert ext.how["acme-pro"] == "recorded costs"


def test_catalog_derive_cli_lists_what_was_derived(tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from planner.cli import app

    path = tmp_path / "runs.csv"
    runs = _runs({"Acme-7B": {}, "gemma-2-9b-it": {}, "mystery": {}}, n=5)
    runs.assign(strategy="greedy").to_csv(path, index=False)
    out = CliRunner().invoke(app, ["catalog", "derive", "--runs", str(path), "--json"])
    assert out.exit_code == 0, out.output
    report = json.loads(out.output)
    assert [t["name"] for t in report["derived_tiers"]] == ["Acme-7B"]
    assert report["derived_strategies"] == []
    assert any("'mystery': left out" in n for n in report["notes"])
    assert any("'greedy': alias of catalog strategy 'single'" in n for n in report["notes"])


def test_unreadable_run_file_is_a_named_error(tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from planner.cli import app

    missing = str(tmp_path / "missing.csv")
    out = CliRunner().invoke(app, ["evaluate-policy", "--runs", missing, "--json"])
    assert out.exit_code == 2
    assert json.loads(out.output)["error"] == "InvalidArgumentError" and missing in out.output
