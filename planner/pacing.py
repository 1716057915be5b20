"""Budget pacing for online routing: shadow prices per tenant and period, spend leases from a shared ledger.

**Hard cap.** A replica never spends budget it has not reserved in the ledger first. It reserves *leases*
(blocks of budget sized for a few hundred decisions, at most `max_lease_fraction` of the cap) with the
ledger's atomic conditional update (`spent + x <= cap`, see `planner.store.ledger`), and charges each decision
against its local lease before the decision is returned. The sum of all replicas' leases is what the ledger
holds, and the ledger never lets that exceed the cap, so the cap is never crossed however many replicas share
it.
Near the cap, a lease is whatever is left; a decision that no lease can cover gets a cheaper option or is
refused (`BudgetExhaustedError`). Unused leases are given back when the period rolls over and on shutdown.

**Pacing.** The shadow price (quality per USD, and per kWh for energy) is the Lagrange multiplier of the
per-query allowance: the budget still unspent, over the queries expected in the rest of the period. The
expected queries come from this replica's arrival rate measured along the pacing curve (uniform by default;
any per-slot weights, e.g. a day's traffic profile), scaled by this replica's share of the global spend
(measured from the ledger at each lease; 1 for a single replica). The price is the smallest one at which the
options the router would pick for a reservoir of recent queries cost no more than the allowance on average
(log-space bisection; re-solved every `resolve_every` decisions). Spending ahead of the curve shrinks the
allowance and raises the price; falling behind lowers it, down to zero (pure quality within guard rails).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Protocol

import numpy as np

from planner.catalog import Tenant
from planner.errors import InvalidArgumentError
from planner.router import J_PER_KWH, ShadowPrices, mean_chosen_cost
from planner.store.ledger import Spend, period_key

PERIODS = ("hour", "day", "week", "month")


def period_bounds(when: datetime, period: str) -> tuple[datetime, datetime]:
    """UTC start and end of the budget period containing `when`."""
    when = when.astimezone(UTC) if when.tzinfo else when.replace(tzinfo=UTC)
    if period == "hour":
        start = when.replace(minute=0, second=0, microsecond=0)
        return start, start + timedelta(hours=1)
    day = when.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        return day, day + timedelta(days=1)
    if period == "week":
        start = day - timedelta(days=day.weekday())
        return start, start + timedelta(days=7)
    if period == "month":
        start = day.replace(day=1)
        nxt = (start + timedelta(days=32)).replace(day=1)
        return start, nxt
    raise InvalidArgumentError.for_field("period", period, f"not one of {list(PERIODS)}")


@dataclass(frozen=True)
class PacingCurve:
    """How a period's budget should be spread over it: relative weights of equal-width slots (e.g. 24 hourly
    traffic weights for a day). `fraction(x)` is the share due by elapsed fraction x (piecewise linear)."""

    weights: tuple[float, ...] = (1.0,)

    def __post_init__(self) -> None:
        w = np.asarray(self.weights, float)
        if w.size == 0 or not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
            raise InvalidArgumentError.for_field("pacing.curve", self.weights, "needs weights >= 0, sum > 0")

    def fraction(self, x: float) -> float:
        x = min(max(x, 0.0), 1.0)
        if len(self.weights) == 1:
            return x
        w = self.weights
        total = sum(w)
        slot = min(int(x * len(w)), len(w) - 1)
        done = sum(w[:slot])
        return (done + w[slot] * (x * len(w) - slot)) / total


@dataclass(frozen=True)
class Budget:
    """Caps of one tenant over one period; 0 = no cap."""

    spend_usd: float = 0.0
    energy_kwh: float = 0.0
    period: str = "day"

    def __post_init__(self) -> None:
        for name in ("spend_usd", "energy_kwh"):
            v = getattr(self, name)
            if not (np.isfinite(v) and v >= 0):
                raise InvalidArgumentError.for_field(f"budget.{name}", v, "must be finite and >= 0")
        if self.period not in PERIODS:
            raise InvalidArgumentError.for_field("budget.period", self.period, f"not one of {list(PERIODS)}")

    @classmethod
    def from_tenant(cls, tenant: Tenant) -> Budget:
        return cls(tenant.spend_usd, tenant.energy_kwh, tenant.period)

    @property
    def cap_usd(self) -> float | None:
        return self.spend_usd if self.spend_usd > 0 else None

    @property
    def cap_energy_j(self) -> float | None:
        return self.energy_kwh * J_PER_KWH if self.energy_kwh > 0 else None


class LedgerLike(Protocol):
    """What pacing needs of `planner.store.Ledger`."""

    def reserve(
        self,
        tenant: str,
        period: str,
        usd: float,
        energy_j: float = 0.0,
        cap_usd: float | None = None,
        cap_energy_j: float | None = None,
    ) -> bool: ...

    def release(self, tenant: str, period: str, usd: float, energy_j: float = 0.0) -> None: ...

    def spent(self, tenant: str, period: str) -> Spend: ...


class MemoryLedger:
    """An in-process ledger with the same semantics (a server without a database; one replica only)."""

    def __init__(self) -> None:
        self._rows: dict[tuple[str, str], tuple[float, float]] = {}
        self._lock = threading.Lock()

    def reserve(
        self,
        tenant: str,
        period: str,
        usd: float,
        energy_j: float = 0.0,
        cap_usd: float | None = None,
        cap_energy_j: float | None = None,
    ) -> bool:
        if not (usd >= 0 and energy_j >= 0):
            raise InvalidArgumentError.for_field("usd", (usd, energy_j), "amounts must be >= 0")
        with self._lock:
            s, e = self._rows.get((tenant, period), (0.0, 0.0))
            if (cap_usd is not None and s + usd > cap_usd) or (
                cap_energy_j is not None and e + energy_j > cap_energy_j
            ):
                return False
            self._rows[(tenant, period)] = (s + usd, e + energy_j)
            return True

    def release(self, tenant: str, period: str, usd: float, energy_j: float = 0.0) -> None:
        with self._lock:
            s, e = self._rows.get((tenant, period), (0.0, 0.0))
            self._rows[(tenant, period)] = (max(0.0, s - usd), max(0.0, e - energy_j))

    def spent(self, tenant: str, period: str) -> Spend:
        with self._lock:
            s, e = self._rows.get((tenant, period), (0.0, 0.0))
        return Spend(tenant, period, s, e)


@dataclass(frozen=True)
class Grant:
    """A lease granted by the ledger, with the ledger's totals right after it."""

    usd: float
    energy_j: float
    global_usd: float
    global_energy_j: float


