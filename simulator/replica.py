"""Service of requests on one replica: the figures the cost model charges and the serving simulator runs.

`request_service` gives time, device-seconds and energy of requests decoded at the replica's operating
batch (what `simulator.costmodel` prices); `ReplicaService` evaluates the same physics at whatever batch a
simulation reaches (it satisfies `simulator.engine.ServiceModel`). Both sit on `simulator.hardware`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from simulator.hardware import (
    DecodeStep,
    DeploymentConfig,
    Efficiency,
    FloatArray,
    Num,
    decode_step,
    prefill,
)


@dataclass(frozen=True)
class RequestService:
    """Service of requests on a replica running at its operating batch (the figures both the planner's
    cost model and the serving simulator charge): arrays shaped like the token inputs."""

    ttft_s: FloatArray
    decode_s: FloatArray
    device_s: FloatArray
    energy_j: FloatArray


def request_service(
    config: DeploymentConfig, eff: Efficiency, input_tokens: Num, output_tokens: Num
) -> RequestService:
    """Time, device-seconds and energy of requests decoded at `config.batch_size`.

    Latency: TTFT = prefill alone; decode = output tokens x step time. Device-seconds: the request's share
    of the batch-shared decode step (step x n_devices / batch per token) plus its prefill compute.
    """
    step = decode_step(config, eff)
    pre = prefill(config, eff, input_tokens)
    tin = np.asarray(input_tokens, dtype=float)
    tout = np.asarray(output_tokens, dtype=float)
    per_token_device_s = float(step.step_s) * config.n_devices / config.batch_size
    device_s = tout * per_token_device_s + tin * pre.device_s_per_token
    energy = tout * float(step.energy_per_token_j) + tin * pre.energy_j_per_token
    ttft = np.broadcast_to(np.asarray(pre.latency_s, dtype=float), np.broadcast(tin, tout).shape)
    return RequestService(ttft.astype(float), tout * float(step.step_s), device_s, energy)


@dataclass(frozen=True)
class ReplicaService:
    """Service times and power of one replica at any batch size: the serving simulator's view of the same
    physics the cost model prices with (satisfies `simulator.engine.ServiceModel`)."""

    config: DeploymentConfig
    efficiency: Efficiency

    def _step(self, batch: Num) -> DecodeStep:
        batches = np.maximum(np.asarray(batch, dtype=float), 1.0)
        return decode_step(self.config, self.efficiency, batch=batches)

    def decode_step_s(self, batch: npt.ArrayLike) -> FloatArray:
        """Seconds per decode iteration at each batch size (sequences in flight)."""
        return np.asarray(self._step(batch).step_s, dtype=float)

    def prefill_s(self, tokens: npt.ArrayLike) -> FloatArray:
        """Seconds to prefill prompts of these token counts (the replica's decode stalls meanwhile)."""
        return np.asarray(
            prefill(self.config, self.efficiency, np.asarray(tokens, dtype=float)).latency_s, float
        )

    def power_w(self, batch: npt.ArrayLike) -> FloatArray:
        """Replica power while decoding at each batch size; batch 0 is an idle replica (the device's idle
        figure when the catalog gives one, else the calibrated static share of board power)."""
        b = np.asarray(batch, dtype=float)
        busy = np.asarray(self._step(b).power_w, dtype=float)
        return np.where(b <= 0, self.idle_w, busy)

    @property
    def idle_w(self) -> float:
        d = self.config.device
        per_device = d.idle_power_w if d.idle_power_w > 0 else d.board_power_w * self.efficiency.idle_frac
        return self.config.n_devices * per_device

    @property
    def prefill_power_w(self) -> float:
        return prefill(self.config, self.efficiency, 0.0).power_w
