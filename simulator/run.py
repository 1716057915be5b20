"""Simulate a scenario: workload -> policy -> replica pools (engine) or per-token services -> books.

`simulate(scenario)` is the public, pure entry point (same scenario and seed, same result). Each replicate
streams the workload chunk by chunk: the policy assigns every request an option; requests for
device-priced targets are fed, in arrival order, to their pool's `PoolEngine` (continuous batching on the
cost model's `ReplicaService`, so the simulator and the planner's prices share one physics); requests for
per-token services (LPU-style, wafer-scale, hosted APIs) get the cost model's latency, price and energy
estimate directly (no queueing: capacity is the provider's). Test-time strategies act on the workload:
N parallel samples take N batch slots and N x the decode work; serial steps (revisions, search depth)
add rounds that re-prefill the grown context. Network RTT of the target is added to TTFT and end-to-end.

Spend of a device pool is what the fleet costs over the simulated span (devices x hourly price, plus
electricity for owned devices), attributed to tenants by the slot-seconds their requests held.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np

from planner.catalog import Catalog, PriceModel, Strategy, load_catalog
from simulator.carbon import J_PER_KWH, Grid, grid_for
from simulator.costmodel import CostModel, UnitCost, option_cost_from_unit
from simulator.engine import Completions, Jobs, PoolConfig, PoolEngine, PoolStats
from simulator.fleet import IdleDevices, PoolSpec, is_device_option, plan_pools
from simulator.policy import FixedPolicy, Policy
from simulator.result import ReplicateResult, SimulationResult, combine
from simulator.scenario import Scenario
from simulator.tally import Done, Tally
from simulator.workload import RequestChunk, Workload

UNSERVED = -2
"""Pool index of a device option the fleet has no replica for: its requests are rejected."""

Progress = Callable[[float, int, int, str], None]
"""progress(fraction in [0, 1], replicate, requests done in this replicate, message)."""


@dataclass(frozen=True)
class Setup:
    """Everything a replicate needs, resolved once: catalog, cost model, policy, pools, option tables."""

    scenario: Scenario
    catalog: Catalog
    cost_model: CostModel
    policy: Policy
    pools: tuple[PoolSpec, ...]
    idle: tuple[IdleDevices, ...]
    option_pool: np.ndarray
    samples: np.ndarray
    rounds: np.ndarray
    work_mult: np.ndarray
    rtt_s: np.ndarray
    units: tuple[UnitCost, ...]
    grids: dict[str, Grid]


def prepare(
    scenario: Scenario,
    catalog: Catalog | None = None,
    cost_model: CostModel | None = None,
    policy: Policy | None = None,
) -> Setup:
    """Resolve the scenario against the catalog and size the pools (validates everything up front)."""
    cat = catalog or load_catalog(scenario.catalog or None)
    cm = cost_model or CostModel(cat)
    pol = policy or FixedPolicy(scenario.routes, cat)
    opts = pol.options
    strategies = [cat.strategy(o.strategy) for o in opts]
    units = tuple(cm.unit_cost(cat.tier(o.tier), cat.target(o.target)) for o in opts)
    demand = _demand(scenario.build_workload(), scenario.seed, pol, units, strategies)
    pools, idle = plan_pools(cat, cm, scenario.fleet, opts, demand, scenario.admission.max_batch)
    index = {p.key: i for i, p in enumerate(pools)}
    option_pool = np.array(
        [index.get((o.tier, o.target, o.region), UNSERVED if is_device_option(cat, o) else -1) for o in opts],
        np.int64,
    )
    regions = {o.region for o in opts} | {p.region for p in pools} | {d.region for d in idle}
    return Setup(
        scenario=scenario,
        catalog=cat,
        cost_model=cm,
        policy=pol,
        pools=pools,
        idle=idle,
        option_pool=option_pool,
        samples=np.array([s.samples for s in strategies], float),
        rounds=np.array([s.serial_steps for s in strategies], float),
        work_mult=np.array([s.token_multiplier * (1.0 + s.verifier_cost) for s in strategies], float),
        rtt_s=np.array([cat.target(o.target).network_rtt_ms / 1000.0 for o in opts], float),
        units=units,
        grids={r: grid_for(cat, r) for r in regions},
    )


def _demand(
    workload: Workload, seed: int, policy: Policy, units: Sequence[UnitCost], strategies: Sequence[Strategy]
) -> dict[tuple[str, str, str], float]:
    """Device-seconds per pool key on the workload's first chunk (to share devices among tiers)."""
    chunk = next(iter(workload.chunks(seed)), None)
    out: dict[tuple[str, str, str], float] = {}
    if chunk is None:
        return out
    a = policy.assign(chunk, np.random.default_rng([seed, 99]))
    for i, o in enumerate(policy.options):
        m = a.option == i
        if m.any():
            oc = option_cost_from_unit(units[i], strategies[i], chunk.input_tokens[m], chunk.output_tokens[m])
            key = (o.tier, o.target, o.region)
            out[key] = out.get(key, 0.0) + float(oc.device_s.sum())
    return out


def simulate(
    scenario: Scenario,
    *,
    catalog: Catalog | None = None,
    cost_model: CostModel | None = None,
    policy: Policy | None = None,
    progress: Progress | None = None,
) -> SimulationResult:
    """Run every replicate of `scenario` in this process and combine them."""
    setup = prepare(scenario, catalog, cost_model, policy)
    reps = [run_replicate(setup, r, progress) for r in range(scenario.replicates)]
    return combine(scenario.name, scenario.description, scenario.interval_level, reps)


def run_replicate(setup: Setup, replicate: int, progress: Progress | None = None) -> ReplicateResult:
    """One seeded replicate (seed = scenario seed + replicate)."""
    sc = setup.scenario
    tally = Tally(sc.slo)
    slot_s: list[dict[str, float]] = [{} for _ in setup.pools]
    engines = [_engine(setup, i, tally, slot_s[i]) for i in range(len(setup.pools))]
    rng = np.random.default_rng([sc.seed, replicate, 7])
    hint = sc.span_hint_s() if progress else 1.0
    seen = 0
    for chunk in sc.build_workload().chunks(sc.seed + replicate):
        tally.tenants = chunk.tenants
        _route(setup, chunk, rng, engines, tally)
        seen += len(chunk)
        if progress:
            frac = min(1.0, float(chunk.arrival_s[-1]) / hint)
            progress((replicate + frac) / sc.replicates, replicate, seen, f"{seen} requests routed")
    stats = [e.finish() for e in engines]
    return _close_books(setup, replicate, tally, stats, slot_s)


def _engine(setup: Setup, i: int, tally: Tally, slot_s: dict[str, float]) -> PoolEngine:
    p = setup.pools[i]
    service = setup.cost_model.service_model(setup.catalog.tier(p.tier), setup.catalog.target(p.target))
    cfg = PoolConfig(p.replicas, p.max_batch, setup.scenario.admission.max_queue)
    sink = partial(_on_done, setup, tally, slot_s)
    return PoolEngine(cfg, service, sink, lambda a, t, g: tally.reject(a, t))


def _on_done(setup: Setup, tally: Tally, slot_s: dict[str, float], c: Completions) -> None:
    rtt = setup.rtt_s[c.group]
    per_sample = c.tokens
    with np.errstate(divide="ignore", invalid="ignore"):
        tbt = np.where(per_sample > 1, (c.done_s - c.first_token_s) / (per_sample - 1), np.nan)
    tally.add(
        Done(c.arrival_s, c.first_token_s - c.arrival_s + rtt, c.done_s - c.arrival_s + rtt, tbt,
             per_sample * c.slots, c.tenant, c.quality)
    )  # fmt: skip
    for name, w in tally.tenant_weights(c.tenant, c.slots * (c.done_s - c.start_s)).items():
        slot_s[name] = slot_s.get(name, 0.0) + w


def _route(
    setup: Setup, chunk: RequestChunk, rng: np.random.Generator, engines: list[PoolEngine], tally: Tally
) -> None:
    a = setup.policy.assign(chunk, rng)
    pool = setup.option_pool[a.option]
    for p in np.unique(pool[pool >= 0]):
        m = pool == p
        o = a.option[m]
        engines[int(p)].feed(
            Jobs(chunk.arrival_s[m], chunk.input_tokens[m], chunk.output_tokens[m] * setup.work_mult[o],
                 setup.samples[o], setup.rounds[o], chunk.tenant[m].astype(np.int64), o, a.quality[m])
        )  # fmt: skip
    unserved = pool == UNSERVED
    if unserved.any():
        tally.reject(chunk.arrival_s[unserved], chunk.tenant[unserved])
        tally.unserved += int(unserved.sum())
    for oi in np.unique(a.option[pool == -1]):
        m = a.option == oi
        _per_token(setup, int(oi), chunk.take(m), a.quality[m], tally)


def _per_token(setup: Setup, oi: int, chunk: RequestChunk, quality: np.ndarray, tally: Tally) -> None:
    opt, unit = setup.policy.options[oi], setup.units[oi]
    strategy = setup.catalog.strategy(opt.strategy)
    oc = option_cost_from_unit(unit, strategy, chunk.input_tokens, chunk.output_tokens)
    tbt = np.where(chunk.output_tokens > 1, unit.s_per_output_token, np.nan)
    generated = chunk.output_tokens * strategy.output_multiplier
    tally.add(Done(chunk.arrival_s, oc.ttft_s, oc.latency_s, tbt, generated, chunk.tenant, quality))
    tally.charge(
        float(oc.usd.sum()), target=opt.target, tier=opt.tier, region=opt.region,
        tenants=tally.tenant_weights(chunk.tenant, oc.usd),
    )  # fmt: skip
    tally.hourly.add("spend_usd", chunk.arrival_s, oc.usd)
    grid = setup.grids[opt.region]
    tally.energy_j[opt.region] += float(oc.energy_j.sum())
    tally.hourly.add("energy_kwh", chunk.arrival_s, oc.energy_j * grid.pue / J_PER_KWH)


def _close_books(
    setup: Setup, replicate: int, tally: Tally, stats: list[PoolStats], slot_s: list[dict[str, float]]
) -> ReplicateResult:
    sc, cat = setup.scenario, setup.catalog
    horizon = max([sc.horizon_s or 0.0, tally.last_s, *(s.horizon_s for s in stats)]) or 1.0
    util: dict[str, list[float]] = {}
    pools = []
    for p, st, tenants in zip(setup.pools, stats, slot_s, strict=True):
        target = cat.target(p.target)
        service = setup.cost_model.service_model(cat.tier(p.tier), target)
        energy = st.energy_j + max(0.0, horizon - st.horizon_s) * service.idle_w * p.replicas
        usd = p.devices * target.hourly_usd * horizon / 3600.0
        if target.price_model is PriceModel.OWNED:
            usd += energy / J_PER_KWH * setup.cost_model.electricity_usd_per_kwh
        tally.charge(usd, target=p.target, tier=p.tier, region=p.region, tenants=tenants or {"(idle)": 1.0})
        tally.hourly.add_uniform("spend_usd", 0.0, horizon, usd)
        pue = setup.grids[p.region].pue
        hourly = np.asarray(st.hourly_energy_j) * pue / J_PER_KWH
        tally.hourly.add("energy_kwh", np.arange(len(hourly)) * 3600.0, hourly)
        idle_tail = (energy - st.energy_j) * pue / J_PER_KWH
        tally.hourly.add_uniform("energy_kwh", st.horizon_s, horizon, idle_tail)
        tally.energy_j[p.region] += energy
        busy = st.busy_s / (p.replicas * horizon)
        util.setdefault(p.target, []).extend([busy] * p.devices)
        occupancy = st.slot_s / (p.replicas * p.max_batch * horizon)
        pools.append(
            {**p.__dict__, "devices": p.devices, "utilisation": busy, "slot_occupancy": occupancy}
            | {"max_queue_len": st.max_queue_len}
        )
    for d in setup.idle:
        target = cat.target(d.target)
        usd = d.devices * target.hourly_usd * horizon / 3600.0
        tally.charge(usd, target=d.target, tier="(idle)", region=d.region, tenants={"(idle)": 1.0})
        tally.hourly.add_uniform("spend_usd", 0.0, horizon, usd)
        energy = (
            d.devices
            * (target.idle_power_w or target.power_w * setup.cost_model.efficiency.idle_frac)
            * horizon
        )
        tally.energy_j[d.region] += energy
        tally.hourly.add_uniform("energy_kwh", 0.0, horizon, energy * setup.grids[d.region].pue / J_PER_KWH)
        util.setdefault(d.target, []).extend([0.0] * d.devices)
    return ReplicateResult(
        replicate=replicate,
        scalars=_scalars(setup, tally, horizon),
        breakdown={
            **{f"spend_by_{k}_usd": dict(v) for k, v in tally.spend.items()},
            "utilisation": {k: float(np.mean(v)) for k, v in util.items()},
            "slo_attainment_by_tenant": tally.slo_by_tenant(),
            "energy_kwh_by_region": {r: setup.grids[r].facility_kwh(e) for r, e in tally.energy_j.items()},
            "co2_kg_by_region": {r: setup.grids[r].co2_kg(e) for r, e in tally.energy_j.items()},
        },
        hourly=tally.hourly.to_dict(),
        histograms={"ttft_s": tally.ttft, "tbt_s": tally.tbt, "e2e_s": tally.e2e},
        pools=pools,
        notes=_notes(setup),
    )


