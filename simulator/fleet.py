"""From a fleet (devices of each target per region) and a policy to replica pools the engine can run.

A pool serves one tier on one target in one region: `replicas` copies of the cost model's deployment
(`CostModel.deployment`: fewest devices that hold the weights). Devices a fleet entry pins to a tier go to
that tier's pool; the other devices of a (target, region) are shared out among the tiers the policy sends
there in proportion to their estimated device-seconds (largest remainder, at least one replica each);
devices no routed tier uses stay idle (paid for, drawing idle power).
Per-token targets (LPU-style, wafer-scale and hosted APIs) need no devices: capacity is the provider's.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from planner.catalog import Catalog, PriceModel
from planner.errors import InvalidArgumentError
from simulator.costmodel import CostModel
from simulator.hardware import max_batch
from simulator.policy import OptionKey
from simulator.scenario import FleetEntry

DEFAULT_MAX_BATCH = 256
"""Sequences in flight per replica when the scenario gives none (vLLM's default max_num_seqs), capped by
the KV cache that fits the replica's memory."""


@dataclass(frozen=True)
class PoolSpec:
    """One replica pool: `replicas` x `devices_per_replica` devices of `target` serving `tier`."""

    tier: str
    target: str
    region: str
    replicas: int
    devices_per_replica: int
    max_batch: int

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.tier, self.target, self.region)

    @property
    def devices(self) -> int:
        return self.replicas * self.devices_per_replica


def is_device_option(catalog: Catalog, option: OptionKey) -> bool:
    return catalog.target(option.target).price_model is not PriceModel.PER_TOKEN


@dataclass(frozen=True)
class IdleDevices:
    """Fleet devices no routed tier uses: still paid for and drawing idle power."""

    target: str
    region: str
    devices: int


def plan_pools(
    catalog: Catalog,
    cost_model: CostModel,
    fleet: Sequence[FleetEntry],
    options: Sequence[OptionKey],
    demand: Mapping[tuple[str, str, str], float],
    batch_cap: int | None = None,
) -> tuple[tuple[PoolSpec, ...], tuple[IdleDevices, ...]]:
    """Pools for the device options with demand (estimated device-seconds per pool key) or pinned devices,
    and the fleet's devices left idle. Raises when routed demand has no devices to run on."""
    routed = {(o.tier, o.target, o.region) for o in options if is_device_option(catalog, o)}
    pinned = {(e.tier, e.target, e.region or catalog.target(e.target).region) for e in fleet if e.tier}
    wanted = sorted({k for k in routed if demand.get(k, 0.0) > 0} | pinned)
    devices: dict[tuple[str, str, str], int] = defaultdict(int)
    shared: dict[tuple[str, str], int] = defaultdict(int)
    for e in fleet:
        region = e.region or catalog.target(e.target).region
        if e.tier:
            devices[(e.tier, e.target, region)] += e.count
        else:
            shared[(e.target, region)] += e.count
    idle = []
    for (target, region), count in shared.items():
        keys = [k for k in wanted if k[1:] == (target, region) and devices[k] == 0]
        if not keys:
            idle.append(IdleDevices(target, region, count))
            continue
        per = [cost_model.deployment(catalog.tier(k[0]), catalog.target(target)).n_devices for k in keys]
        for k, n in zip(keys, _share(count, per, [demand.get(k, 0.0) for k in keys], target), strict=True):
            devices[k] += n
    pools = tuple(_pool(catalog, cost_model, k, devices[k], batch_cap) for k in wanted)
    return pools, tuple(idle)


def _pool(
    catalog: Catalog, cost_model: CostModel, key: tuple[str, str, str], devices: int, batch_cap: int | None
) -> PoolSpec:
    tier, target, region = key
    config = cost_model.deployment(catalog.tier(tier), catalog.target(target))
    replicas = devices // config.n_devices
    if replicas < 1:
        raise InvalidArgumentError.for_field(
            "fleet",
            f"{devices} x {target} in {region}",
            f"{tier} needs {config.n_devices} devices per replica; routes send it traffic there",
        )
    fit = max(1, int(max_batch(config)))
    return PoolSpec(
        tier, target, region, replicas, config.n_devices, min(batch_cap or DEFAULT_MAX_BATCH, fit)
    )


def _share(count: int, per_replica: list[int], demand: list[float], target: str) -> list[int]:
    """Devices per tier: one replica each, the rest by demand share (largest remainder, whole replicas)."""
    if sum(per_replica) > count:
        raise InvalidArgumentError.for_field(
            "fleet",
            f"{count} x {target}",
            f"too few devices for one replica of each tier ({sum(per_replica)})",
        )
    reps = [1] * len(per_replica)
    left = count - sum(per_replica)
    d = np.asarray(demand, float)
    w = d / d.sum() if d.sum() > 0 else np.full(len(d), 1.0 / max(len(d), 1))
    ideal = w * count / np.asarray(per_replica, float)
    while True:
        gap = [(ideal[i] - reps[i], i) for i in range(len(reps)) if per_replica[i] <= left]
        if not gap:
            break
        _, i = max(gap)
        reps[i] += 1
        left -= per_replica[i]
    return [r * n for r, n in zip(reps, per_replica, strict=True)]
