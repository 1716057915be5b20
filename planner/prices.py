"""Per-token API prices by model name, for run models the catalog does not know (`planner.derived_tiers`).

Two sources, tried in this order by `price_tables`:
1. a price table the user names (`--prices FILE`, `PLANNER_PRICE_TABLE`): a CSV with columns `model,
   input_usd_per_mtok, output_usd_per_mtok` (tokencost's export of LiteLLM's table has them);
2. the list prices that ship with the `tokencost` package (LiteLLM's `model_prices_and_context_window`
   table: about 1,100 priced chat models of 60+ providers; `PLANNER_LIST_PRICES=false` turns them off).
   The JSON is read from the installed package's folder without importing the package, whose import may
   try the network. Rows without both prices, with both at zero, or of a non-text mode (embeddings,
   images, audio) are skipped.

A model matches a row of the same normalised name (lower case, without `@provider` and a `vendor/` path),
else -- when that leaves one price -- of the same name without a trailing date.
"""

from __future__ import annotations

import csv
import importlib.metadata
import importlib.util
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from planner.errors import InvalidArgumentError

_DATE = re.compile(r"[-_@.](?:20\d{2}-?\d{2}-?\d{2}|\d{4})$")
_TEXT_MODES = {"chat", "completion", "responses", ""}
LIST_PRICE_PACKAGE = "tokencost"


def normalise(name: str) -> str:
    """Lower case, without `@provider`, a `vendor/` path prefix and surrounding blanks."""
    return name.split("@", 1)[0].rsplit("/", 1)[-1].strip().lower()


def undated(name: str) -> str:
    """`normalise(name)` without a trailing date or 4-digit version (`-20240620`, `-2024-08-06`, `-0125`)."""
    return _DATE.sub("", normalise(name))


@dataclass(frozen=True)
class PriceRow:
    model: str
    input_usd_per_mtok: float
    output_usd_per_mtok: float


@dataclass(frozen=True)
class PriceTable:
    """API prices by model name (`load_price_table`, `list_price_table`); `source` names it in notes."""

    rows: tuple[PriceRow, ...]
    source: str = "price table"

    def find(self, model: str) -> PriceRow | None:
        """The row for `model`: same normalised name, else same undated name when that leaves one price;
        first-party rows (no `vendor/` prefix) first."""
        key = normalise(model)
        exact = [r for r in self.rows if normalise(r.model) == key]
        if exact:
            return min(exact, key=lambda r: "/" in r.model)
        loose = [r for r in self.rows if undated(r.model) == undated(model)]
        prices = {(r.input_usd_per_mtok, r.output_usd_per_mtok) for r in loose}
        return min(loose, key=lambda r: "/" in r.model) if len(prices) == 1 else None


def load_price_table(path: str | Path) -> PriceTable:
    """Read a price CSV with columns `model, input_usd_per_mtok, output_usd_per_mtok` (others ignored);
    a bad row raises InvalidArgumentError naming its line."""
    rows = []
    try:
        fh = open(path, newline="", encoding="utf-8")  # noqa: SIM115 (closed by the with below)
    except OSError as exc:
        raise InvalidArgumentError.for_field("prices", str(path), f"cannot read: {exc.strerror}") from None
    with fh:
        reader = csv.DictReader(fh)
        need = {"model", "input_usd_per_mtok", "output_usd_per_mtok"}
        missing = need - set(reader.fieldnames or ())
        if missing:
            raise InvalidArgumentError.for_field("prices", str(path), f"lacks columns {sorted(missing)}")
        for line, rec in enumerate(reader, start=2):
            try:
                row = PriceRow(
                    rec["model"], float(rec["input_usd_per_mtok"]), float(rec["output_usd_per_mtok"])
                )
            except (TypeError, ValueError):
                raise InvalidArgumentError.for_field(
                    f"prices line {line}", rec, "prices must be numbers"
                ) from None
            if not (row.model and row.input_usd_per_mtok >= 0 and row.output_usd_per_mtok >= 0):
                raise InvalidArgumentError.for_field(
                    f"prices line {line}", rec, "needs a model and prices >= 0"
                )
            rows.append(row)
    return PriceTable(tuple(rows), f"price table {Path(path).name}")


@cache
def list_price_table() -> PriceTable | None:
    """The list prices bundled with the installed `tokencost` package, or None when it is not installed."""
    spec = importlib.util.find_spec(LIST_PRICE_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "model_prices.json"
    try:
        table = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    rows = []
    for model, entry in table.items():
        if not isinstance(entry, dict) or str(entry.get("mode") or "") not in _TEXT_MODES:
            continue
        price_in, price_out = entry.get("input_cost_per_token"), entry.get("output_cost_per_token")
        if not (isinstance(price_in, int | float) and isinstance(price_out, int | float)):
            continue
        if price_in < 0 or price_out < 0 or price_in + price_out == 0:
            continue
        rows.append(PriceRow(str(model), float(price_in) * 1e6, float(price_out) * 1e6))
    version = importlib.metadata.version(LIST_PRICE_PACKAGE)
    return PriceTable(tuple(rows), f"{LIST_PRICE_PACKAGE} {version} list price")


def price_tables(price_table: str | Path | None, list_prices: bool = True) -> tuple[PriceTable, ...]:
    """The price tables to try, in order: the user's (`price_table`), then the bundled list prices."""
    tables = [load_price_table(price_table)] if price_table is not None else []
    listed = list_price_table() if list_prices else None
    return tuple(tables) + ((listed,) if listed is not None else ())


def find_price(tables: Sequence[PriceTable], model: str) -> tuple[PriceRow, PriceTable] | None:
    """The first table's row for `model`, with that table."""
    for table in tables:
        row = table.find(model)
        if row is not None:
            return row, table
    return None
