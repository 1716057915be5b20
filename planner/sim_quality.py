"""Expected quality of simulated options from a forecaster (the planner side of the simulator's books).

The simulator imports only the catalog, so the planner hands it a table ``(tier, strategy) -> expected
P(correct)``: the forecaster's P(correct) of one plain sample for the tier, averaged over the given queries
(or the forecaster's prior when there are none), through `models.strategies.expected_quality` for the
strategy. `prior_from_runs` fits the per-tier prior forecaster on a historical runs file.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from models.api import Forecaster, Query
from models.baseline import PriorForecaster
from models.strategies import expected_quality
from planner.catalog import Catalog
from planner.errors import InvalidArgumentError


def quality_table(
    forecaster: Forecaster,
    catalog: Catalog,
    pairs: Iterable[tuple[str, str]],
    queries: Sequence[Query] = (Query(prompt_tokens=512),),
) -> dict[tuple[str, str], float]:
    """Mean expected quality of each (tier, strategy) pair the forecaster knows (others are left out)."""
    forecast = forecaster.forecast(list(queries))
    out: dict[tuple[str, str], float] = {}
    for tier, strategy in set(pairs):
        if tier not in forecast.tiers:
            continue
        p = forecast.p_correct[:, forecast.tier_index(tier)]
        out[(tier, strategy)] = float(np.mean(expected_quality(p, catalog.strategy(strategy))))
    return out


def prior_from_runs(path: str | Path, catalog: Catalog) -> PriorForecaster:
    """The per-tier prior forecaster fitted on a runs file (CSV, CSV.GZ or Parquet, run-import columns)."""
    p = Path(path)
    if not p.is_file():
        raise InvalidArgumentError.for_field("runs", str(p), "no such runs file")
    frame = pd.read_parquet(p) if p.suffix == ".parquet" else pd.read_csv(p)
    return PriorForecaster(catalog.run_name_map()).fit(frame)
