"""Price sources for run models the catalog does not know: the user's table first, then the list prices
bundled with tokencost (read without importing it)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from planner.catalog import load_catalog
from planner.derived_tiers import extend_catalog
from planner.prices import (
    LIST_PRICE_PACKAGE,
    PriceRow,
    PriceTable,
    find_price,
    list_price_table,
    load_price_table,
    price_tables,
)


@pytest.fixture
def fake_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A stand-in tokencost folder whose model_prices.json the test writes."""
    folder = tmp_path / LIST_PRICE_PACKAGE
    folder.mkdir()
    real = importlib.util.find_spec

    def find_spec(name: str, *args: Any) -> Any:
        if name == LIST_PRICE_PACKAGE:
            return importlib.util.spec_from_file_location(
                name, folder / "__init__.py", submodule_search_locations=[str(folder)]
            )
        return real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    monkeypatch.setattr("importlib.metadata.version", lambda name: "9.9")
    list_price_table.cache_clear()
    yield folder
    list_price_table.cache_clear()


def test_list_prices_keep_priced_text_models_only(fake_package: Path) -> None:
    (fake_package / "model_prices.json").write_text(
        json.dumps(
            {
                "acme-large": {"input_cost_per_token": 2e-6, "output_cost_per_token": 8e-6, "mode": "chat"},
                "acme-free": {"input_cost_per_token": 0.0, "output_cost_per_token": 0.0, "mode": "chat"},
                "acme-embed": {
                    "input_cost_per_token": 1e-7,
                    "output_cost_per_token": 0.0,
                    "mode": "embedding",
                },
                "acme-nomode": {"input_cost_per_token": 1e-6, "output_cost_per_token": 1e-6},
                "acme-partial": {"input_cost_per_token": 1e-6},
                "sample_spec": "not a model",
            }
        )
    )
    table = list_price_table()
    assert table is not None and table.source == "tokencost 9.9 list price"
    assert {r.model for r in table.rows} == {"acme-large", "acme-nomode"}
    row = table.find("Acme-Large@bedrock")
    assert row is not None and (row.input_usd_per_mtok, row.output_usd_per_mtok) == pytest.approx((2.0, 8.0))


def test_an_unreadable_or_missing_package_gives_no_list_prices(fake_package: Path) -> None:
    (fake_package / "model_prices.json").write_text("{not json")
    assert list_price_table() is None
    assert price_tables(None) == ()


def test_the_users_table_comes_first(tmp_path: Path) -> None:
    csv = tmp_path / "mine.csv"
    csv.write_text("model,input_usd_per_mtok,output_usd_per_mtok\ngpt-4-turbo,1,2\n")
    tables = price_tables(csv)
    assert tables[0].source == "price table mine.csv"
    found = find_price(tables, "gpt-4-turbo")
    assert found is not None and found[0].output_usd_per_mtok == 2.0
    assert price_tables(csv, list_prices=False) == (load_price_table(csv),)
    assert find_price(tables, "no-such-model-anywhere") is None
    mine_then_other = (PriceTable((PriceRow("x", 1, 1),), "a"), PriceTable((PriceRow("y", 3, 3),), "b"))
    found = find_price(mine_then_other, "y")
    assert found is not None and found[1].source == "b"


def test_the_installed_list_prices_price_a_closed_model_without_recorded_costs() -> None:
    list_price_table.cache_clear()
    tables = price_tables(None)
    assert tables and tables[-1].source.startswith("tokencost")
    assert LIST_PRICE_PACKAGE not in sys.modules  # read from its folder, never imported
    runs = pd.DataFrame(
        {
            "task": "t",
            "query_id": [f"q{i}" for i in range(30)],
            "model": "gpt-4-1106-preview",  # not a catalog tier; no cost_usd, no size in the name
            "correct": 1,
            "input_tokens": 100,
            "output_tokens": 50,
        }
    )
    catalog = load_catalog()
    assert "gpt-4-1106-preview" not in catalog.run_name_map()
    ext = extend_catalog(catalog, runs, tables)
    assert "tokencost" in ext.how["gpt-4-1106-preview"] and "list price" in ext.how["gpt-4-1106-preview"]
    target = ext.catalog.target("api:gpt-4-1106-preview")
    price = target.token_prices["gpt-4-1106-preview"]
    assert price.input_usd_per_mtok > 0 and price.output_usd_per_mtok > price.input_usd_per_mtok
    left_out = extend_catalog(catalog, runs, ())
    assert left_out.how["gpt-4-1106-preview"].startswith("left out")
