"""Spend histories for forecasting: from stored runs, from an Azure request trace, or seeded synthetic.

Every function returns a `pandas.Series` of spend in USD indexed by period start (UTC), regular frequency,
missing periods filled with 0.

- `runs_spend`: canonical run records (the store's `load_frame`) with timestamps. A row's spend is its
  `cost_usd` when recorded, else its tokens priced with the catalog's unit costs (`simulator.costmodel`):
  the tokens a record reports are the tokens it spent, so they are priced as one pass (input x input price +
  output x output price) on the record's `target`, or -- when the record names none or a target unknown to
  the catalog -- on the tier's cheapest placement. `reprice=True` ignores recorded costs (history at today's
  prices). Rows without a timestamp, or whose tier the catalog does not know, are skipped and counted.
- `trace_spend`: an Azure LLM trace (`TIMESTAMP, ContextTokens, GeneratedTokens`) priced as one tier on one
  target. The public traces span about one hour, so they aggregate per minute (a daily series cannot be
  built from them; `trace_span` reports the span); the partial first and last periods are dropped.
- `synthetic_daily`: a seeded daily series (trend, weekly cycle, multiplicative noise, optional step) for
  demos and tests.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from planner.catalog import Catalog, ModelTier, Target
from planner.errors import FieldViolation, InvalidArgumentError, NotFoundError
from simulator.costmodel import CostModel, UnitCost

CHARS_PER_TOKEN = 4.0


@dataclass(frozen=True)
class SpendHistory:
    """A regular spend series and how it was built."""

    spend: pd.Series
    requests: pd.Series
    skipped_rows: int = 0
    source: str = ""

    @property
    def unit_cost(self) -> pd.Series:
        """Spend per request of each period (NaN where no requests)."""
        return self.spend / self.requests.where(self.requests > 0)


def cheapest_placement(cost_model: CostModel, tier: ModelTier) -> tuple[Target, UnitCost]:
    """The tier's placement with the lowest price per output token (ties: catalog order)."""
    best: tuple[Target, UnitCost] | None = None
    for target in cost_model.catalog.placements(tier):
        try:
            unit = cost_model.unit_cost(tier, target)
        except (InvalidArgumentError, NotFoundError):
            continue
        if best is None or unit.usd_per_output_token < best[1].usd_per_output_token:
            best = (target, unit)
    if best is None:
        raise NotFoundError(f"tier {tier.name!r} has no placement the cost model can price")
    return best


def _tokens(frame: pd.DataFrame, tokens: str, chars: str) -> np.ndarray:
    out = pd.to_numeric(frame.get(tokens), errors="coerce") if tokens in frame else None
    from_chars = (
        np.ceil(pd.to_numeric(frame[chars], errors="coerce") / CHARS_PER_TOKEN)
        if chars in frame
        else pd.Series(np.nan, index=frame.index)
    )
    vals = from_chars if out is None else out.fillna(from_chars)
    return np.nan_to_num(vals.to_numpy(float), nan=0.0)


def price_runs(frame: pd.DataFrame, cost_model: CostModel, reprice: bool = False) -> tuple[np.ndarray, int]:
    """USD of each run row (NaN where it cannot be priced) and the number of such rows."""
    cat: Catalog = cost_model.catalog
    tin = _tokens(frame, "input_tokens", "prompt_chars")
    tout = _tokens(frame, "output_tokens", "output_chars")
    usd = np.full(len(frame), np.nan)
    tiers = frame["tier"].fillna(frame["model"]).astype(str).to_numpy()
    targets = (
        frame["target"].fillna("").astype(str).to_numpy() if "target" in frame else np.full(len(frame), "")
    )
    known_targets = {t.name for t in cat.targets}
    known_tiers = {t.name for t in cat.tiers}
    for tier_name, target_name in set(zip(tiers, targets, strict=True)):
        if tier_name not in known_tiers:
            continue
        tier = cat.tier(tier_name)
        m = (tiers == tier_name) & (targets == target_name)
        try:
            if target_name in known_targets and cat.fits(tier, cat.target(target_name)):
                unit = cost_model.unit_cost(tier, cat.target(target_name))
            else:
                unit = cheapest_placement(cost_model, tier)[1]
        except (InvalidArgumentError, NotFoundError):
            continue
        usd[m] = tin[m] * unit.usd_per_input_token + tout[m] * unit.usd_per_output_token
    if not reprice and "cost_usd" in frame:
        recorded = pd.to_numeric(frame["cost_usd"], errors="coerce").to_numpy(float)
        usd = np.where(np.isfinite(recorded), recorded, usd)
    return usd, int(np.count_nonzero(~np.isfinite(usd)))


