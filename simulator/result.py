"""Results of a simulation: one replicate's figures, and replicates combined with confidence intervals.

`ReplicateResult` is what one seeded run produces (plain floats, dicts and mergeable histograms, so it
pickles cheaply to sweep workers and back). `combine` turns replicates into a `SimulationResult`: every
scalar as mean with a Student-t interval at the scenario's level, breakdowns and hourly series as means,
latency histograms merged (for CDF plots). `SimulationResult.to_dict()` is the machine-readable JSON.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from simulator.metrics import LogHistogram, mean_ci

LATENCIES = ("ttft_s", "tbt_s", "e2e_s")
QUANTILES = ("mean", "p50", "p95", "p99")


@dataclass(frozen=True)
class ReplicateResult:
    """Figures of one replicate."""

    replicate: int
    scalars: dict[str, float]
    breakdown: dict[str, dict[str, float]]
    hourly: dict[str, list[float]]
    histograms: dict[str, LogHistogram]
    pools: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class SimulationResult:
    """A scenario's projection over its replicates."""

    scenario: str
    description: str
    replicates: int
    level: float
    metrics: dict[str, dict[str, float]]
    breakdown: dict[str, dict[str, float]]
    hourly: dict[str, list[float]]
    histograms: dict[str, LogHistogram]
    pools: list[dict[str, Any]]
    notes: list[str]
    per_replicate: list[dict[str, float]]

    def metric(self, name: str) -> float:
        """Mean over replicates of a scalar metric (e.g. "spend_usd", "e2e_s.p99")."""
        return self.metrics[name]["mean"]

    def to_dict(self, cdf_points: int = 200) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "description": self.description,
            "replicates": self.replicates,
            "interval_level": self.level,
            "metrics": _clean(self.metrics),
            "breakdown": _clean(self.breakdown),
            "hourly": _clean(self.hourly),
            "latency_cdf": {k: _cdf(h, cdf_points) for k, h in self.histograms.items()},
            "pools": self.pools,
            "notes": self.notes,
            "per_replicate": _clean(self.per_replicate),
        }


def combine(name: str, description: str, level: float, reps: Sequence[ReplicateResult]) -> SimulationResult:
    """Replicates -> means and confidence intervals (histograms merged exactly)."""
    reps = sorted(reps, key=lambda r: r.replicate)
    keys = list(dict.fromkeys(k for r in reps for k in r.scalars))
    metrics = {k: mean_ci([r.scalars.get(k, float("nan")) for r in reps], level) for k in keys}
    hists: dict[str, LogHistogram] = {}
    for r in reps:
        for k, h in r.histograms.items():
            if k not in hists:
                hists[k] = LogHistogram(h.lo, h.hi, h.bins_per_decade)
            hists[k].merge(h)
    return SimulationResult(
        scenario=name,
        description=description,
        replicates=len(reps),
        level=level,
        metrics=metrics,
        breakdown=_mean_nested([r.breakdown for r in reps]),
        hourly=_mean_series([r.hourly for r in reps]),
        histograms=hists,
        pools=reps[0].pools if reps else [],
        notes=list(dict.fromkeys(n for r in reps for n in r.notes)),
        per_replicate=[{"replicate": float(r.replicate), **r.scalars} for r in reps],
    )


def _mean_nested(items: Sequence[dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    sums: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for item in items:
        for group, values in item.items():
            for k, v in values.items():
                sums[group][k] += v / len(items)
    return {g: dict(v) for g, v in sums.items()}


def _mean_series(items: Sequence[dict[str, list[float]]]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for name in dict.fromkeys(k for item in items for k in item):
        arrays = [np.asarray(item.get(name, []), float) for item in items]
        n = max(len(a) for a in arrays)
        padded = np.array([np.concatenate([a, np.zeros(n - len(a))]) for a in arrays])
        out[name] = padded.mean(axis=0).tolist()
    return out


def _cdf(h: LogHistogram, points: int) -> dict[str, list[float]]:
    x, f = h.cdf_points()
    if len(x) > points:
        idx = np.unique(np.linspace(0, len(x) - 1, points).round().astype(int))
        x, f = x[idx], f[idx]
    return {"x": x.tolist(), "cdf": f.tolist()}


def _clean(obj: Any) -> Any:
    """NaN / inf -> None so the JSON is standard."""
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj
