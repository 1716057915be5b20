"""Tiers for run models the catalog does not know, so runs of new models are planned for instead of dropped.

`extend_catalog(catalog, runs, prices)` looks at every `model` of a run frame that no catalog tier maps
(`Catalog.run_name_map`) and, in this order:

1. **alias**: the model's normalised name (lower case, without an `@provider` suffix, a `vendor/` path prefix
   and a trailing date such as `-20240620`, `-2024-08-06` or `-0125`) equals the normalised name of exactly
   one catalog tier or run name -> the model becomes another run name of that tier;
2. **recorded costs**: at least `MIN_COST_ROWS` of its plain runs carry `cost_usd` and token counts -> USD
   per input and output token fitted by non-negative least squares (`scipy.optimize.nnls`), served on a
   per-token target of its own; the speed comes from recorded `latency_s` where there is some;
3. **price tables** (`planner.prices`: the user's CSV, then the list prices bundled with `tokencost`): the
   first row whose normalised name equals the model's (exactly, else after dropping dates on both sides
   when that leaves one price) -> the same per-token target at that price;
4. **size in the name** (`72B`, `3.8b`, `8x7B`, `30B-A3B`, `360M`) -> an open-weight tier the hardware model
   prices on the catalog's device targets (bf16, 8k context, KV cache by the catalog's rule of thumb).

Run strategy names the catalog lacks are resolved first (`planner.derived_strategies`: an alias of the
catalog strategy of the same shape, or a derived strategy); `remap_runs` then rewrites a run frame's tier and
strategy columns onto the extended catalog.

A size from the name also marks 2-3 as open weights (so self-hosting is offered beside the API price). A
model none of these prices is left out, with a note naming what would price it. Every derived tier is named
after the model, lists it as its run name and says in `source` how it was priced (the `ASSUMPTION`s too).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

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
from planner.derived_strategies import StrategyResolution, plain_mask, resolve_strategies, run_params
from planner.prices import PriceTable, find_price, normalise, undated

MIN_COST_ROWS = 20
"""Plain runs with a recorded cost needed before per-token prices are fitted from them."""
DEFAULT_TOKENS_PER_S = 50.0
"""ASSUMPTION: API decode speed per user when no latency is recorded (as the catalog's API targets)."""
DEFAULT_RTT_MS = 50.0
"""ASSUMPTION: network round trip to a derived API target."""
_MOE = re.compile(r"(?<![\w.])(\d+)x(\d+(?:\.\d+)?)b(?![a-z])")
_SIZE = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)([bm])(?![a-z0-9])")
_ACTIVE = re.compile(r"(?<![\w.])a(\d+(?:\.\d+)?)b(?![a-z0-9])")


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
class Extension:
    """The catalog with derived tiers and strategies, and what was done for each unknown name."""

    catalog: Catalog
    how: Mapping[str, str]
    """model -> how it was mapped or priced ('alias of X', 'recorded costs', 'price table row X',
    'size from name', or 'left out: ...')."""
    strategy_map: Mapping[tuple[str, str], str] = field(default_factory=dict)
    """(run strategy name, canonical params JSON) -> catalog strategy name (`planner.derived_strategies`)."""
    strategy_how: Mapping[str, str] = field(default_factory=dict)

    @property
    def notes(self) -> tuple[str, ...]:
        return tuple(f"run model {m!r}: {h}" for m, h in sorted(self.how.items())) + tuple(
            f"run strategy {s!r}: {h}" for s, h in sorted(self.strategy_how.items())
        )


def unknown_models(catalog: Catalog, runs: pd.DataFrame) -> list[str]:
    known = catalog.run_name_map()
    return sorted({str(m) for m in runs["model"].unique()} - set(known))


