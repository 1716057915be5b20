"""The catalog: the packaged default loads and covers the real runs; bad files fail with field violations."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from planner.catalog import (
    BYTES_PER_PARAM,
    WEIGHT_OVERHEAD,
    Catalog,
    ModelTier,
    PriceModel,
    Target,
    TargetFamily,
    catalog_from_dict,
    load_catalog,
    parse_catalog,
)
from planner.cli import app
from planner.errors import CatalogError, NotFoundError

DEFAULT_TOML = Path(__file__).resolve().parents[2] / "planner" / "default_catalog.toml"

SMALL = """
name = "small"

[[tiers]]
name = "open-8b"
total_params_b = 8.0
active_params_b = 8.0
strategies = ["single", "vote3"]
run_names = ["Open-8B-Instruct"]

[[tiers]]
name = "closed-big"
total_params_b = 200.0
active_params_b = 200.0
open_weights = false
provider = "acme"
strategies = ["single"]

[[strategies]]
name = "single"

[[strategies]]
name = "vote3"
kind = "majority_vote"
samples = 3

[[targets]]
name = "gpu"
family = "gpu"
price_model = "device_hour"
memory_gb = 80
max_devices = 2
usd_per_hour = 4.0

[[targets]]
name = "acme-api"
family = "api"
price_model = "per_token"
provider = "acme"
tokens_per_s_per_user = 50

