"""SimulationService messages <-> the simulator's scenario and result (validation with field paths).

`scenario_from_request` checks every field (violations name ``scenario.<field>`` paths and values), maps
the proto workload / fleet / fixed policy onto a `simulator.scenario.Scenario`; `projection_message` turns a
`SimulationResult` into the `Projection` reply. Trace names are bare names resolved in the server's trace
folders (never client paths).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from planner.errors import FieldViolation, InvalidArgumentError
from planner.v1 import common_pb2, simulation_pb2
from simulator.result import SimulationResult
from simulator.scenario import Scenario, scenario_from_dict

DEFAULT_REPLICATES = 3
MAX_REPLICATES = 50
DEFAULT_HORIZON_S = 3600.0
MAX_REQUESTS = 20_000_000
"""Cap on requests x replicates one call may simulate."""
CALM_S, BURST_S = 300.0, 30.0
"""Mean calm and burst sojourns of the BURSTY generator (peak-to-mean = `burstiness`)."""
PERIOD_S = {
    common_pb2.BUDGET_PERIOD_HOUR: 3600.0,
    common_pb2.BUDGET_PERIOD_DAY: 86_400.0,
    common_pb2.BUDGET_PERIOD_WEEK: 7 * 86_400.0,
    common_pb2.BUDGET_PERIOD_MONTH: 30 * 86_400.0,
}


def _generator(g: simulation_pb2.WorkloadGenerator, bad: list[FieldViolation]) -> dict[str, Any]:
    path = "scenario.workload.generator"
    if not (g.rate_per_s > 0 and math.isfinite(g.rate_per_s)):
        bad.append(FieldViolation(f"{path}.rate_per_s", g.rate_per_s, "must be a finite number > 0"))
    peak = g.burstiness or 1.0
    out: dict[str, Any] = {"rate_per_s": g.rate_per_s if g.rate_per_s > 0 else 1.0}
    kind = {
        simulation_pb2.ARRIVAL_PROCESS_BURSTY: "bursty",
        simulation_pb2.ARRIVAL_PROCESS_DIURNAL: "diurnal",
    }.get(g.arrival, "poisson")
    out["kind"] = kind
    if kind != "poisson" and not 1.0 <= peak < (CALM_S + BURST_S) / BURST_S:
        bad.append(FieldViolation(f"{path}.burstiness", g.burstiness, "peak-to-mean must be in [1, 11)"))
    elif kind == "diurnal":
        out["amplitude"] = min(peak - 1.0, 1.0)
    elif kind == "bursty":
        rate = out["rate_per_s"]
        burst = peak * rate
        out |= {"burst_rate_per_s": burst, "calm_s": CALM_S, "burst_s": BURST_S}
        out["rate_per_s"] = max((rate * (CALM_S + BURST_S) - burst * BURST_S) / CALM_S, 1e-9)
    if g.mix:
        out["tasks"] = {s.task or "default": s.weight for s in g.mix}
    if g.tenant_weights:
        out["tenants"] = dict(g.tenant_weights)
    if g.prompt_tokens_mean < 0:
        bad.append(FieldViolation(f"{path}.prompt_tokens_mean", g.prompt_tokens_mean, "must be >= 0"))
    elif g.prompt_tokens_mean > 0:
        sigma = 0.9
        out["input_tokens"] = {"median": g.prompt_tokens_mean / math.exp(sigma**2 / 2), "sigma": sigma}
    return out


def _routes(policy: simulation_pb2.Policy, bad: list[FieldViolation]) -> list[dict[str, Any]]:
    kind = policy.WhichOneof("kind")
    if kind == "fixed_option":
        o = policy.fixed_option
        return [{"tier": o.tier, "strategy": o.strategy or "single", "target": o.target}]
    if kind == "fixed_mix":
        if not policy.fixed_mix.routes:
            bad.append(FieldViolation("scenario.policy.fixed_mix.routes", [], "needs at least one route"))
        return [
            {"tier": r.option.tier, "strategy": r.option.strategy or "single", "target": r.option.target,
             "weight": r.weight or 1.0, "task": r.task or "*", "region": r.region}
            for r in policy.fixed_mix.routes
        ]  # fmt: skip
    if kind is None:
        bad.append(FieldViolation("scenario.policy", None, "set planner, fixed_option or fixed_mix"))
    return []


def scenario_from_request(request: simulation_pb2.SimulateRequest) -> Scenario:
    """A validated `Scenario` (planner policies are resolved by the servicer; routes stay empty)."""
    s = request.scenario
    bad: list[FieldViolation] = []
    source = s.workload.WhichOneof("source")
    workload: dict[str, Any]
    if source == "trace_name":
        name = s.workload.trace_name
        if not name or "/" in name or "\\" in name or name.startswith("."):
            bad.append(FieldViolation("scenario.workload.trace_name", name, "a bare trace name, not a path"))
        workload = {"kind": "trace", "trace": name or "x"}
    elif source == "generator":
        workload = _generator(s.workload.generator, bad)
    else:
        bad.append(FieldViolation("scenario.workload", None, "set trace_name or generator"))
        workload = {}
    horizon = s.horizon.ToTimedelta().total_seconds() if s.HasField("horizon") else 0.0
    if horizon < 0:
        bad.append(FieldViolation("scenario.horizon", horizon, "must be >= 0"))
    replicates = s.replicates or DEFAULT_REPLICATES
    if not 1 <= replicates <= MAX_REPLICATES:
        bad.append(FieldViolation("scenario.replicates", s.replicates, f"must be in [0, {MAX_REPLICATES}]"))
    level = s.interval_level or 0.95
    if not 0 < level < 1:
        bad.append(FieldViolation("scenario.interval_level", s.interval_level, "must be in (0, 1) or 0"))
    if s.max_queue < 0:
        bad.append(FieldViolation("scenario.max_queue", s.max_queue, "must be >= 0"))
    for name in ("slo_ttft_s", "slo_e2e_s"):
        if getattr(s, name) < 0:
            bad.append(FieldViolation(f"scenario.{name}", getattr(s, name), "must be >= 0"))
    routes = _routes(s.policy, bad)
    fleet = [
        {"target": t.target, "count": t.count, "region": t.region, "tier": t.tier} for t in s.fleet.targets
    ]
    for i, t in enumerate(s.fleet.targets):
        if t.count < 1:
            bad.append(FieldViolation(f"scenario.fleet.targets[{i}].count", t.count, "must be >= 1"))
    if bad:
        raise InvalidArgumentError("invalid scenario", bad)
    if source == "generator" and horizon <= 0:
        horizon = DEFAULT_HORIZON_S
    data: dict[str, Any] = {
        "name": s.name or "scenario",
        "seed": int(s.workload.seed) % (2**63),
        "replicates": replicates,
        "interval_level": level,
        "workload": workload,
        "slo": {"ttft_s": s.slo_ttft_s, "e2e_s": s.slo_e2e_s},
        "admission": {"max_queue": s.max_queue or None},
        "fleet": fleet,
        "routes": routes,
    }
    if horizon > 0:
        data["horizon_s"] = horizon
    sc = _prefixed(data)
    if source == "generator" and sc.workload.rate_per_s * horizon * replicates > MAX_REQUESTS:
        raise InvalidArgumentError.for_field(
            "scenario.horizon", horizon, f"rate x horizon x replicates exceeds {MAX_REQUESTS:,} requests"
        )
    return sc


def _prefixed(data: dict[str, Any]) -> Scenario:
    try:
        return scenario_from_dict(data, "request")
    except InvalidArgumentError as exc:
        violations = [FieldViolation(f"scenario.{v.field}", v.value, v.reason) for v in exc.violations]
        raise InvalidArgumentError("invalid scenario", violations) from None


def _interval(r: SimulationResult, key: str) -> common_pb2.Interval:
    m = r.metrics.get(key)
    if m is None:
        return common_pb2.Interval(estimate=math.nan, lo=math.nan, hi=math.nan, level=r.level)
    return common_pb2.Interval(estimate=m["mean"], lo=m["lo"], hi=m["hi"], level=r.level)


def _latency(r: SimulationResult, name: str) -> simulation_pb2.LatencySummary:
    return simulation_pb2.LatencySummary(
        p50=_interval(r, f"{name}.p50"), p95=_interval(r, f"{name}.p95"), p99=_interval(r, f"{name}.p99")
    )


def _finite(d: dict[str, float]) -> dict[str, float]:
    return {k: float(v) for k, v in d.items() if np.isfinite(v)}


def projection_message(r: SimulationResult) -> simulation_pb2.Projection:
    """The Projection reply of a finished simulation."""
    b = r.breakdown
    return simulation_pb2.Projection(
        scenario=r.scenario,
        requests=r.metric("requests"),
        spend_usd=_interval(r, "spend_usd"),
        spend_by_target_usd=_finite(b.get("spend_by_target_usd", {})),
        spend_by_tier_usd=_finite(b.get("spend_by_tier_usd", {})),
        spend_by_tenant_usd=_finite(b.get("spend_by_tenant_usd", {})),
        ttft_s=_latency(r, "ttft_s"),
        tbt_s=_latency(r, "tbt_s"),
        e2e_s=_latency(r, "e2e_s"),
        slo_attainment=_interval(r, "slo_attainment"),
        utilisation=_finite(b.get("utilisation", {})),
        energy_kwh=_interval(r, "energy_kwh"),
        co2_kg=_interval(r, "co2_kg"),
        expected_quality=_interval(r, "expected_quality"),
        replicates=r.replicates,
        throughput_rps=_interval(r, "throughput_rps"),
        output_tokens_per_s=_interval(r, "output_tokens_per_s"),
        rejected=_interval(r, "rejected"),
        spend_per_hour_usd=r.hourly.get("spend_usd", []),
        energy_per_hour_kwh=r.hourly.get("energy_kwh", []),
        co2_by_region_kg=_finite(b.get("co2_kg_by_region", {})),
        notes=r.notes,
    )


def budget_per_request(policy: simulation_pb2.PlannerPolicy, rate_per_s: float) -> float:
    """USD per request the policy's spend cap allows at the workload's mean arrival rate (0 = none)."""
    b = policy.budget
    if b.spend_usd <= 0 or rate_per_s <= 0:
        return 0.0
    period = PERIOD_S.get(b.period, 86_400.0)
    return float(b.spend_usd / (rate_per_s * period))