def runs_spend(
    frame: pd.DataFrame,
    cost_model: CostModel,
    *,
    tenant: str | None = None,
    freq: str = "D",
    reprice: bool = False,
) -> SpendHistory:
    """Spend and request counts per period from canonical run records (see the module docstring)."""
    if "timestamp" not in frame:
        raise InvalidArgumentError.for_field("timestamp", None, "run records need a timestamp column")
    if tenant:
        frame = frame[frame.get("tenant", pd.Series("default", index=frame.index)).astype(str) == tenant]
    ts = pd.to_datetime(frame["timestamp"], utc=True, errors="coerce")
    usd, unpriced = price_runs(frame, cost_model, reprice)
    ok = ts.notna().to_numpy() & np.isfinite(usd)
    skipped = int(len(frame) - ok.sum())
    if not ok.any():
        raise InvalidArgumentError(
            "no priced, timestamped runs to build a spend history from",
            [FieldViolation("tenant", tenant or "(all)", f"{len(frame)} rows, {unpriced} unpriced")],
        )
    period = ts[ok].dt.floor(freq)
    spend = pd.Series(usd[ok], index=period.to_numpy()).groupby(level=0).sum()
    requests = pd.Series(1.0, index=period.to_numpy()).groupby(level=0).sum()
    return _regular(spend, requests, freq, skipped, "runs")


def trace_span(path: str) -> tuple[pd.Timestamp, pd.Timestamp]:
    """First and last timestamp of an Azure trace."""
    ts = pd.to_datetime(pd.read_csv(path, usecols=["TIMESTAMP"])["TIMESTAMP"])
    return ts.min(), ts.max()


def trace_spend(
    path: str, cost_model: CostModel, tier: str, target: str | None = None, freq: str = "min"
) -> SpendHistory:
    """Spend per period of an Azure trace served by `tier` on `target` (default: its cheapest placement)."""
    cat = cost_model.catalog
    t = cat.tier(tier)
    unit = cost_model.unit_cost(t, cat.target(target)) if target else cheapest_placement(cost_model, t)[1]
    df = pd.read_csv(path)
    missing = {"TIMESTAMP", "ContextTokens", "GeneratedTokens"} - set(df.columns)
    if missing:
        raise InvalidArgumentError.for_field("path", path, f"azure trace lacks columns {sorted(missing)}")
    ts = pd.to_datetime(df["TIMESTAMP"]).dt.tz_localize("UTC").dt.floor(freq)
    usd = df["ContextTokens"].to_numpy(float) * unit.usd_per_input_token + df["GeneratedTokens"].to_numpy(
        float
    ) * (unit.usd_per_output_token)
    spend = pd.Series(usd, index=ts.to_numpy()).groupby(level=0).sum()
    requests = pd.Series(1.0, index=ts.to_numpy()).groupby(level=0).sum()
    if len(spend) > 2:  # the first and last periods are partial (the trace starts and ends mid-period)
        spend, requests = spend.iloc[1:-1], requests.iloc[1:-1]
    return _regular(spend, requests, freq, 0, f"trace:{path}")


def synthetic_daily(
    days: int = 365,
    seed: int = 0,
    *,
    base_usd: float = 1000.0,
    growth_per_day: float = 0.002,
    weekly_amplitude: float = 0.3,
    noise_sigma: float = 0.08,
    start: str = "2025-11-23",
    step_day: int | None = None,
    step_factor: float = 1.0,
) -> SpendHistory:
    """Seeded daily spend: base x (1 + growth)^t x weekday factor x lognormal noise (x step after step_day).

    Weekdays cost 1 + amplitude x (a fixed profile peaking mid-week), weekends 1 - amplitude."""
    if days < 1:
        raise InvalidArgumentError.for_field("days", days, "must be >= 1")
    if base_usd <= 0 or noise_sigma < 0 or not 0 <= weekly_amplitude < 1:
        raise InvalidArgumentError(
            "bad synthetic history settings",
            [
                FieldViolation("base_usd", base_usd, "must be > 0"),
                FieldViolation("noise_sigma", noise_sigma, "must be >= 0"),
                FieldViolation("weekly_amplitude", weekly_amplitude, "must be in [0, 1)"),
            ],
        )
    rng = np.random.default_rng([seed, 31])
    index = pd.date_range(start, periods=days, freq="D", tz="UTC")
    t = np.arange(days, dtype=float)
    profile = np.array([0.9, 1.0, 1.1, 1.05, 0.95, -1.0, -1.0])  # Mon..Sun; weekend marked -1
    dow = profile[index.day_of_week.to_numpy()]
    weekly = np.where(dow < 0, 1.0 - weekly_amplitude, dow * (1.0 + weekly_amplitude * 0.5))
    level = base_usd * (1.0 + growth_per_day) ** t * weekly
    if step_day is not None:
        level = level * np.where(t >= step_day, step_factor, 1.0)
    spend = level * np.exp(noise_sigma * rng.standard_normal(days) - noise_sigma**2 / 2)
    requests = np.round(spend / 0.002)
    return SpendHistory(pd.Series(spend, index), pd.Series(requests, index), 0, f"synthetic(seed={seed})")


def _regular(spend: pd.Series, requests: pd.Series, freq: str, skipped: int, source: str) -> SpendHistory:
    index = pd.date_range(spend.index.min(), spend.index.max(), freq=freq)
    return SpendHistory(
        spend.reindex(index, fill_value=0.0).astype(float),
        requests.reindex(index, fill_value=0.0).astype(float),
        skipped,
        source,
    )
