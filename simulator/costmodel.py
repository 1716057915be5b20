"""Price, latency, energy and device time of every (tier, strategy, target) option, vectorised over queries.

One `UnitCost` per (tier, target) holds per-token figures at the target's operating point; `option_cost` turns
token arrays into `OptionCost` arrays with a few multiply-adds (no per-element Python). The serving simulator
uses the same `UnitCost` / `simulator.replica` figures, so a plan and its projection agree.

Pricing by `Target.price_model`:
- `device_hour`: device-seconds x `hourly_usd` / 3600. Device-seconds per output token are the request's share
  of a batch-shared decode step at the operating batch (step x n_devices / batch); prefill is compute bound.
  Electricity is inside the hourly price.
- `owned` (edge devices, own racks): the same device-seconds at the amortised purchase price per hour, plus
  energy x `electricity_usd_per_kwh`. Edge devices default to batch 1 and must fit weights + KV in memory.
- `per_token` (LPU-style, wafer-scale, hosted APIs): list token prices; latency from the published per-user
  speed plus network RTT; device_s = 0 (capacity is the provider's). Their energy is an ESTIMATE: the same
  physics on the reference device of the calibration (H100) at the default operating batch.

Strategy effects (per query, for `input_tokens` I and `output_tokens` O of ONE plain sample):
- generated tokens = O x `strategy.output_multiplier` (samples x serial steps x token multiplier x
  (1 + verifier cost));
- prefill tokens = serial_steps x I + (serial_steps - 1) x O x token_multiplier: every serial step re-reads
  the prompt, and each revision / search step also re-reads the previous answer. Parallel samples share one
  prefill (prefix caching / n > 1 sampling), so samples cost device time and tokens but not extra prefill;
- latency = serial_steps x TTFT + per-user decode time of one sample's tokens (O x token multiplier x
  (1 + verifier cost)) x serial_steps: parallel samples run in the same batch and add no latency.
p90 figures come from passing p90 token arrays (e.g. `Forecast.output_tokens_p90`): every output is monotone
in the tokens.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from planner.catalog import Catalog, ModelTier, PriceModel, Strategy, Target, TargetFamily
from planner.errors import FieldViolation, InvalidArgumentError, NotFoundError
from simulator.calibration import H100, Calibration, load_calibration
from simulator.hardware import (
    DeploymentConfig,
    DeviceSpec,
    Efficiency,
    ModelSpec,
    decode_step,
    max_batch,
    min_devices,
    prefill,
)
from simulator.replica import ReplicaService

FloatArray = npt.NDArray[np.float64]

REFERENCE_DEVICE = H100
"""The calibration's device, used to estimate the energy of per-token-priced targets."""

DEFAULT_BATCH = {TargetFamily.EDGE: 1.0}
DEFAULT_GPU_BATCH = 64.0
PREFILL_SPEEDUP = 20.0
"""Per-token services: prompt tokens are processed this many times faster than the per-user decode speed
(an assumption; providers publish decode speeds, not prefill speeds)."""

J_PER_KWH = 3.6e6


@dataclass(frozen=True)
class OptionCost:
    """Same-shape float arrays, one entry per query."""

    usd: FloatArray
    latency_s: FloatArray
    ttft_s: FloatArray
    energy_j: FloatArray
    device_s: FloatArray


@dataclass(frozen=True)
class UnitCost:
    """Per-token figures of one tier on one target at its operating point (linear in tokens)."""

    tier: str
    target: str
    price_model: PriceModel
    n_devices: int
    batch_size: float
    usd_per_input_token: float
    usd_per_output_token: float
    s_per_output_token: float
    ttft_base_s: float
    ttft_s_per_input_token: float
    device_s_per_input_token: float
    device_s_per_output_token: float
    energy_j_per_input_token: float
    energy_j_per_output_token: float
    power_w: float
    energy_is_estimate: bool
    extrapolation: tuple[str, ...] = ()

    @property
    def tokens_per_s(self) -> float:
        """Replica output throughput at the operating batch (0 for per-token services)."""
        if self.device_s_per_output_token <= 0:
            return 0.0
        return self.n_devices / self.device_s_per_output_token