def _scalars(setup: Setup, t: Tally, horizon: float) -> dict[str, float]:
    it_j = sum(t.energy_j.values())
    kwh = sum(setup.grids[r].facility_kwh(e) for r, e in t.energy_j.items())
    co2 = sum(setup.grids[r].co2_kg(e) for r, e in t.energy_j.items())
    spend = sum(t.spend["target"].values())
    n = t.completed + t.rejected
    out = {
        "requests": float(n),
        "completed": float(t.completed),
        "rejected": float(t.rejected),
        "unserved": float(t.unserved),
        "horizon_s": horizon,
        "throughput_rps": t.completed / horizon,
        "output_tokens_per_s": t.tokens / horizon,
        "spend_usd": spend,
        "usd_per_1k_requests": 1000.0 * spend / t.completed if t.completed else float("nan"),
        "it_energy_kwh": it_j / J_PER_KWH,
        "energy_kwh": kwh,
        "wh_per_request": 1000.0 * kwh / t.completed if t.completed else float("nan"),
        "co2_kg": co2,
        "slo_attainment": t.slo_attainment,
        "expected_quality": t.expected_quality,
    }
    for name, h in (("ttft_s", t.ttft), ("tbt_s", t.tbt), ("e2e_s", t.e2e)):
        s = h.summary()
        out |= {f"{name}.{q}": float(s[q]) if h.n else float("nan") for q in ("mean", "p50", "p95", "p99")}
    return out


def _notes(setup: Setup) -> list[str]:
    notes = [
        "tbt_s is each request's mean time between tokens ((done - first token) / (tokens - 1)), "
        "percentiles over requests",
        "device pools are paid for the whole simulated span (devices x hourly price); per-token services "
        "by their list prices",
    ]
    notes += [
        f"grid {g.region}: {g.g_per_kwh:g} gCO2e/kWh, PUE {g.pue:g} ({g.source})"
        for g in setup.grids.values()
    ]
    notes += [
        f"{d.devices} x {d.target} in {d.region} serve no routed tier: idle, still paid" for d in setup.idle
    ]
    if any(u.energy_is_estimate for u in setup.units):
        notes.append("per-token services' energy is an estimate on the reference H100 replica, not measured")
    return notes