def _room(cap: float | None, spent: float, want: float) -> float:
    if cap is None:
        return want
    return max(0.0, min(want, (cap - spent) - 1e-12 * cap))


def reserve_lease(
    ledger: LedgerLike,
    tenant: str,
    period: str,
    want_usd: float,
    want_energy_j: float,
    cap_usd: float | None,
    cap_energy_j: float | None,
    attempts: int = 5,
) -> Grant:
    """Reserve up to the wanted amounts (less when less is left under the caps). Blocking (database)."""
    spend = ledger.spent(tenant, period)
    for _ in range(attempts):
        usd = _room(cap_usd, spend.spent_usd, want_usd)
        joules = _room(cap_energy_j, spend.energy_j, want_energy_j)
        short_usd = cap_usd is not None and want_usd > 0 and usd <= 0
        short_j = cap_energy_j is not None and want_energy_j > 0 and joules <= 0
        if short_usd or short_j or usd + joules <= 0:
            break
        if ledger.reserve(tenant, period, usd, joules, cap_usd, cap_energy_j):
            return Grant(usd, joules, spend.spent_usd + usd, spend.energy_j + joules)
        spend = ledger.spent(tenant, period)  # another replica got there first: re-read and retry
    return Grant(0.0, 0.0, spend.spent_usd, spend.energy_j)


