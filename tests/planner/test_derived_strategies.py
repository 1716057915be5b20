"""Run strategy names the catalog does not know: read kind and shape off the name and params, alias the
catalog strategy of the same shape, or derive one with a token multiplier measured from the runs."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from planner.catalog import StrategyKind, load_catalog
from planner.derived_strategies import kind_of, params_key, resolve_strategies, shape_of
from planner.derived_tiers import extend_catalog, remap_runs
from planner.options import OptionSet
from simulator.costmodel import CostModel

K = StrategyKind


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("majority_vote", K.MAJORITY_VOTE),
        ("maj@8", K.MAJORITY_VOTE),
        ("self_consistency_16", K.MAJORITY_VOTE),
        ("cot_sc", K.MAJORITY_VOTE),
        ("best_of_4", K.BEST_OF_N),
        ("bo16", K.BEST_OF_N),
        ("greedy", K.SINGLE),
        ("zero-shot", K.SINGLE),
        ("self_refine", K.REVISION),
        ("CoT", K.CHAIN_OF_THOUGHT),
        ("think", K.CHAIN_OF_THOUGHT),
        ("beam_search", K.PRM_SEARCH),
        ("mystery", None),
    ],
)
def test_kind_from_name(name: str, kind: StrategyKind | None) -> None:
    assert kind_of(name) is kind


def test_shape_from_params_or_name() -> None:
    assert shape_of("majority_vote", params_key({"n": 5})) == (K.MAJORITY_VOTE, 5, 1)
    assert shape_of("maj@8", "{}") == (K.MAJORITY_VOTE, 8, 1)
    assert shape_of("self_refine", params_key('{"rounds": 3}')) == (K.REVISION, 1, 3)
    assert shape_of("greedy", "{}") == (K.SINGLE, 1, 1)
    # several samples of a plain or chain-of-thought pass are voted over (self-consistency)
    assert shape_of("cot@8", "{}") == (K.MAJORITY_VOTE, 8, 1)
    assert shape_of("chain_of_thought", params_key({"n": 5})) == (K.MAJORITY_VOTE, 5, 1)
    assert shape_of("cot", "{}") == (K.CHAIN_OF_THOUGHT, 1, 1)
    assert shape_of("cot_v2", "{}") == (K.CHAIN_OF_THOUGHT, 1, 1)  # a version number is not a count
    assert shape_of("greedy", params_key({"n": 1})) == (K.SINGLE, 1, 1)
    assert "answer key" in str(shape_of("pass@8", "{}"))  # an oracle metric, not a deployable strategy
    assert "sample count" in str(shape_of("majority_vote", "{}"))
    assert "not recognised" in str(shape_of("mystery", "{}"))
    assert params_key(float("nan")) == params_key(None) == params_key("") == params_key({}) == ""
    assert params_key({"n": 5.0}) == params_key('{"n": 5}') == '{"n":5}'  # the store's key text


def _runs(n: int = 30) -> pd.DataFrame:
    """Plain runs of two models plus vote runs under foreign names (tokens = n x the plain run's)."""
    rng = np.random.default_rng(0)
    rows = []
    for q in range(n):
        for model in ("gpt-4o-mini-2024-07-18", "gemma-2-9b-it"):
            tokens = int(rng.integers(50, 300))
            base = {"task": "t", "query_id": f"q{q}", "model": model, "correct": 1}
            rows.append(base | {"strategy": "greedy", "output_tokens": tokens})
            for k in (5, 16):
                params = json.dumps({"n": k})
                rows.append(
                    base
                    | {"strategy": "majority_vote", "strategy_params": params, "output_tokens": k * tokens}
                )
            rows.append(base | {"strategy": "mystery", "output_tokens": tokens})
    return pd.DataFrame(rows)


def test_resolution_aliases_and_derives() -> None:
    catalog = load_catalog()
    res = resolve_strategies(catalog, _runs())
    assert res.mapping[("greedy", "")] == "single"
    assert res.mapping[("majority_vote", params_key({"n": 5}))] == "vote5"
    derived = res.mapping[("majority_vote", params_key({"n": 16}))]
    assert derived == "majority_vote-n16"
    (s,) = res.derived
    assert s.kind is K.MAJORITY_VOTE and s.samples == 16 and s.high_compute
    assert s.token_multiplier == pytest.approx(1.0)  # measured: 16 samples of plain length
    assert res.how["mystery"].startswith("left out")


def test_extended_catalog_offers_derived_strategies_and_remaps_runs() -> None:
    catalog = load_catalog()
    runs = _runs()
    ext = extend_catalog(catalog, runs)
    cat = ext.catalog
    assert "majority_vote-n16" in cat.tier("gemma-2-9b").strategies  # it ran it
    assert "majority_vote-n16" in cat.tier("llama-3.1-8b").strategies  # it offers votes
    out = remap_runs(runs, ext)
    assert set(out["strategy"]) == {"single", "vote5", "majority_vote-n16", "mystery"}
    assert (out["strategy"] == "single").sum() == (runs["strategy"] == "greedy").sum()
    opts = OptionSet.build(cat, CostModel(cat), ["gemma-2-9b"], strategies=["majority_vote-n16", "single"])
    mult = {o.strategy: o.output_multiplier for o in opts.options}
    assert mult["majority_vote-n16"] == pytest.approx(16.0) and mult["single"] == 1.0
    assert any("majority_vote" in n and "derived" in n for n in ext.notes)


def test_training_maps_foreign_strategy_names_onto_the_catalog(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from planner.ingest import import_records
    from planner.predictors.kinds import spec_for
    from planner.predictors.lifecycle import TrainConfig, train_predictor
    from planner.store import Database, PredictorRegistryStore

    catalog = load_catalog()
    db = Database(f"sqlite:///{tmp_path / 's.db'}")
    try:
        runs = _runs(n=60)
        runs["strategy_params"] = runs["strategy_params"].where(runs["strategy_params"].notna(), None)
        import_records(runs.to_dict("records"), db, catalog=catalog, source="foreign")
        config = TrainConfig.create(kind="difficulty")
        result = train_predictor(db, config, catalog.run_name_map(), catalog=catalog)
        stored = PredictorRegistryStore(db).get(result.version.version)
        predictor = spec_for(stored.kind).loads(stored.artifact)
        assert {"vote5", "majority_vote-n16"} <= set(predictor.evidence_)
        assert "majority_vote" not in predictor.evidence_
    finally:
        db.dispose()


def test_store_readers_map_runs_onto_the_catalog(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from planner.ingest import import_records
    from planner.predictors.lifecycle import load_mapped
    from planner.store import Database

    catalog = load_catalog()
    db = Database(f"sqlite:///{tmp_path / 's.db'}")
    try:
        runs = _runs(n=5)
        runs["strategy_params"] = runs["strategy_params"].where(runs["strategy_params"].notna(), None)
        import_records(runs.to_dict("records"), db, catalog=catalog, source="foreign")
        raw, names = load_mapped(db, "", catalog.run_name_map(), None)
        assert "greedy" in set(raw["strategy"]) and names == catalog.run_name_map()
        mapped, names = load_mapped(db, "", catalog.run_name_map(), catalog)
        assert set(mapped["strategy"]) == {"single", "vote5", "majority_vote-n16", "mystery"}
        assert names["gemma-2-9b-it"] == "gemma-2-9b"
    finally:
        db.dispose()