class CostModel:
    """Prices options for the solver; the serving simulator reads the same unit costs.

    `operating_batch`: decode batch of device-priced targets, one number or a mapping by target name
    (default 64 on GPUs, 1 on edge devices, capped by what fits memory). `context_tokens`: mean KV-cache
    tokens per sequence assumed at the operating point. `electricity_usd_per_kwh` prices the energy of owned
    devices.
    """

    def __init__(
        self,
        catalog: Catalog,
        calibration: Calibration | None = None,
        *,
        operating_batch: float | Mapping[str, float] | None = None,
        context_tokens: float = 1024.0,
        electricity_usd_per_kwh: float = 0.15,
    ) -> None:
        bad = []
        if context_tokens < 0:
            bad.append(FieldViolation("context_tokens", context_tokens, "must be >= 0"))
        if electricity_usd_per_kwh < 0:
            bad.append(FieldViolation("electricity_usd_per_kwh", electricity_usd_per_kwh, "must be >= 0"))
        if bad:
            raise InvalidArgumentError("bad cost model settings", bad)
        self.catalog = catalog
        self.calibration = calibration if calibration is not None else load_calibration()
        self.operating_batch = operating_batch
        self.context_tokens = float(context_tokens)
        self.electricity_usd_per_kwh = float(electricity_usd_per_kwh)
        self._units: dict[tuple[str, str], UnitCost] = {}

    @property
    def efficiency(self) -> Efficiency:
        return self.calibration.efficiency

    # ---- operating points ----------------------------------------------------------------------------------
    def batch_for(self, target: Target) -> float:
        ob = self.operating_batch
        if isinstance(ob, Mapping):
            if target.name in ob:
                return float(ob[target.name])
        elif ob is not None:
            return float(ob)
        return DEFAULT_BATCH.get(target.family, DEFAULT_GPU_BATCH)

    def deployment(self, tier: ModelTier, target: Target) -> DeploymentConfig:
        """The replica a device-priced target runs `tier` on: fewest devices that hold the weights, the
        operating batch capped by the KV cache that fits; raises InvalidArgumentError when nothing fits."""
        model, device = ModelSpec.from_tier(tier), DeviceSpec.from_target(target)
        n = min_devices(model, device, target.max_devices)
        config = DeploymentConfig(model, device, n, 1.0, self.context_tokens)
        cap = max_batch(config)
        if cap < 1:
            raise InvalidArgumentError.for_field(
                "batch_size", cap, f"{tier.name} on {n} x {target.name}: no room for one sequence's KV cache"
            )
        return config.with_batch(min(self.batch_for(target), float(cap)))

    def service_model(self, tier: ModelTier, target: Target) -> ReplicaService:
        """The replica the serving simulator runs for (tier, target): same deployment and efficiencies as the
        unit costs, evaluated at whatever batch the simulation reaches."""
        if target.price_model is PriceModel.PER_TOKEN:
            raise InvalidArgumentError.for_field(
                "target",
                target.name,
                "per-token services have no replica to simulate (capacity is the provider's)",
            )
        return ReplicaService(self.deployment(tier, target), self.efficiency)

    # ---- unit costs ----------------------------------------------------------------------------------------
    def unit_cost(self, tier: ModelTier, target: Target) -> UnitCost:
        key = (tier.name, target.name)
        unit = self._units.get(key)
        if unit is None:
            unit = self._compute_unit(tier, target)
            self._units[key] = unit
        return unit

    def _compute_unit(self, tier: ModelTier, target: Target) -> UnitCost:
        if target.price_model is PriceModel.PER_TOKEN:
            return self._per_token_unit(tier, target)
        if not tier.open_weights:
            raise NotFoundError(
                f"closed tier {tier.name!r} runs only on its provider's API, not {target.name!r}"
            )
        config = self.deployment(tier, target)
        eff = self.efficiency
        step = decode_step(config, eff)
        pre = prefill(config, eff, 0.0)
        step_s = float(step.step_s)
        dev_out = step_s * config.n_devices / config.batch_size
        e_out = float(step.energy_per_token_j)
        usd_per_dev_s = target.hourly_usd / 3600.0
        usd_out = dev_out * usd_per_dev_s
        usd_in = pre.device_s_per_token * usd_per_dev_s
        if target.price_model is PriceModel.OWNED:
            usd_per_j = self.electricity_usd_per_kwh / J_PER_KWH
            usd_out += e_out * usd_per_j
            usd_in += pre.energy_j_per_token * usd_per_j
        rtt = target.network_rtt_ms / 1000.0
        return UnitCost(
            tier=tier.name,
            target=target.name,
            price_model=target.price_model,
            n_devices=config.n_devices,
            batch_size=config.batch_size,
            usd_per_input_token=usd_in,
            usd_per_output_token=usd_out,
            s_per_output_token=step_s,
            ttft_base_s=float(pre.latency_s) + rtt,
            ttft_s_per_input_token=pre.device_s_per_token / config.n_devices,
            device_s_per_input_token=pre.device_s_per_token,
            device_s_per_output_token=dev_out,
            energy_j_per_input_token=pre.energy_j_per_token,
            energy_j_per_output_token=e_out,
            power_w=float(step.power_w),
            energy_is_estimate=False,
            extrapolation=self.calibration.extrapolation_report(config),
        )

    def _per_token_unit(self, tier: ModelTier, target: Target) -> UnitCost:
        price = target.token_prices.get(tier.name)
        if price is None:
            valid = ", ".join(sorted(target.token_prices)) or "(none)"
            raise NotFoundError(
                f"target {target.name!r} does not serve tier {tier.name!r}; it serves: {valid}"
            )
        e_in, e_out, notes = self._reference_energy(tier)
        speed = target.tokens_per_s_per_user
        return UnitCost(
            tier=tier.name,
            target=target.name,
            price_model=target.price_model,
            n_devices=0,
            batch_size=0.0,
            usd_per_input_token=price.input_usd_per_mtok / 1e6,
            usd_per_output_token=price.output_usd_per_mtok / 1e6,
            s_per_output_token=1.0 / speed,
            ttft_base_s=target.network_rtt_ms / 1000.0,
            ttft_s_per_input_token=1.0 / (speed * PREFILL_SPEEDUP),
            device_s_per_input_token=0.0,
            device_s_per_output_token=0.0,
            energy_j_per_input_token=e_in,
            energy_j_per_output_token=e_out,
            power_w=0.0,
            energy_is_estimate=True,
            extrapolation=notes,
        )

    def _reference_energy(self, tier: ModelTier) -> tuple[float, float, tuple[str, ...]]:
        """Energy per input / output token of `tier` as if served on the reference H100 (an estimate)."""
        model = ModelSpec.from_tier(tier)
        n = min_devices(model, REFERENCE_DEVICE, 64)
        config = DeploymentConfig(model, REFERENCE_DEVICE, n, 1.0, self.context_tokens)
        config = config.with_batch(float(max(1, min(DEFAULT_GPU_BATCH, max_batch(config)))))
        step = decode_step(config, self.efficiency)
        pre = prefill(config, self.efficiency, 0.0)
        notes = ("energy estimated on the reference H100 replica, not measured on this target",)
        return (
            pre.energy_j_per_token,
            float(step.energy_per_token_j),
            notes + self.calibration.extrapolation_report(config),
        )

    # ---- options -------------------------------------------------------------------------------------------
    def option_cost(
        self,
        tier: ModelTier,
        strategy: Strategy,
        target: Target,
        input_tokens: npt.ArrayLike,
        output_tokens: npt.ArrayLike,
    ) -> OptionCost:
        """Cost of running `strategy` with `tier` on `target` for each query (arrays of the same shape)."""
        return option_cost_from_unit(self.unit_cost(tier, target), strategy, input_tokens, output_tokens)