def extend_catalog(
    catalog: Catalog, runs: pd.DataFrame, prices: Sequence[PriceTable] = (), plain: str = "single"
) -> Extension:
    """The catalog plus a tier for every run model and a strategy for every run strategy it does not know
    (module docstring; `planner.derived_strategies`), pricing closed models from `prices` (tried in order;
    `planner.prices.price_tables`) when their runs record no cost. `runs` needs a `model` column;
    `input_tokens`, `output_tokens`, `cost_usd`, `latency_s`, `strategy`, `strategy_params` are read if
    there."""
    resolution = resolve_strategies(catalog, runs, plain)
    catalog = _with_strategies(catalog, resolution)
    models = unknown_models(catalog, runs)
    extension = Extension(catalog, {}, resolution.mapping, resolution.how)
    if not models:
        return extension
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
    for name, copies in _copies(m for m in models if m not in aliases).items():
        if name in taken:
            how.update({m: "left out: its name is already a catalog tier or target name" for m in copies})
            continue
        rows = runs[runs["model"].astype(str).isin(copies)]
        rows = rows[plain_mask(rows, resolution.mapping, plain)]
        derived = _derive(catalog, name, copies, rows, prices, region, closed_size)
        if isinstance(derived, str):
            how.update({m: derived for m in copies})
            continue
        tier, target, note = derived
        tiers.append(tier)
        if target is not None:
            targets.append(target)
        for m in copies:
            how[m] = note if len(copies) == 1 else f"hosted copy of derived tier {name!r}: {note}"
    extended = replace(catalog, tiers=tuple(tiers), targets=tuple(targets))
    return replace(extension, catalog=extended, how=how)


def remap_runs(runs: pd.DataFrame, ext: Extension, plain: str = "single") -> pd.DataFrame:
    """Runs mapped onto the extended catalog: a `tier` that is no catalog tier becomes the tier the catalog
    maps the model to; a strategy the catalog lacks becomes the strategy it resolved to."""
    catalog = ext.catalog
    out = runs
    names = {t.name for t in catalog.tiers}
    mapped = runs["model"].astype(str).map(catalog.run_name_map())
    stale = ~runs["tier"].isin(names) & mapped.notna() if "tier" in runs else pd.Series(False, runs.index)
    if stale.any():
        out = out.copy()
        out.loc[stale, "tier"] = mapped[stale]
    if ext.strategy_map and "strategy" in runs:
        params = run_params(runs)
        pairs = pd.Series(list(zip(runs["strategy"].fillna(plain).astype(str), params, strict=True)))
        resolved = pairs.map(ext.strategy_map)
        hit = resolved.notna().to_numpy()
        if hit.any():
            out = out.copy() if out is runs else out
            out.loc[hit, "strategy"] = resolved[hit].to_numpy()
    return out


def _with_strategies(catalog: Catalog, resolution: StrategyResolution) -> Catalog:
    """The catalog plus the derived strategies, each offered on the tiers whose models ran it and on the
    tiers that already offer a strategy of its kind."""
    if not resolution.derived:
        return catalog
    tiers = []
    for tier in catalog.tiers:
        kinds = {s.kind for s in catalog.strategies_for(tier)}
        runs_of = set(tier.run_names) | {tier.name}
        extra = tuple(
            s.name
            for s in resolution.derived
            if s.kind in kinds or runs_of & resolution.used_by.get(s.name, set())
        )
        tiers.append(replace(tier, strategies=tier.strategies + extra) if extra else tier)
    return replace(catalog, strategies=catalog.strategies + resolution.derived, tiers=tuple(tiers))


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


def _closed_size(catalog: Catalog) -> float:
    """ASSUMPTION for an undisclosed model size: the median active size of the catalog's closed tiers (it
    only scales the energy estimate of an API call)."""
    sizes = [t.active_params_b for t in catalog.tiers if not t.open_weights]
    return float(np.median(sizes)) if sizes else 70.0


def _copies(models: Iterable[str]) -> dict[str, tuple[str, ...]]:
    """Unknown models grouped into one tier per name before `@provider` when several hosted copies share it
    (as the default catalog does with the three hosted Llama-3.1-405B copies); a lone model keeps its name."""
    groups: dict[str, list[str]] = {}
    for m in models:
        groups.setdefault(m.split("@", 1)[0], []).append(m)
    return {(base if len(ms) > 1 else ms[0]): tuple(sorted(ms)) for base, ms in groups.items()}


def _derive(
    catalog: Catalog,
    model: str,
    copies: tuple[str, ...],
    plain: pd.DataFrame,
    prices: Sequence[PriceTable],
    region: str,
    closed_size: float,
) -> tuple[ModelTier, Target | None, str] | str:
    size = size_from_name(model)
    price, note = _recorded_price(plain), "recorded costs"
    found = find_price(prices, model) if price is None else None
    if found is not None:
        row, table = found
        note = f"{table.source} of {row.model!r}"
        price = TokenPrice(row.input_usd_per_mtok, row.output_usd_per_mtok, note)
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
        run_names=copies,
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