[targets.token_prices."closed-big"]
input_usd_per_mtok = 1.0
output_usd_per_mtok = 2.0
"""


@pytest.fixture(scope="module")
def default() -> Catalog:
    return load_catalog()


@pytest.fixture(scope="module")
def run_model_names(gsm8k_runs_path: Path) -> list[str]:
    return sorted(pd.read_csv(gsm8k_runs_path, usecols=["model"])["model"].unique())


def violations_of(text: str) -> list[tuple[str, object]]:
    with pytest.raises(CatalogError) as info:
        parse_catalog(text)
    assert info.value.violations, "a CatalogError must carry violations"
    return [(v.field, v.value) for v in info.value.violations]


# ---- the packaged default ----------------------------------------------------------------------------------


def test_default_catalog_loads_with_every_section(default: Catalog) -> None:
    assert default.name == "default"
    assert len(default.tiers) >= 30
    assert {s.name for s in default.strategies} >= {
        "single",
        "cot",
        "vote3",
        "vote5",
        "vote8",
        "bon4",
        "bon8",
    }
    families = {t.family for t in default.targets}
    assert families == set(TargetFamily)
    assert {"A100-SXM4-80GB", "H100-SXM5-80GB", "H200-SXM-141GB", "B200-HGX-192GB"} <= {
        t.name for t in default.targets
    }
    assert default.regions and default.tenants
    assert default.tenant("default").spend_usd > 0


def test_default_catalog_from_path_equals_packaged(default: Catalog) -> None:
    assert load_catalog(DEFAULT_TOML).content_hash() == default.content_hash()


def test_every_gsm8k_run_model_maps_to_a_tier(default: Catalog, run_model_names: list[str]) -> None:
    assert len(run_model_names) == 42
    mapping = default.run_name_map()
    missing = [m for m in run_model_names if m not in mapping]
    assert missing == []
    for name in run_model_names:
        assert default.tier_for_run_name(name).name == mapping[name]


def test_hosted_copies_share_a_tier(default: Catalog) -> None:
    llama = {
        default.tier_for_run_name(n).name
        for n in (
            "Llama-3.1-405B-Inst@sambanova",
            "Llama-3.1-405B-Instruct-Turbo",
            "Meta-Llama-3.1-405B-Instruct@hyperbolic",
        )
    }
    assert len(llama) == 1
    assert default.tier_for_run_name("gemma-2-27b-it@together").name == "gemma-2-27b"
    assert default.tier_for_run_name("o1-mini-2024-09-12").reasoning
    with pytest.raises(NotFoundError):
        default.tier_for_run_name("no-such-model")


def test_every_tier_fits_somewhere_and_lists_known_strategies(default: Catalog) -> None:
    names = {s.name for s in default.strategies}
    for tier in default.tiers:
        assert default.placements(tier), tier.name
        assert tier.strategies and set(tier.strategies) <= names, tier.name


def test_closed_models_only_on_their_providers_api(default: Catalog) -> None:
    closed = [t for t in default.tiers if not t.open_weights]
    assert len(closed) >= 15
    for tier in closed:
        assert tier.provider
        targets = default.placements(tier)
        assert targets, tier.name
        for target in targets:
            assert target.family is TargetFamily.API
            assert target.provider == tier.provider, (tier.name, target.name)


def test_a_model_that_does_not_fit_is_never_placed(default: Catalog) -> None:
    big = default.tier("llama-3.1-405b")
    placed = {t.name for t in default.placements(big)}
    assert "A100-SXM4-80GB" not in placed and "H100-SXM5-80GB" not in placed
    assert "H200-SXM-141GB" in placed
    for tier, _strategy, target in default.combinations():
        if target.price_model is not PriceModel.PER_TOKEN:
            assert tier.open_weights
            assert tier.weights_gb * WEIGHT_OVERHEAD <= target.memory_gb * target.max_devices


def test_every_figure_has_a_source(default: Catalog) -> None:
    for tier in default.tiers:
        assert tier.source, tier.name
    for target in default.targets:
        assert target.source, target.name
        for tier_name, price in target.token_prices.items():
            assert price.source, (target.name, tier_name)
    for region in default.regions:
        assert region.source and region.grid_gco2_per_kwh > 0, region.name


def test_high_compute_marks_the_expensive_strategies(default: Catalog) -> None:
    for strategy in default.strategies:
        assert strategy.output_multiplier > 0
        if strategy.samples >= 8 or strategy.kind.value == "prm_search":
            assert strategy.high_compute, strategy.name


def test_content_hash_is_stable(default: Catalog) -> None:
    again = load_catalog()
    assert again.content_hash() == default.content_hash()
    assert len(default.content_hash()) == 16
    small = parse_catalog(SMALL)
    assert parse_catalog(SMALL).content_hash() == small.content_hash()
    assert catalog_from_dict(small.to_dict()).content_hash() == small.content_hash()
    # integer and float spellings of the same figure are the same catalog
    assert (
        parse_catalog(SMALL.replace("memory_gb = 80", "memory_gb = 80.0")).content_hash()
        == small.content_hash()
    )
    changed = parse_catalog(SMALL.replace("usd_per_hour = 4.0", "usd_per_hour = 4.5"))
    assert changed.content_hash() != small.content_hash()


def test_default_round_trips_through_dict(default: Catalog) -> None:
    assert catalog_from_dict(default.to_dict()) == default


# ---- bad files ---------------------------------------------------------------------------------------------

BAD_CASES = {
    "negative memory": (("memory_gb = 80", "memory_gb = -80"), "targets[0].memory_gb", -80),
    "unknown strategy reference": (
        ('strategies = ["single", "vote3"]', 'strategies = ["single", "vote9"]'),
        "tiers[0].strategies",
        "vote9",
    ),
    "duplicate tier name": (('name = "closed-big"', 'name = "open-8b"'), "tiers[1].name", "open-8b"),
    "unknown enum value": (
        ('kind = "majority_vote"', 'kind = "majority_rule"'),
        "strategies[1].kind",
        "majority_rule",
    ),
    "unknown family": (('family = "gpu"', 'family = "tpu"'), "targets[0].family", "tpu"),
    "closed model without provider": (
        ('provider = "acme"\nstrategies', "strategies"),
        "tiers[1].provider",
        "",
    ),
    "missing required field": (("total_params_b = 8.0\n", ""), "tiers[0].total_params_b", None),
    "active above total": (
        ("active_params_b = 8.0", "active_params_b = 9.0"),
        "tiers[0].active_params_b",
        9.0,
    ),
    "unknown precision": (
        ("total_params_b = 8.0", 'total_params_b = 8.0\nprecision = "fp7"'),
        "tiers[0].precision",
        "fp7",
    ),
    "vote with one sample": (("samples = 3", "samples = 1"), "strategies[1].samples", 1),
    "unknown tier priced": (
        ('[targets.token_prices."closed-big"]', '[targets.token_prices."ghost"]'),
        None,
        None,
    ),
    "device-hour without price": (
        ("usd_per_hour = 4.0", "usd_per_hour = 0.0"),
        "targets[0].usd_per_hour",
        0.0,
    ),
    "unknown field": (("max_devices = 2", "max_devices = 2\nmax_gpus = 2"), "targets[0].max_gpus", 2),
    "model fits nowhere": (("total_params_b = 8.0", "total_params_b = 800.0"), "tiers[0].name", "open-8b"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_catalog_names_field_and_value(case: str) -> None:
    (old, new), field, value = BAD_CASES[case]
    assert old in SMALL, "the test edit must apply"
    found = violations_of(SMALL.replace(old, new, 1))
    if field is None:  # the first cross-reference problem found, whichever it is
        assert any("ghost" in repr(v) for _f, v in found), found
    else:
        assert (field, value) in found, found


def test_bad_toml_is_a_catalog_error() -> None:
    found = violations_of("[[tiers]\nname = ")
    assert found[0][0] == "(file)"


def test_closed_model_priced_on_another_providers_target() -> None:
    text = SMALL.replace(
        'provider = "acme"\ntokens_per_s_per_user', 'provider = "other"\ntokens_per_s_per_user'
    )
    found = violations_of(text)
    assert ("tiers[1].provider", "acme") in found
    assert ("targets[1].token_prices", "closed-big") in found


def test_unreadable_path_is_a_catalog_error(tmp_path: Path) -> None:
    with pytest.raises(CatalogError) as info:
        load_catalog(tmp_path / "missing.toml")
    assert info.value.violations[0].field == "path"


@settings(max_examples=40, deadline=None)
@given(
    section=st.sampled_from(
        [("targets", 0, "memory_gb"), ("targets", 0, "usd_per_hour"), ("tiers", 0, "total_params_b")]
    ),
    value=st.floats(max_value=-1e-6, min_value=-1e6, allow_nan=False),
)
def test_any_negative_figure_is_rejected_with_its_path(section: tuple[str, int, str], value: float) -> None:
    data = parse_catalog(SMALL).to_dict()
    name, index, key = section
    data[name][index][key] = value
    with pytest.raises(CatalogError) as info:
        catalog_from_dict(data)
    assert (f"{name}[{index}].{key}", value) in [(v.field, v.value) for v in info.value.violations]


# ---- fitting is memory arithmetic --------------------------------------------------------------------------


@settings(max_examples=80, deadline=None)
@given(
    params=st.floats(min_value=0.1, max_value=2000.0),
    precision=st.sampled_from(sorted(BYTES_PER_PARAM)),
    memory=st.floats(min_value=1.0, max_value=256.0),
    devices=st.integers(min_value=1, max_value=16),
    open_weights=st.booleans(),
)
def test_fits_iff_weights_fit_memory(
    params: float, precision: str, memory: float, devices: int, open_weights: bool
) -> None:
    tier = ModelTier(
        name="t",
        total_params_b=params,
        active_params_b=params,
        precision=precision,
        open_weights=open_weights,
        provider="acme",
    )
    target = Target(
        name="g",
        family=TargetFamily.GPU,
        price_model=PriceModel.DEVICE_HOUR,
        memory_gb=memory,
        max_devices=devices,
        usd_per_hour=1.0,
    )
    small = parse_catalog(SMALL)
    expected = open_weights and params * BYTES_PER_PARAM[precision] * WEIGHT_OVERHEAD <= memory * devices
    assert small.fits(tier, target) == expected


# ---- CLI ---------------------------------------------------------------------------------------------------


def test_cli_show_json_is_one_object(default: Catalog) -> None:
    result = CliRunner().invoke(app, ["catalog", "show", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["content_hash"] == default.content_hash()
    assert data["counts"]["tiers"] == len(default.tiers)
    assert {t["name"] for t in data["targets"]} == {t.name for t in default.targets}


def test_cli_show_table() -> None:
    result = CliRunner().invoke(app, ["catalog", "show", "--path", str(DEFAULT_TOML)])
    assert result.exit_code == 0, result.output
    assert "Model tiers" in result.stdout and "Targets" in result.stdout


def test_cli_validate(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text(SMALL)
    ok = CliRunner().invoke(app, ["catalog", "validate", str(good), "--json"])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["valid"] is True
    bad = tmp_path / "bad.toml"
    bad.write_text(SMALL.replace("memory_gb = 80", "memory_gb = -80"))
    failed = CliRunner().invoke(app, ["catalog", "validate", str(bad)])
    assert failed.exit_code == 1
    assert "targets[0].memory_gb" in failed.stdout and "-80" in failed.stdout
    failed_json = CliRunner().invoke(app, ["catalog", "validate", str(bad), "--json"])
    assert failed_json.exit_code == 1
    assert json.loads(failed_json.stdout)["violations"][0]["field"] == "targets[0].memory_gb"