def option_cost_from_unit(
    unit: UnitCost, strategy: Strategy, input_tokens: npt.ArrayLike, output_tokens: npt.ArrayLike
) -> OptionCost:
    """The strategy arithmetic of the module docstring on one unit cost (pure, vectorised)."""
    tin = np.asarray(input_tokens, dtype=float)
    tout = np.asarray(output_tokens, dtype=float)
    if tin.shape != tout.shape:
        raise InvalidArgumentError.for_field(
            "output_tokens", tout.shape, f"shape differs from input_tokens {tin.shape}"
        )
    if tin.size and (np.nanmin(tin) < 0 or np.nanmin(tout) < 0):
        raise InvalidArgumentError.for_field(
            "tokens", float(min(tin.min(), tout.min())), "token counts must be >= 0"
        )
    steps = float(strategy.serial_steps)
    generated = tout * strategy.output_multiplier
    sample_tokens = tout * strategy.token_multiplier * (1.0 + strategy.verifier_cost)
    prefill_tokens = steps * tin + (steps - 1.0) * tout * strategy.token_multiplier
    ttft = unit.ttft_base_s + tin * unit.ttft_s_per_input_token
    latency = (
        steps * unit.ttft_base_s
        + prefill_tokens * unit.ttft_s_per_input_token
        + steps * sample_tokens * unit.s_per_output_token
    )
    return OptionCost(
        usd=prefill_tokens * unit.usd_per_input_token + generated * unit.usd_per_output_token,
        latency_s=latency,
        ttft_s=ttft,
        energy_j=prefill_tokens * unit.energy_j_per_input_token + generated * unit.energy_j_per_output_token,
        device_s=prefill_tokens * unit.device_s_per_input_token + generated * unit.device_s_per_output_token,
    )
