"""Tiers for run models the catalog does not know, so runs of new models are planned for instead of dropped.

`extend_catalog(catalog, runs, prices)` looks at every `model` of a run frame that no catalog tier maps
(`Catalog.run_name_map`) and, in this order:

1. **alias**: the model's normalised name (lower case, without an `@provider` suffix, a `vendor/` path prefix
   and a trailing date such as `-20240620`, `-2024-08-06` or `-0125`) equals the normalised name of exactly
   one catalog tier or run name -> the model becomes another run name of that tier;
2. **recorded costs**: at least `MIN_COST_ROWS` of its plain runs carry `cost_usd` and token counts -> USD
   per input and output token fitted by non-negative least squares (`scipy.optimize.nnls`), served on a
   per-token target of its own; the speed comes from recorded `latency_s` where there is some;
3. **price table** (tokencost's CSV columns `model, input_usd_per_mtok, output_usd_per_mtok`, e.g. LiteLLM's
   table as tokencost exports it): the row whose normalised name equals the model's (exactly, else after
   dropping dates on both sides when that leaves one price) -> the same per-token target at that price;
4. **size in the name** (`72B`, `3.8b`, `8x7B`, `30B-A3B`, `360M`) -> an open-weight tier the hardware model
   prices on the catalog's device targets (bf16, 8k context, KV cache by the catalog's rule of thumb).

A size from the name also marks 2-3 as open weights (so self-hosting is offered beside the API price). A
model none of these prices is left out, with a note naming what would price it. Every derived tier is named
after the model, lists it as its run name and says in `source` how it was priced (the `ASSUMPTION`s too).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import nnls

from planner.catalog import (
    Catalog,
    ModelTier,
    PriceModel,
    StrategyKind,
    Target,
    TargetFamily,
    TokenPrice,
)
from planner.errors import InvalidArgumentError

MIN_COST_ROWS = 20
"""Plain runs with a recorded cost needed before per-token prices are fitted from them."""
DEFAULT_TOKENS_PER_S = 50.0
"""ASSUMPTION: API decode speed per user when no latency is recorded (as the catalog's API targets)."""
DEFAULT_RTT_MS = 50.0
"""ASSUMPTION: network round trip to a derived API target."""
_DATE = re.compile(r"[-_@.](?:20\d{2}-?\d{2}-?\d{2}|\d{4})$")
_MOE = re.compile(r"(?<![\w.])(\d+)x(\d+(?:\.\d+)?)b(?![a-z])")
_SIZE = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)([bm])(?![a-z0-9])")
_ACTIVE = re.compile(r"(?<![\w.])a(\d+(?:\.\d+)?)b(?![a-z0-9])")


def normalise(name: str) -> str:
    """Lower case, without `@provider`, a `vendor/` path prefix and surrounding blanks."""
    return name.split("@", 1)[0].rsplit("/", 1)[-1].strip().lower()


def undated(name: str) -> str:
    """`normalise(name)` without a trailing date or 4-digit version (`-20240620`, `-2024-08-06`, `-0125`)."""
    return _DATE.sub("", normalise(name))


def size_from_name(name: str) -> tuple[float, float] | None:
    """(total, active) billions of parameters read off a model name, or None when it gives no size."""
    n = normalise(name).replace("_", "-")
    moe = _MOE.search(n)
    if moe:  # ASSUMPTION: experts share nothing; two experts are active per token (Mixtral-style top-2)
        experts, each = int(moe.group(1)), float(moe.group(2))
        return experts * each, min(experts, 2) * each
    sizes = [float(v) / (1000.0 if unit == "m" else 1.0) for v, unit in _SIZE.findall(n)]
    if not sizes:
        return None
    total = max(sizes)
    active = _ACTIVE.search(n)
    return total, min(total, float(active.group(1))) if active else total


@dataclass(frozen=True)
class PriceRow:
    model: str
    input_usd_per_mtok: float
    output_usd_per_mtok: float


