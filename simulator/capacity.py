"""Capacity planning: the cheapest fleet (replicas of each (tier, target, devices) pool) that meets latency
SLOs for a load and a routing policy -- a Melange-style integer program over per-pool throughput at the SLO.

Steps (all pure):
1. `profile_workload` streams a workload once: request rate, span and a seeded sample of token counts.
2. `class_samples` applies the policy (shares of (tier, strategy)) to the sample: per request of a tier, its
   batch slots (parallel samples), serial rounds and decode tokens per sample per round -- exactly what the
   serving engine runs (`simulator.engine.Jobs`).
3. `replica_capacity` estimates the request rate one replica sustains within the SLO from the same physics
   the cost model prices with (`simulator.replica.ReplicaService`): at a mean batch b of busy slots,
   throughput lambda(b) = b / (E[slot-tokens] step(b) + b E[prefill s]) (Little's law, decode stalled by
   prefills, prefill-prioritised); time per output token ~ step(b) / (1 - rho_prefill); time to first
   token ~ prefill quantile + M/G/1 wait of the prefill queue (Pollaczek-Khinchine). The largest lambda
   whose figures meet the SLO, times `headroom`, is the pool's capacity. Per-token services (LPU-style,
   wafer-scale, APIs) have no replicas: latency from the published per-user speed, cost per token.
4. `solve_fleet` is the MILP (scipy.optimize.milp / HiGHS): integer replicas n_p, continuous shares y_p of
   each tier's load; min sum(hourly cost_p n_p) + per-token spend, s.t. sum_p y_p = 1 per tier,
   lambda_t y_p <= cap_p n_p, and devices used <= devices available per target.
`simulator.capacity_sim` confirms a fleet by discrete-event simulation and tightens the pools that miss.
Not modelled: electricity of owned devices in the objective (their amortised price only).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import stats
from scipy.optimize import Bounds, LinearConstraint, milp

from planner.catalog import Catalog, ModelTier, PriceModel, Target
from planner.errors import FieldViolation, InfeasibleError, InvalidArgumentError
from simulator.costmodel import CostModel
from simulator.hardware import DeploymentConfig, DeviceSpec, ModelSpec, max_batch, min_devices
from simulator.replica import ReplicaService
from simulator.workload import Workload

MAX_SLOTS = 256
"""Batch slots per replica (vLLM's default max_num_seqs), further capped by the KV cache that fits."""
BATCH_FILL = 0.85
"""Mean busy slots are kept below this share of the slots (occupancy fluctuates around its mean)."""
ESTIMATE_SAMPLE = 2000
"""Sampled requests the analytic attainment estimate averages over."""
PREFILL_RHO_MAX = 0.7
"""Prefill utilisation cap (the prefill queue's wait grows as 1 / (1 - rho))."""


@dataclass(frozen=True)
class Slo:
    """A request meets the SLO when its time to first token <= `ttft_s` and its mean time per output token
    (after the first) <= `tpot_s`; the fleet meets it when a share >= `attainment` of requests do."""

    ttft_s: float = 2.0
    tpot_s: float = 0.1
    attainment: float = 0.95

    def __post_init__(self) -> None:
        bad = [
            FieldViolation(f"slo.{n}", getattr(self, n), "must be a finite number > 0")
            for n in ("ttft_s", "tpot_s")
            if not (getattr(self, n) > 0 and math.isfinite(getattr(self, n)))
        ]
        if not 0 < self.attainment < 1:
            bad.append(FieldViolation("slo.attainment", self.attainment, "must be in (0, 1)"))
        if bad:
            raise InvalidArgumentError("bad SLO", bad)


@dataclass(frozen=True)
class Route:
    """The policy under test: this share of all requests goes to `tier` with `strategy`."""

    tier: str
    strategy: str
    share: float


@dataclass(frozen=True)
class LoadProfile:
    """What the planner needs to know about a workload: rate, span and a token sample."""

    rate_per_s: float
    duration_s: float
    requests: int
    input_tokens: np.ndarray
    output_tokens: np.ndarray


@dataclass(frozen=True)
class ClassSample:
    """Sampled requests of one tier under the policy (engine units)."""

    tier: str
    share: float
    input_tokens: np.ndarray
    work: np.ndarray
    slots: np.ndarray
    rounds: np.ndarray


@dataclass(frozen=True)
class PoolCapacity:
    """One candidate pool: `tier` on replicas of `n_devices` x `target`, and what one replica sustains."""

    tier: str
    target: str
    n_devices: int
    max_batch: int
    cap_rps: float
    usd_per_hour: float
    per_token: bool = False
    usd_per_request: float = 0.0
    reason: str = ""
    context_tokens: float = 1024.0

    @property
    def key(self) -> str:
        return f"{self.tier}@{self.target}x{self.n_devices}"

    @property
    def feasible(self) -> bool:
        return self.cap_rps > 0


@dataclass(frozen=True)
class FleetPlan:
    """An ILP solution: replicas and load share per pool, cost per hour."""

    pools: tuple[PoolCapacity, ...]
    replicas: tuple[int, ...]
    shares: tuple[float, ...]
    usd_per_hour: float
    devices: Mapping[str, int] = field(default_factory=dict)
    pool_usd_per_hour: tuple[float, ...] = ()
    """Spend per hour of each pool (replicas x device price, or the per-token spend of its load share)."""

    def pool_cost(self, i: int) -> float:
        if self.pool_usd_per_hour:
            return self.pool_usd_per_hour[i]
        return self.replicas[i] * self.pools[i].usd_per_hour

    def used(self) -> list[tuple[PoolCapacity, int, float]]:
        return [(p, n, y) for p, n, y in zip(self.pools, self.replicas, self.shares, strict=True) if y > 1e-9]

    def to_dict(self) -> dict[str, object]:
        return {
            "usd_per_hour": self.usd_per_hour,
            "devices": dict(self.devices),  # per-token pools: spend in usd_per_hour (total), not per pool
            "pools": [
                {
                    "pool": p.key,
                    "tier": p.tier,
                    "target": p.target,
                    "n_devices": p.n_devices,
                    "replicas": n,
                    "share": y,
                    "cap_rps_per_replica": p.cap_rps if math.isfinite(p.cap_rps) else None,
                    "usd_per_hour": self.pool_cost(i),
                    "per_token": p.per_token,
                }
                for i, (p, n, y) in enumerate(zip(self.pools, self.replicas, self.shares, strict=True))
                if y > 1e-9
            ],
        }


# ---- load ------------------------------------------------------------------------------------------------
def profile_workload(workload: Workload, seed: int = 0, sample: int = 20_000) -> LoadProfile:
    """Stream `workload` once: requests, span, mean rate, and a seeded uniform sample of its token counts."""
    rng = np.random.default_rng([seed, 7])
    n, first, last = 0, math.inf, -math.inf
    kept_in: list[np.ndarray] = []
    kept_out: list[np.ndarray] = []
    for chunk in workload.chunks(seed):
        if not len(chunk):
            continue
        n += len(chunk)
        first, last = min(first, float(chunk.arrival_s[0])), max(last, float(chunk.arrival_s[-1]))
        take = rng.permutation(len(chunk))[:sample]
        kept_in.append(np.asarray(chunk.input_tokens, float)[take])
        kept_out.append(np.asarray(chunk.output_tokens, float)[take])
    if n == 0:
        raise InvalidArgumentError.for_field("workload", n, "yields no requests")
    tin, tout = np.concatenate(kept_in), np.concatenate(kept_out)
    if len(tin) > sample:
        idx = rng.choice(len(tin), sample, replace=False)
        tin, tout = tin[idx], tout[idx]
    span = max(last - first, 1e-9)
    rate = (n - 1) / span if n > 1 else 1.0 / max(last, 1.0)
    return LoadProfile(rate, span, n, np.maximum(tin, 1.0), np.maximum(tout, 1.0))


def check_routes(catalog: Catalog, routes: Sequence[Route]) -> tuple[Route, ...]:
    """Validate the policy (known tier and strategy, shares > 0) and normalise the shares to sum to 1."""
    bad: list[FieldViolation] = []
    names_t = {t.name for t in catalog.tiers}
    names_s = {s.name for s in catalog.strategies}
    for i, r in enumerate(routes):
        if r.tier not in names_t:
            bad.append(FieldViolation(f"routes[{i}].tier", r.tier, "not a catalog tier"))
        if r.strategy not in names_s:
            bad.append(FieldViolation(f"routes[{i}].strategy", r.strategy, f"not one of {sorted(names_s)}"))
        if not (r.share > 0 and math.isfinite(r.share)):
            bad.append(FieldViolation(f"routes[{i}].share", r.share, "must be a finite number > 0"))
    if not routes:
        bad.append(FieldViolation("routes", [], "need at least one (tier, strategy, share)"))
    if bad:
        raise InvalidArgumentError("bad policy", bad)
    total = sum(r.share for r in routes)
    return tuple(Route(r.tier, r.strategy, r.share / total) for r in routes)


def class_samples(
    catalog: Catalog, profile: LoadProfile, routes: Sequence[Route], seed: int = 0
) -> dict[str, ClassSample]:
    """Per tier, the sampled requests routed to it with their strategies' slots, rounds and work."""
    routes = check_routes(catalog, routes)
    rng = np.random.default_rng([seed, 11])
    pick = rng.choice(len(routes), size=len(profile.input_tokens), p=[r.share for r in routes])
    out: dict[str, ClassSample] = {}
    for tier in dict.fromkeys(r.tier for r in routes):
        idx = [i for i, r in enumerate(routes) if r.tier == tier]
        mask = np.isin(pick, idx)
        if not mask.any():  # a tiny share missed by the sample: keep its figures from the whole sample
            mask = np.ones(len(pick), bool)
            strat = np.full(len(pick), idx[0])
        else:
            strat = pick[mask]
        params = [job_params(catalog, routes[int(k)].strategy) for k in strat]
        slots, rounds, mult = (np.array(col, float) for col in zip(*params, strict=True))
        out[tier] = ClassSample(
            tier,
            sum(routes[i].share for i in idx),
            profile.input_tokens[mask],
            np.maximum(np.round(profile.output_tokens[mask] * mult), 1.0),
            slots,
            rounds,
        )
    return out


def job_params(catalog: Catalog, strategy: str) -> tuple[int, int, float]:
    """(batch slots, serial rounds, decode tokens per sample per round relative to a plain answer)."""
    s = catalog.strategy(strategy)
    return s.samples, s.serial_steps, s.token_multiplier * (1.0 + s.verifier_cost)


# ---- per-pool capacity -----------------------------------------------------------------------------------
def candidate_pools(
    cost_model: CostModel,
    samples: Mapping[str, ClassSample],
    slo: Slo,
    targets: Iterable[str] | None = None,
    headroom: float = 0.9,
    min_devices_only: bool = False,
) -> list[PoolCapacity]:
    """Every (tier, target, devices) pool the catalog allows for the tiers in `samples`, with its capacity
    (cap 0 and a reason when it cannot meet the SLO). Device counts: the fewest that hold the weights and the
    powers of two above it up to the target's `max_devices` (only the fewest with `min_devices_only`)."""
    cat = cost_model.catalog
    allowed = None if targets is None else set(targets)
    if allowed is not None:
        unknown = sorted(allowed - {g.name for g in cat.targets})
        if unknown:
            raise InvalidArgumentError.for_field("targets", unknown, "not catalog targets")
    pools: list[PoolCapacity] = []
    for tier_name, cls in samples.items():
        tier = cat.tier(tier_name)
        for target in cat.placements(tier):
            if allowed is not None and target.name not in allowed:
                continue
            if target.price_model is PriceModel.PER_TOKEN:
                pools.append(per_token_pool(cost_model, tier, target, cls, slo))
            else:
                found = device_pools(cost_model, tier, target, cls, slo, headroom)
                pools.extend(found[:1] if min_devices_only else found)
    return pools


def device_pools(
    cost_model: CostModel, tier: ModelTier, target: Target, cls: ClassSample, slo: Slo, headroom: float
) -> list[PoolCapacity]:
    model, device = ModelSpec.from_tier(tier), DeviceSpec.from_target(target)
    try:
        n0 = min_devices(model, device, target.max_devices)
    except InvalidArgumentError as exc:
        return [PoolCapacity(tier.name, target.name, target.max_devices, 0, 0.0, 0.0, reason=str(exc))]
    context = float(np.mean(cls.input_tokens + cls.work * cls.rounds))
    out = []
    n = n0
    while n <= target.max_devices:
        config = DeploymentConfig(model, device, n, 1.0, context)
        slots = min(MAX_SLOTS, max_batch(config))
        service = ReplicaService(config, cost_model.efficiency)
        cap, reason = replica_capacity(service, slots, cls, slo)
        out.append(
            PoolCapacity(
                tier.name,
                target.name,
                n,
                slots,
                cap * headroom,
                n * target.hourly_usd,
                reason=reason,
                context_tokens=context,
            )
        )
        n *= 2
    return out


def replica_capacity(service: ReplicaService, slots: int, cls: ClassSample, slo: Slo) -> tuple[float, str]:
    """Largest request rate (req/s) one replica sustains with its estimated SLO attainment >= the target.

    At mean busy slots b: lambda(b) from Little's law (module docstring), rho = lambda E[prefill]. Per sampled
    request i with k_i decode tokens: TPOT_i = (k_i step(b) + own re-prefills + S_i) / k_i, where S_i, the
    prefill stalls of other requests during its life, is compound Poisson (normal approximation: mean
    lambda T_i E[P], variance lambda T_i E[P^2]); TTFT_i = own prefill + step + prefill-queue wait, the wait
    positive with probability rho and then exponential with the M/G/1 (Pollaczek-Khinchine) mean. The
    estimated attainment is the mean over requests of P(TTFT_i ok) x P(TPOT_i ok)."""
    need = int(cls.slots.max())
    if slots < need:
        return 0.0, f"a request needs {need} slots, the replica holds {slots}"
    cls = _thin(cls, ESTIMATE_SAMPLE)
    first = service.prefill_s(cls.input_tokens)
    again = (cls.rounds - 1) * service.prefill_s(cls.input_tokens + cls.work)
    pre = first + again
    p_mean, p2 = float(pre.mean()), float((pre**2).mean())
    k = cls.work * cls.rounds
    b = np.arange(1, max(1, int(slots * BATCH_FILL)) + 1, dtype=float)
    step = service.decode_step_s(b)
    lam = b / (float((cls.slots * k).mean()) * step + b * p_mean)
    rho = np.minimum(lam * p_mean, 0.999)
    t_life = np.outer(step, k) + again  # (b, requests): own decode time and re-prefills
    mu_s = lam[:, None] * t_life * p_mean / (1.0 - rho[:, None])
    sd_s = np.sqrt(lam[:, None] * t_life * p2 / (1.0 - rho[:, None]))
    room = k * slo.tpot_s - t_life  # stall seconds a request can absorb
    p_tpot = stats.norm.cdf((room - mu_s) / np.maximum(sd_s, 1e-12))
    mean_wait = lam * p2 / (2.0 * (1.0 - rho))
    slack = slo.ttft_s - first[None, :] - step[:, None]
    tail = rho[:, None] * np.exp(
        -np.maximum(slack, 0.0) * rho[:, None] / np.maximum(mean_wait[:, None], 1e-12)
    )
    p_ttft = np.where(slack > 0, 1.0 - tail, 0.0)
    attain = (p_ttft * p_tpot).mean(axis=1)
    ok = (attain >= slo.attainment) & (rho <= PREFILL_RHO_MAX)
    if not ok.any():
        return 0.0, (
            f"misses the SLO even at batch 1: estimated attainment {attain[0]:.3f} < {slo.attainment:g} "
            f"(TTFT {slo.ttft_s:g} s, TPOT {slo.tpot_s:g} s)"
        )
    return float(lam[ok].max()), ""


def _thin(cls: ClassSample, n: int) -> ClassSample:
    """Every k-th sampled request, at most `n` of them (the sample is already in random order)."""
    if len(cls.work) <= n:
        return cls
    k = -(-len(cls.work) // n)
    return ClassSample(
        cls.tier, cls.share, cls.input_tokens[::k], cls.work[::k], cls.slots[::k], cls.rounds[::k]
    )


def per_token_pool(
    cost_model: CostModel, tier: ModelTier, target: Target, cls: ClassSample, slo: Slo
) -> PoolCapacity:
    """A per-token service: no replicas; meets the SLO when enough sampled requests would, and costs its
    token prices per request (strategy arithmetic of `simulator.costmodel`)."""
    unit = cost_model.unit_cost(tier, target)
    ttft = unit.ttft_base_s + cls.input_tokens * unit.ttft_s_per_input_token
    ok = (ttft <= slo.ttft_s) & (unit.s_per_output_token <= slo.tpot_s)
    prefill_tokens = cls.rounds * cls.input_tokens + (cls.rounds - 1) * cls.work
    usd = (
        prefill_tokens * unit.usd_per_input_token
        + cls.slots * cls.rounds * cls.work * unit.usd_per_output_token
    )
    reason = "" if ok.mean() >= slo.attainment else f"only {ok.mean():.3f} of requests would meet the SLO"
    return PoolCapacity(
        tier.name,
        target.name,
        0,
        0,
        math.inf if not reason else 0.0,
        0.0,
        per_token=True,
        usd_per_request=float(usd.mean()),
        reason=reason,
    )


# ---- the integer program ---------------------------------------------------------------------------------
def solve_fleet(
    pools: Sequence[PoolCapacity],
    demand_rps: Mapping[str, float],
    available: Mapping[str, int] | None = None,
    time_limit_s: float = 30.0,
) -> FleetPlan:
    """Cheapest replicas per pool serving `demand_rps` (req/s per tier) within the pools' capacities and the
    devices `available` per target (absent = unlimited). Raises InfeasibleError naming what blocks a tier."""
    pools = [p for p in pools if p.feasible and p.tier in demand_rps]
    _check_coverage(pools, demand_rps)
    k = len(pools)
    dev = [i for i, p in enumerate(pools) if not p.per_token]
    nd = len(dev)
    # variables: n (replicas of device pools), then y (share of the tier's load) for every pool
    c = np.concatenate(
        [
            [pools[i].usd_per_hour for i in dev],
            [demand_rps[p.tier] * 3600.0 * p.usd_per_request if p.per_token else 0.0 for p in pools],
        ]
    )
    rows: list[np.ndarray] = []
    lo: list[float] = []
    hi: list[float] = []
    for tier in demand_rps:
        row = np.zeros(nd + k)
        row[nd:] = [1.0 if p.tier == tier else 0.0 for p in pools]
        rows.append(row)
        lo.append(1.0)
        hi.append(1.0)
    for j, i in enumerate(dev):
        row = np.zeros(nd + k)
        row[j] = -pools[i].cap_rps
        row[nd + i] = demand_rps[pools[i].tier]
        rows.append(row)
        lo.append(-np.inf)
        hi.append(0.0)
    for target, count in (available or {}).items():
        row = np.zeros(nd + k)
        row[:nd] = [pools[i].n_devices if pools[i].target == target else 0 for i in dev]
        rows.append(row)
        lo.append(-np.inf)
        hi.append(float(count))
    ub = [math.ceil(demand_rps[pools[i].tier] / pools[i].cap_rps) + 1 for i in dev]
    res = milp(
        c,
        integrality=np.concatenate([np.ones(nd), np.zeros(k)]),
        bounds=Bounds(np.zeros(nd + k), np.concatenate([ub, np.ones(k)])),
        constraints=LinearConstraint(np.array(rows), lo, hi),
        options={"time_limit": time_limit_s},
    )
    if res.x is None:
        raise InfeasibleError(f"no fleet serves the load within the available devices: {res.message}")
    n = np.zeros(k, int)
    n[dev] = np.round(res.x[:nd]).astype(int)
    y = np.clip(res.x[nd:], 0.0, 1.0)
    devices: dict[str, int] = {}
    for i in dev:
        if n[i]:
            devices[pools[i].target] = devices.get(pools[i].target, 0) + int(n[i]) * pools[i].n_devices
    cost = [
        float(n[i] * p.usd_per_hour + (c[nd + i] * y[i] if p.per_token else 0.0)) for i, p in enumerate(pools)
    ]
    return FleetPlan(
        tuple(pools),
        tuple(int(v) for v in n),
        tuple(float(v) for v in y),
        float(res.fun),
        devices,
        tuple(cost),
    )


def _check_coverage(pools: Sequence[PoolCapacity], demand: Mapping[str, float]) -> None:
    missing = sorted(t for t in demand if not any(p.tier == t for p in pools))
    if missing:
        raise InfeasibleError(f"no pool can serve tier(s) {missing} within the SLO on the allowed targets")
