"""Streaming books of one simulation replicate: latencies, SLO, tokens, quality, spend and energy.

Everything is fixed-size or grows with simulated hours: completed requests arrive in blocks (from the
engine's sinks, or computed directly for per-token services) and are folded into histograms, counters and
hourly series, then dropped. Spend and energy are keyed by target, tier, tenant and region.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from simulator.metrics import HourlySeries, LogHistogram
from simulator.scenario import SloSpec


@dataclass(frozen=True)
class Done:
    """A block of finished requests (seconds since the start; tokens generated per request, all samples)."""

    arrival_s: np.ndarray
    ttft_s: np.ndarray
    e2e_s: np.ndarray
    tbt_s: np.ndarray
    generated_tokens: np.ndarray
    tenant: np.ndarray
    quality: np.ndarray


@dataclass
class Tally:
    """Running totals of one replicate."""

    slo: SloSpec
    tenants: tuple[str, ...] = ("default",)
    ttft: LogHistogram = field(default_factory=LogHistogram)
    tbt: LogHistogram = field(default_factory=LogHistogram)
    e2e: LogHistogram = field(default_factory=LogHistogram)
    hourly: HourlySeries = field(default_factory=HourlySeries)
    completed: int = 0
    rejected: int = 0
    unserved: int = 0
    slo_met: int = 0
    tokens: float = 0.0
    quality_sum: float = 0.0
    quality_n: int = 0
    last_s: float = 0.0
    spend: dict[str, dict[str, float]] = field(
        default_factory=lambda: {k: defaultdict(float) for k in ("target", "tier", "tenant", "region")}
    )
    energy_j: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    tenant_requests: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    tenant_met: dict[str, float] = field(default_factory=lambda: defaultdict(float))

    def add(self, done: Done) -> None:
        """Fold a block of completed requests into the books."""
        if len(done.arrival_s) == 0:
            return
        self.ttft.add(done.ttft_s)
        self.e2e.add(done.e2e_s)
        multi = np.isfinite(done.tbt_s)
        self.tbt.add(done.tbt_s[multi])
        self.completed += len(done.arrival_s)
        met = self._meets(done)
        self.slo_met += int(met.sum())
        self._count_tenants(done.tenant, met.astype(float))
        self.tokens += float(done.generated_tokens.sum())
        q = done.quality[np.isfinite(done.quality)]
        self.quality_sum += float(q.sum())
        self.quality_n += int(q.size)
        self.last_s = max(self.last_s, float((done.arrival_s + done.e2e_s).max()))
        self.hourly.add("requests", done.arrival_s, 1.0)
        self.hourly.add("output_tokens", done.arrival_s, done.generated_tokens)

    def _meets(self, done: Done) -> np.ndarray:
        ok = np.ones(len(done.arrival_s), bool)
        s = self.slo
        if s.ttft_s > 0:
            ok &= done.ttft_s <= s.ttft_s
        if s.e2e_s > 0:
            ok &= done.e2e_s <= s.e2e_s
        if s.tbt_s > 0:
            ok &= ~(done.tbt_s > s.tbt_s)
        return ok

    def _count_tenants(self, tenant: np.ndarray, met: np.ndarray) -> None:
        for name, n in self.tenant_weights(tenant, np.ones(len(tenant))).items():
            self.tenant_requests[name] += n
        for name, n in self.tenant_weights(tenant, met).items():
            self.tenant_met[name] += n

    def reject(self, arrival_s: np.ndarray, tenant: np.ndarray) -> None:
        self.rejected += len(arrival_s)
        self._count_tenants(tenant, np.zeros(len(tenant)))
        self.hourly.add("rejected", arrival_s, 1.0)

    def charge(self, usd: float, *, target: str, tier: str, region: str, tenants: dict[str, float]) -> None:
        """Book `usd` to a target, tier and region, split over tenants by the given weights."""
        s = self.spend
        s["target"][target] += usd
        s["tier"][tier] += usd
        s["region"][region] += usd
        total = sum(tenants.values())
        for name, w in tenants.items():
            s["tenant"][name] += usd * (w / total if total > 0 else 1.0 / len(tenants))

    def tenant_weights(self, codes: np.ndarray, weights: np.ndarray) -> dict[str, float]:
        """Sum `weights` by tenant name."""
        sums = np.bincount(codes, weights=weights, minlength=len(self.tenants))
        return {self.tenants[i]: float(v) for i, v in enumerate(sums) if v > 0}

    @property
    def slo_attainment(self) -> float:
        n = self.completed + self.rejected
        return self.slo_met / n if n else float("nan")

    def slo_by_tenant(self) -> dict[str, float]:
        return {k: self.tenant_met[k] / n for k, n in self.tenant_requests.items() if n > 0}

    @property
    def expected_quality(self) -> float:
        return self.quality_sum / self.quality_n if self.quality_n else float("nan")