@dataclass(frozen=True)
class PacingConfig:
    """Tuning of the pacer (defaults suit thousands of decisions per period)."""

    reservoir: int = 64
    resolve_every: int = 64
    lease_decisions: float = 256.0
    """Decisions' worth of budget per lease (fewer ledger round trips vs. budget parked in one replica)."""
    max_lease_fraction: float = 0.02
    low_water: float = 0.3
    min_elapsed_s: float = 30.0
    lambda_min: float = 1e-2
    lambda_max: float = 1e9
    iterations: int = 16
    curve: PacingCurve = field(default_factory=PacingCurve)

    def __post_init__(self) -> None:
        if self.reservoir < 1 or self.resolve_every < 1 or not (0 < self.max_lease_fraction <= 1):
            raise InvalidArgumentError.for_field(
                "pacing", (self.reservoir, self.resolve_every, self.max_lease_fraction), "out of range"
            )


class Pacer:
    """Shadow prices and the local lease of one tenant in one period (one per replica; event-loop owned)."""

    def __init__(self, tenant: str, budget: Budget, n_options: int, now: datetime, config: PacingConfig):
        self.tenant, self.budget, self.config = tenant, budget, config
        self.key = period_key(now, budget.period)
        self.start, self.end = period_bounds(now, budget.period)
        self.first_seen = now
        self._now = now
        self.lease_usd = self.lease_energy_j = 0.0
        self.global_usd = self.global_energy_j = 0.0
        self.used_usd = self.used_energy_j = 0.0
        self.decisions = 0
        self.share = 1.0
        self._granted_since: float = 0.0
        self._global_at_grant: float | None = None
        r = config.reservoir
        self._res_q = np.zeros((r, n_options))
        self._res_usd = np.zeros((r, n_options))
        self._res_j = np.zeros((r, n_options))
        self._res_ok = np.zeros((r, n_options), bool)
        self._res_n = 0
        self._since_solve = 0
        self.prices = ShadowPrices()
        self.mean_cost_usd = self.mean_cost_j = 0.0

    # ---- pacing -------------------------------------------------------------------------------------------
    def _mass(self, when: datetime) -> float:
        span = (self.end - self.start).total_seconds()
        return self.config.curve.fraction((when - self.start).total_seconds() / span)

    def allowance(self, now: datetime) -> tuple[float, float]:
        """Per-query allowance (USD, J) for this replica: unspent budget over expected remaining queries."""
        span = (self.end - self.start).total_seconds()
        seen_mass = self._mass(now) - self._mass(self.first_seen)
        floor = self.config.min_elapsed_s / span * self.config.curve.fraction(1.0)
        rate = self.decisions / max(seen_mass, floor)
        remaining = max(rate * (1.0 - self._mass(now)), 1.0)

        def per_query(cap: float | None, spent_global: float, lease: float) -> float:
            if cap is None:
                return float("inf")
            return max(0.0, cap - (spent_global - lease)) * self.share / remaining

        return (
            per_query(self.budget.cap_usd, self.global_usd, self.lease_usd),
            per_query(self.budget.cap_energy_j, self.global_energy_j, self.lease_energy_j),
        )

    def observe(
        self, quality: np.ndarray, usd: np.ndarray, energy_j: np.ndarray, allowed: np.ndarray, now: datetime
    ) -> None:
        """Add decided queries' priced options to the reservoir; re-solve the prices when due."""
        n = quality.shape[0]
        r = self.config.reservoir
        for i in range(max(0, n - r), n):
            slot = self._res_n % r
            self._res_q[slot], self._res_usd[slot], self._res_j[slot] = quality[i], usd[i], energy_j[i]
            self._res_ok[slot] = allowed[i] if allowed.ndim == 2 else allowed
            self._res_n += 1
        self.decisions += n
        self._since_solve += n
        warm = self.decisions <= 32 and self._since_solve >= 4
        if self._since_solve >= self.config.resolve_every or warm or self.decisions == n:
            self.resolve(now)

    def resolve(self, now: datetime) -> ShadowPrices:
        """Re-solve the shadow prices against the current allowance."""
        self._since_solve = 0
        m = min(self._res_n, self.config.reservoir)
        if m == 0 or (self.budget.cap_usd is None and self.budget.cap_energy_j is None):
            self.prices = ShadowPrices()
            return self.prices
        rows: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] = (
            self._res_q[:m],
            self._res_usd[:m],
            self._res_j[:m],
            self._res_ok[:m],
        )
        rho_usd, rho_j = self.allowance(now)
        has_usd, has_j = bool(np.isfinite(rho_usd)), bool(np.isfinite(rho_j))

        def fits(p: ShadowPrices) -> bool:
            u, j = mean_chosen_cost(*rows, p)
            return (not has_usd or u <= rho_usd) and (not has_j or j <= rho_j)

        lam = mu = 0.0
        if not fits(ShadowPrices()):
            for _ in range(3 if has_usd and has_j else 1):  # coordinate descent on the two prices
                if has_usd:
                    lam = self._smallest(partial(_under, rows, rho_usd, 0, mu))
                if has_j:
                    mu = self._smallest(partial(_under, rows, rho_j, 1, lam))
            if not fits(ShadowPrices(lam, mu)):  # the prices pull apart: scale both until both fit
                base = ShadowPrices(max(lam, self.config.lambda_min), max(mu, self.config.lambda_min))
                t = self._smallest(lambda x: fits(ShadowPrices(base.usd * x, base.energy_kwh * x)), 1.0, 1e6)
                lam, mu = base.usd * t, base.energy_kwh * t
        self.prices = ShadowPrices(lam, mu)
        self.mean_cost_usd, self.mean_cost_j = mean_chosen_cost(*rows, self.prices)
        return self.prices

    def _smallest(self, ok: Callable[[float], bool], lo: float = 0.0, hi: float = 0.0) -> float:
        """Smallest x in [lo, hi] (default [lambda_min, lambda_max]) with ok(x), for ok monotone in x
        (log-space bisection); 0 when ok(0); hi when nothing in range is ok."""
        cfg = self.config
        lo, hi = lo or cfg.lambda_min, hi or cfg.lambda_max
        if ok(0.0):
            return 0.0
        if not ok(hi):
            return hi
        a, b = np.log(lo), np.log(hi)
        if ok(lo):
            return lo
        for _ in range(cfg.iterations):
            mid = 0.5 * (a + b)
            if ok(float(np.exp(mid))):
                b = mid
            else:
                a = mid
        return float(np.exp(b))

    # ---- leases -------------------------------------------------------------------------------------------
    def covers(self, usd: float, energy_j: float) -> bool:
        ok_usd = self.budget.cap_usd is None or usd <= self.lease_usd
        ok_j = self.budget.cap_energy_j is None or energy_j <= self.lease_energy_j
        return ok_usd and ok_j

    def charge(self, usd: float, energy_j: float) -> bool:
        """Take a decision's expected spend out of the local lease; False (nothing taken) if it won't fit."""
        if not self.covers(usd, energy_j):
            return False
        self.lease_usd -= usd
        self.lease_energy_j -= energy_j
        self.used_usd += usd
        self.used_energy_j += energy_j
        return True

    def refund(self, usd: float, energy_j: float) -> None:
        """Undo a `charge` (the batch it belonged to was refused)."""
        self.lease_usd += usd
        self.lease_energy_j += energy_j
        self.used_usd -= usd
        self.used_energy_j -= energy_j

    def wanted(self, need_usd: float = 0.0, need_j: float = 0.0) -> tuple[float, float]:
        """Lease amounts to ask the ledger for: `lease_decisions` decisions' worth, at most a share of the
        cap."""
        cfg = self.config
        rho_usd, rho_j = self.allowance(self._now)
        per_usd = self.mean_cost_usd if not np.isfinite(rho_usd) else max(rho_usd, self.mean_cost_usd)
        per_j = self.mean_cost_j if not np.isfinite(rho_j) else max(rho_j, self.mean_cost_j)
        want_usd, want_j = cfg.lease_decisions * per_usd, cfg.lease_decisions * per_j
        if self.budget.cap_usd is not None:
            want_usd = min(want_usd, cfg.max_lease_fraction * self.budget.cap_usd)
        if self.budget.cap_energy_j is not None:
            want_j = min(want_j, cfg.max_lease_fraction * self.budget.cap_energy_j)
        return (
            max(want_usd, need_usd) - self.lease_usd if max(want_usd, need_usd) > self.lease_usd else 0.0,
            max(want_j, need_j) - self.lease_energy_j if max(want_j, need_j) > self.lease_energy_j else 0.0,
        )

    def touch(self, now: datetime) -> None:
        self._now = now

    def low(self) -> bool:
        """Whether the lease has run low enough to top it up in the background."""
        if self.used_usd <= 0 and self.used_energy_j <= 0:
            return False  # nothing charged yet (e.g. only dry runs): reserve nothing
        want_usd, want_j = self.wanted()
        cfg = self.config

        def low(cap: float | None, lease: float, want: float) -> bool:
            # capped: below the low-water mark; uncapped: the lease is in debt (spend not yet recorded)
            return lease < cfg.low_water * max(want + lease, 1e-12) if cap is not None else lease < 0

        return low(self.budget.cap_usd, self.lease_usd, want_usd) or low(
            self.budget.cap_energy_j, self.lease_energy_j, want_j
        )

    def apply(self, grant: Grant) -> None:
        """Add a ledger grant to the lease and update this replica's measured share of global spend."""
        self.lease_usd += grant.usd
        self.lease_energy_j += grant.energy_j
        self._granted_since += grant.usd
        if self._global_at_grant is not None and grant.usd > 0:
            delta = grant.global_usd - self._global_at_grant
            if delta > 0:
                share = min(1.0, max(0.02, self._granted_since / delta))
                self.share = 0.7 * self.share + 0.3 * share
            self._granted_since = 0.0
        if grant.usd > 0:
            self._global_at_grant = grant.global_usd
        self.global_usd = max(self.global_usd, grant.global_usd)
        self.global_energy_j = max(self.global_energy_j, grant.global_energy_j)