@dataclass(frozen=True)
class PriceTable:
    """API prices by model name (see `load_price_table`)."""

    rows: tuple[PriceRow, ...]

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
    with open(path, newline="", encoding="utf-8") as fh:
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
    return PriceTable(tuple(rows))


@dataclass(frozen=True)
class Extension:
    """The catalog with derived tiers, and what was done for each unknown model."""

    catalog: Catalog
    how: Mapping[str, str]
    """model -> how it was mapped or priced ('alias of X', 'recorded costs', 'price table row X',
    'size from name', or 'left out: ...')."""

    @property
    def notes(self) -> tuple[str, ...]:
        return tuple(f"run model {m!r}: {h}" for m, h in sorted(self.how.items()))


def unknown_models(catalog: Catalog, runs: pd.DataFrame) -> list[str]:
    known = catalog.run_name_map()
    return sorted({str(m) for m in runs["model"].unique()} - set(known))


def extend_catalog(
    catalog: Catalog, runs: pd.DataFrame, prices: PriceTable | None = None, plain: str = "single"
) -> Extension:
    """The catalog plus a tier for every run model it does not know (module docstring). `runs` needs a
    `model` column; `input_tokens`, `output_tokens`, `cost_usd`, `latency_s`, `strategy` are read if there."""
    models = unknown_models(catalog, runs)
    if not models:
        return Extension(catalog, {})
    aliases, how = _aliases(catalog, models), {}
    tiers, targets = list(catalog.tiers), list(catalog.targets)
    for i, tier in enumerate(tiers):
        extra = tuple(m for m, t in aliases.items() if t == tier.name)
        if extra:
            tiers[i] = replace(tier, run_names=tier.run_names + extra)
    how.update(
        {
            m: f"alias of catalog tier {t!r} (same name up to case, provider and date)"
            for m, t in aliases.items()
        }
    )
    region = catalog.regions[0].name if catalog.regions else "us-east"
    closed_size = _closed_size(catalog)
    taken = {t.name for t in tiers} | {t.name for t in targets}
    for model in (m for m in models if m not in aliases):
        if model in taken:
            how[model] = "left out: its name is already a catalog tier or target name"
            continue
        rows = runs[runs["model"].astype(str) == model]
        derived = _derive(catalog, model, _plain_rows(rows, plain), prices, region, closed_size)
        if isinstance(derived, str):
            how[model] = derived
            continue
        tier, target, note = derived
        tiers.append(tier)
        if target is not None:
            targets.append(target)
        how[model] = note
    return Extension(replace(catalog, tiers=tuple(tiers), targets=tuple(targets)), how)


def retier(runs: pd.DataFrame, catalog: Catalog) -> pd.DataFrame:
    """Runs whose `tier` is no catalog tier get the tier the (extended) catalog maps their model to."""
    names = {t.name for t in catalog.tiers}
    mapped = runs["model"].astype(str).map(catalog.run_name_map())
    stale = ~runs["tier"].isin(names) & mapped.notna()
    if not stale.any():
        return runs
    out = runs.copy()
    out.loc[stale, "tier"] = mapped[stale]
    return out


# ---- steps ---------------------------------------------------------------------------------------------
def _aliases(catalog: Catalog, models: Sequence[str]) -> dict[str, str]:
    by_name: dict[str, set[str]] = {}
    for tier in catalog.tiers:
        for name in (tier.name, *tier.run_names):
            by_name.setdefault(undated(name), set()).add(tier.name)
    out = {}
    for m in models:
        hits = by_name.get(undated(m), set())
        if len(hits) == 1:
            out[m] = next(iter(hits))
    return out


def _plain_rows(rows: pd.DataFrame, plain: str) -> pd.DataFrame:
    if "strategy" not in rows:
        return rows
    strategy = rows["strategy"].fillna(plain).astype(str)
    return rows[strategy == plain]


