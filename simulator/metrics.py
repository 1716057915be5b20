"""Fixed-size streaming metrics: log-spaced histograms for latency percentiles, running sums, hourly bins.

Nothing here grows with the number of requests: a `LogHistogram` is a fixed array of counts over log-spaced
bins (200 per decade: a quantile is off by at most half a bin, about 0.6 % relative, before interpolation)
plus exact running sums for the mean; `HourlySeries` grows with simulated hours, not requests. Histograms
merge by adding counts, so Monte Carlo replicates and parallel sweeps combine exactly."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats

from planner.errors import InvalidArgumentError


@dataclass
class LogHistogram:
    """Counts of positive values over log-spaced bins from `lo` to `hi` (values outside go to edge bins;
    zeros and negatives are counted in the first bin)."""

    lo: float = 1e-5
    hi: float = 1e6
    bins_per_decade: int = 200
    counts: np.ndarray = field(init=False)
    total: float = 0.0
    n: int = 0
    min: float = float("inf")
    max: float = float("-inf")

    def __post_init__(self) -> None:
        if not 0 < self.lo < self.hi:
            raise InvalidArgumentError.for_field("lo", self.lo, f"need 0 < lo < hi = {self.hi}")
        self._log_lo = np.log10(self.lo)
        self._nbins = int(np.ceil((np.log10(self.hi) - self._log_lo) * self.bins_per_decade))
        self.counts = np.zeros(self._nbins, np.int64)

    def add(self, values: np.ndarray) -> None:
        v = np.asarray(values, float)
        if v.size == 0:
            return
        with np.errstate(divide="ignore"):
            idx = np.floor((np.log10(np.maximum(v, self.lo)) - self._log_lo) * self.bins_per_decade)
        idx = np.clip(idx, 0, self._nbins - 1).astype(np.int64)
        self.counts += np.bincount(idx, minlength=self._nbins)
        self.total += float(v.sum())
        self.n += int(v.size)
        self.min = min(self.min, float(v.min()))
        self.max = max(self.max, float(v.max()))

    def merge(self, other: LogHistogram) -> None:
        if other.counts.shape != self.counts.shape or other.lo != self.lo:
            raise InvalidArgumentError.for_field("other", other.lo, "histograms have different bins")
        self.counts += other.counts
        self.total += other.total
        self.n += other.n
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)

    def edges(self) -> np.ndarray:
        return 10 ** (self._log_lo + np.arange(self._nbins + 1) / self.bins_per_decade)

    @property
    def mean(self) -> float:
        return self.total / self.n if self.n else float("nan")

    def quantile(self, q: float | Sequence[float]) -> np.ndarray:
        """Quantiles by linear interpolation of the cumulative count in log space, clamped to [min, max]."""
        qs = np.atleast_1d(np.asarray(q, float))
        if self.n == 0:
            return np.full(qs.shape, np.nan)
        cum = np.concatenate([[0], np.cumsum(self.counts)])
        log_edges = np.log10(self.edges())
        target = qs * self.n
        i = np.clip(np.searchsorted(cum, target, side="left"), 1, self._nbins)
        below, inbin = cum[i - 1], np.maximum(self.counts[i - 1], 1)
        frac = np.clip((target - below) / inbin, 0.0, 1.0)
        out = 10 ** (log_edges[i - 1] + frac * (log_edges[i] - log_edges[i - 1]))
        return np.clip(out, self.min, self.max)

    def fraction_at_most(self, x: float) -> float:
        """Approximate share of values <= x (bin-resolution)."""
        if self.n == 0:
            return float("nan")
        k = int(np.searchsorted(self.edges(), x, side="right")) - 1
        return float(self.counts[: max(k, 0)].sum() / self.n)

    def cdf_points(self) -> tuple[np.ndarray, np.ndarray]:
        """(x, F(x)) at the upper edge of every non-empty bin, for plotting."""
        nz = self.counts > 0
        cum = np.cumsum(self.counts) / max(self.n, 1)
        return self.edges()[1:][nz], cum[nz]

    def summary(self) -> dict[str, float]:
        p50, p95, p99 = (float(x) for x in self.quantile([0.5, 0.95, 0.99]))
        return {
            "n": self.n,
            "mean": self.mean,
            "p50": p50,
            "p95": p95,
            "p99": p99,
            "max": self.max if self.n else 0,
        }


@dataclass
class HourlySeries:
    """Named float series binned by simulated hour; grows with hours, never with requests."""

    bin_s: float = 3600.0
    data: dict[str, np.ndarray] = field(default_factory=dict)

    def add(self, name: str, t: np.ndarray | float, values: np.ndarray | float) -> None:
        idx = (np.atleast_1d(np.asarray(t, float)) // self.bin_s).astype(np.int64)
        vals = np.broadcast_to(np.asarray(values, float), idx.shape)
        if idx.size == 0:
            return
        self._grow(name, int(idx.max()) + 1)
        self.data[name] += np.bincount(idx, weights=vals, minlength=len(self.data[name]))

    def add_uniform(self, name: str, t0: float, t1: float, total: float) -> None:
        """Spread `total` evenly over [t0, t1)."""
        if t1 <= t0:
            return
        edges = np.arange(np.floor(t0 / self.bin_s), np.ceil(t1 / self.bin_s) + 1) * self.bin_s
        lo, hi = np.maximum(edges[:-1], t0), np.minimum(edges[1:], t1)
        share = total * (hi - lo) / (t1 - t0)
        self.add(name, lo, share)

    def _grow(self, name: str, size: int) -> None:
        cur = self.data.get(name, np.zeros(0))
        if len(cur) < size:
            self.data[name] = np.concatenate([cur, np.zeros(size - len(cur))])

    def merge(self, other: HourlySeries) -> None:
        for name, arr in other.data.items():
            self._grow(name, len(arr))
            self.data[name][: len(arr)] += arr

    def to_dict(self) -> dict[str, list[float]]:
        n = max((len(a) for a in self.data.values()), default=0)
        return {k: np.concatenate([v, np.zeros(n - len(v))]).tolist() for k, v in self.data.items()}


def mean_ci(values: Sequence[float], level: float = 0.95) -> dict[str, float]:
    """Mean and Student-t confidence interval over Monte Carlo replicates (half-width 0 for one replicate)."""
    x = np.asarray([v for v in values if np.isfinite(v)], float)
    if x.size == 0:
        return {"mean": float("nan"), "lo": float("nan"), "hi": float("nan"), "n": 0}
    m = float(x.mean())
    if x.size < 2:
        return {"mean": m, "lo": m, "hi": m, "n": int(x.size)}
    half = float(stats.t.ppf(0.5 + level / 2, x.size - 1) * x.std(ddof=1) / np.sqrt(x.size))
    return {"mean": m, "lo": m - half, "hi": m + half, "n": int(x.size)}


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """Numeric leaves of a nested dict as dotted keys (used to aggregate replicates)."""
    out: dict[str, float] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        elif isinstance(v, int | float) and not isinstance(v, bool):
            out[key] = float(v)
    return out