def _under(
    rows: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    target: float,
    which: int,
    other: float,
    x: float,
) -> bool:
    """Whether the rows' mean chosen cost of resource `which` (0 USD, 1 J) is within `target` when that
    resource's price is x and the other's is `other`."""
    prices = ShadowPrices(x, other) if which == 0 else ShadowPrices(other, x)
    return mean_chosen_cost(*rows, prices)[which] <= target


class PacerBook:
    """The pacers of one replica, by (tenant, period); rolls a pacer over when its period ends."""

    def __init__(self, n_options: int, config: PacingConfig | None = None) -> None:
        self.n_options = n_options
        self.config = config or PacingConfig()
        self._pacers: dict[tuple[str, str], Pacer] = {}
        self.retired: list[Pacer] = []
        """Pacers of ended periods whose unused leases are still to be given back."""

    def get(self, tenant: str, budget: Budget, now: datetime) -> Pacer:
        key = (tenant, budget.period)
        pacer = self._pacers.get(key)
        if pacer is None or not pacer.start <= now < pacer.end:
            if pacer is not None:
                self.retired.append(pacer)
            pacer = Pacer(tenant, budget, self.n_options, now, self.config)
            self._pacers[key] = pacer
        elif pacer.budget != budget:
            pacer.budget = budget
        pacer.touch(now)
        return pacer

    def all(self) -> list[Pacer]:
        return list(self._pacers.values())

    def take_retired(self) -> list[Pacer]:
        out, self.retired = self.retired, []
        return out


def release_unused(ledger: LedgerLike, pacers: list[Pacer]) -> None:
    """Give the pacers' unused leases back to the ledger (blocking)."""
    for p in pacers:
        if p.lease_usd > 0 or p.lease_energy_j > 0:
            ledger.release(p.tenant, p.key, max(0.0, p.lease_usd), max(0.0, p.lease_energy_j))
        if p.lease_usd < 0 or p.lease_energy_j < 0:  # uncapped spend charged but not yet recorded
            ledger.reserve(p.tenant, p.key, max(0.0, -p.lease_usd), max(0.0, -p.lease_energy_j))
        p.lease_usd = p.lease_energy_j = 0.0


__all__ = [
    "Budget",
    "Grant",
    "LedgerLike",
    "MemoryLedger",
    "Pacer",
    "PacerBook",
    "PacingConfig",
    "PacingCurve",
    "period_bounds",
    "release_unused",
    "reserve_lease",
]