def _closed_size(catalog: Catalog) -> float:
    """ASSUMPTION for an undisclosed model size: the median active size of the catalog's closed tiers (it
    only scales the energy estimate of an API call)."""
    sizes = [t.active_params_b for t in catalog.tiers if not t.open_weights]
    return float(np.median(sizes)) if sizes else 70.0


def _derive(
    catalog: Catalog,
    model: str,
    plain: pd.DataFrame,
    prices: PriceTable | None,
    region: str,
    closed_size: float,
) -> tuple[ModelTier, Target | None, str] | str:
    size = size_from_name(model)
    price, note = _recorded_price(plain), "recorded costs"
    if price is None and prices is not None:
        row = prices.find(model)
        if row is not None:
            price = TokenPrice(
                row.input_usd_per_mtok, row.output_usd_per_mtok, f"price table row {row.model!r}"
            )
            note = f"price table row {row.model!r}"
    if price is None and size is None:
        return (
            "left out: no catalog tier, no recorded cost_usd, no price-table row and no size in the name "
            "(add it to a catalog tier's run_names, record cost_usd, or pass a price table)"
        )
    strategies = tuple(
        s.name for s in catalog.strategies if size is not None or s.kind is not StrategyKind.PRM_SEARCH
    )
    total, active = size if size is not None else (closed_size, closed_size)
    provider = f"runs:{model}"
    size_note = "size from name" if size is not None else f"ASSUMPTION: undisclosed size, {closed_size:g}B"
    tier = ModelTier(
        name=model,
        total_params_b=total,
        active_params_b=active,
        context_length=8192 if size is not None else 128000,
        strategies=strategies,
        open_weights=size is not None,
        provider=provider,
        run_names=(model,),
        source=f"derived from runs: {note if price is not None else 'self-hosted'}; {size_note}; "
        "ASSUMPTION: bf16, KV cache by the catalog rule of thumb",
    )
    if price is None:
        if not any(catalog.fits(tier, t) for t in catalog.targets):
            return f"left out: {total:g}B parameters fit no device target of the catalog"
        return tier, None, f"size from name ({total:g}B total, {active:g}B active), self-hosted"
    target = Target(
        name=f"api:{model}",
        family=TargetFamily.API,
        price_model=PriceModel.PER_TOKEN,
        token_prices={model: price},
        tokens_per_s_per_user=_recorded_speed(plain) or DEFAULT_TOKENS_PER_S,
        provider=provider,
        region=region,
        network_rtt_ms=DEFAULT_RTT_MS,
        source=f"derived from runs: {note}",
    )
    return tier, target, note + (f"; open weights ({total:g}B)" if size is not None else "")


def _numeric(rows: pd.DataFrame, column: str) -> np.ndarray:
    if column not in rows:
        return np.full(len(rows), np.nan)
    return pd.to_numeric(rows[column], errors="coerce").to_numpy(float)


def _recorded_price(plain: pd.DataFrame) -> TokenPrice | None:
    usd, tin, tout = (_numeric(plain, c) for c in ("cost_usd", "input_tokens", "output_tokens"))
    ok = np.isfinite(usd) & np.isfinite(tin) & np.isfinite(tout)
    if ok.sum() < MIN_COST_ROWS:
        return None
    coef, _ = nnls(np.stack([tin[ok], tout[ok]], axis=1), usd[ok])
    if not coef.any():
        return None
    return TokenPrice(
        float(coef[0] * 1e6), float(coef[1] * 1e6), f"fitted on {int(ok.sum())} runs' cost_usd (NNLS)"
    )


def _recorded_speed(plain: pd.DataFrame) -> float | None:
    """Median output tokens per second of the plain runs with a recorded latency (ASSUMPTION: the latency
    is dominated by decoding)."""
    lat, tout = _numeric(plain, "latency_s"), _numeric(plain, "output_tokens")
    ok = np.isfinite(lat) & np.isfinite(tout) & (lat > 0) & (tout > 0)
    if ok.sum() < MIN_COST_ROWS:
        return None
    return float(np.median(tout[ok] / lat[ok]))
