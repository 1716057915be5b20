"""Roofline performance, memory fit and power of one model deployment on one kind of device.

The physics, per decode step of a continuously batched replica of `n` tensor/expert-parallel devices serving a
batch of `b` sequences that hold `ctx` tokens of KV cache each:

- bytes read = weights touched (all weights for a dense model; for a mixture of experts the expected share of
  experts touched by `b` tokens, `1 - (1 - active/total) ** (moe_touch * b)`) + KV cache `b * ctx * kv_bytes`;
- memory time = bytes / (bandwidth * bw_eff * n);
  compute time = 2 * active params * b / (peak * compute_eff * n);
- step time = smooth max of the two (an `overlap`-norm: 1 = the sum, large = the max) + per-step overhead
  (fixed + per sequence) + a tensor-parallel communication term `tp_overhead * log2(n)`;
- power = n * board * (idle_frac + (1 - idle_frac) * utilisation ** power_exp), utilisation a weighted sum of
  the bandwidth and compute busy fractions at datasheet peak; energy per output token = power * step / b.

Prefill is compute bound: 2 * active params * tokens / (peak * prefill_eff * n) plus one weight read.
The efficiency factors live in `Efficiency` (fitted by `simulator.calibrate` on measured H100 rows).
Every function is pure and broadcasts over numpy arrays, so calibration, the cost model and the serving
simulator evaluate exactly the same formulas.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import numpy.typing as npt

from planner.catalog import BYTES_PER_PARAM, WEIGHT_OVERHEAD, ModelTier, Target
from planner.errors import FieldViolation, InvalidArgumentError

FloatArray = npt.NDArray[np.float64]
Num = Any  # float or numpy array: every formula below broadcasts

KV_BYTES_PER_ELEMENT = 2.0
"""KV cache is assumed stored in 16-bit (vLLM's default cache dtype for bf16 and fp8-weight checkpoints)."""

RUNTIME_MEMORY_RESERVE = 0.10
"""Share of device memory kept free for activations, CUDA graphs, fragmentation (vLLM uses 0.9 of memory)."""


def compute_peak_tflops(precision: str, bf16: float, fp8: float, int8: float) -> float:
    """Datasheet peak (TFLOPS/TOPS) used for the matmuls of a model whose weights are stored at `precision`.

    fp8 weights run fp8 matmuls and int8 weights int8 matmuls where the device lists them; 4-bit weights
    (int4, mxfp4) are de-quantised to 16 bit on the fly (weight-only quantisation), so they run at the bf16
    peak. A device without a bf16 figure falls back to its fp8 figure, else to half its int8 figure.
    """
    half_int8 = int8 / 2.0
    if precision == "fp8" and fp8 > 0:
        return fp8
    if precision == "int8" and int8 > 0:
        return int8
    if bf16 > 0:
        return bf16
    return fp8 if fp8 > 0 else half_int8


@dataclass(frozen=True)
class ModelSpec:
    """What the physics needs to know about a model (a catalog tier or a measured model)."""

    name: str
    total_params_b: float
    active_params_b: float
    precision: str = "bf16"
    kv_bytes_per_token: float = 0.0

    def __post_init__(self) -> None:
        bad = []
        if not self.total_params_b > 0:
            bad.append(FieldViolation("total_params_b", self.total_params_b, "must be > 0"))
        if not 0 < self.active_params_b <= self.total_params_b:
            bad.append(
                FieldViolation("active_params_b", self.active_params_b, "must be in (0, total_params_b]")
            )
        if self.precision not in BYTES_PER_PARAM:
            bad.append(FieldViolation("precision", self.precision, f"not one of {sorted(BYTES_PER_PARAM)}"))
        if self.kv_bytes_per_token < 0:
            bad.append(FieldViolation("kv_bytes_per_token", self.kv_bytes_per_token, "must be >= 0"))
        if bad:
            raise InvalidArgumentError(f"bad model spec {self.name!r}", bad)

    @classmethod
    def from_tier(cls, tier: ModelTier) -> ModelSpec:
        return cls(tier.name, tier.total_params_b, tier.active_params_b, tier.precision, tier.kv_bytes)

    @property
    def bytes_per_param(self) -> float:
        return BYTES_PER_PARAM[self.precision]

    @property
    def weight_bytes(self) -> float:
        return self.total_params_b * 1e9 * self.bytes_per_param


@dataclass(frozen=True)
class DeviceSpec:
    """Datasheet figures of one device (bandwidth in GB/s, peaks in TFLOPS/TOPS, power in W)."""

    name: str
    memory_gb: float
    bandwidth_gb_s: float
    bf16_tflops: float = 0.0
    fp8_tflops: float = 0.0
    int8_tops: float = 0.0
    board_power_w: float = 0.0
    idle_power_w: float = 0.0

    def __post_init__(self) -> None:
        bad = [
            FieldViolation(f, getattr(self, f), "must be > 0")
            for f in ("memory_gb", "bandwidth_gb_s")
            if not getattr(self, f) > 0
        ]
        if max(self.bf16_tflops, self.fp8_tflops, self.int8_tops) <= 0:
            bad.append(FieldViolation("bf16_tflops", self.bf16_tflops, "device needs some compute peak"))
        if bad:
            raise InvalidArgumentError(f"bad device spec {self.name!r}", bad)

    @classmethod
    def from_target(cls, target: Target) -> DeviceSpec:
        """Device physics of a catalog target. Targets without figures (per-token services) are rejected."""
        if target.mem_bandwidth_gb_s <= 0 or target.memory_gb <= 0:
            raise InvalidArgumentError.for_field(
                "target.mem_bandwidth_gb_s",
                target.mem_bandwidth_gb_s,
                f"target {target.name!r} has no memory/bandwidth figures to model",
            )
        peaks = (target.bf16_tflops, target.fp8_tflops, target.int8_tops)
        bf16 = target.bf16_tflops
        if max(peaks) <= 0:
            # No published compute peak (e.g. a laptop SoC): assume ~30 FLOP per byte of bandwidth,
            # roughly the balance point of current accelerators. Decode is bandwidth bound anyway.
            bf16 = target.mem_bandwidth_gb_s * 30.0 / 1000.0
        return cls(
            target.name,
            target.memory_gb,
            target.mem_bandwidth_gb_s,
            bf16,
            target.fp8_tflops,
            target.int8_tops,
            target.power_w,
            target.idle_power_w,
        )

    def peak_flops(self, precision: str) -> float:
        return compute_peak_tflops(precision, self.bf16_tflops, self.fp8_tflops, self.int8_tops) * 1e12


@dataclass(frozen=True)
class Efficiency:
    """Achieved-efficiency factors and overheads (the calibrated parameters; defaults are hand priors)."""

    bw_eff: float = 0.8
    compute_eff: float = 0.5
    overlap: float = 2.0
    step_overhead_s: float = 0.003
    per_seq_overhead_s: float = 2e-5
    tp_overhead_s: float = 0.002
    moe_touch: float = 1.0
    overhead_size_exp: float = 0.35
    fp8_eff: float = 1.0
    int4_eff: float = 1.0
    idle_frac: float = 0.15
    power_mem_weight: float = 0.8
    power_compute_weight: float = 0.6
    power_exp: float = 1.0
    prefill_eff: float = 0.5

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    def as_dict(self) -> dict[str, float]:
        return {n: float(getattr(self, n)) for n in self.names()}

    def replace(self, **changes: float) -> Efficiency:
        return Efficiency(**{**self.as_dict(), **changes})

    def precision_factor(self, bytes_per_param: Num) -> Num:
        """Kernel-efficiency multiplier of quantised weights: 8-bit (`fp8_eff`) and 4-bit (`int4_eff`) decode
        kernels de-quantise on the fly and reach a different share of bandwidth than 16-bit ones."""
        b = np.asarray(bytes_per_param, dtype=float)
        return np.where(b <= 0.5, self.int4_eff, np.where(b <= 1.0, self.fp8_eff, 1.0))

    def size_scale(self, total_b: Num) -> Num:
        """Per-step overheads (kernel launches, all-reduces) grow with depth, and depth grows with size
        (8B: 32 layers, 70B: 80, 405B: 126): they scale by (total params / 10B) ** overhead_size_exp.
        (sqrt(total x active) as the size of a mixture of experts fitted no better on the H100 rows.)"""
        return np.power(np.asarray(total_b, dtype=float) / 10.0, self.overhead_size_exp)


@dataclass(frozen=True)
class DeploymentConfig:
    """One replica: `model` on `n_devices` x `device`, decoding `batch_size` sequences of `context_tokens`."""

    model: ModelSpec
    device: DeviceSpec
    n_devices: int = 1
    batch_size: float = 1.0
    context_tokens: float = 1024.0

    def __post_init__(self) -> None:
        bad = []
        if self.n_devices < 1:
            bad.append(FieldViolation("n_devices", self.n_devices, "must be >= 1"))
        if not self.batch_size >= 1:
            bad.append(FieldViolation("batch_size", self.batch_size, "must be >= 1"))
        if not self.context_tokens >= 0:
            bad.append(FieldViolation("context_tokens", self.context_tokens, "must be >= 0"))
        if bad:
            raise InvalidArgumentError("bad deployment config", bad)

    @classmethod
    def for_catalog(
        cls,
        tier: ModelTier,
        target: Target,
        n_devices: int = 1,
        batch_size: float = 1.0,
        context_tokens: float = 1024.0,
    ) -> DeploymentConfig:
        """A replica of catalog `tier` on `n_devices` x catalog `target` (which needs datasheet figures)."""
        return cls(
            ModelSpec.from_tier(tier), DeviceSpec.from_target(target), n_devices, batch_size, context_tokens
        )

    def with_batch(self, batch_size: float) -> DeploymentConfig:
        return DeploymentConfig(self.model, self.device, self.n_devices, batch_size, self.context_tokens)


@dataclass(frozen=True)
class MemoryFit:
    weights_gb: float
    kv_cache_gb: float
    needed_gb: float
    capacity_gb: float

    @property
    def fits(self) -> bool:
        return self.needed_gb <= self.capacity_gb


def memory_fit(config: DeploymentConfig) -> MemoryFit:
    """Weights + KV cache of the whole batch against usable memory of all devices of the replica."""
    m = config.model
    weights = m.weight_bytes / 1e9
    kv = config.batch_size * config.context_tokens * m.kv_bytes_per_token / 1e9
    capacity = config.n_devices * config.device.memory_gb * (1.0 - RUNTIME_MEMORY_RESERVE)
    return MemoryFit(weights, kv, weights + kv, capacity)


def check_memory_fit(config: DeploymentConfig) -> MemoryFit:
    """`memory_fit`, raising InvalidArgumentError naming every figure when the replica does not fit."""
    fit = memory_fit(config)
    if not fit.fits:
        raise InvalidArgumentError(
            f"{config.model.name} does not fit {config.n_devices} x {config.device.name}: needs "
            f"{fit.weights_gb:.1f} GB weights + {fit.kv_cache_gb:.1f} GB KV cache "
            f"(batch {config.batch_size:g} x "
            f"{config.context_tokens:g} tokens) = {fit.needed_gb:.1f} GB > {fit.capacity_gb:.1f} GB usable",
            [FieldViolation("memory_gb", fit.needed_gb, f"exceeds usable {fit.capacity_gb:.1f} GB")],
        )
    return fit


def max_batch(config: DeploymentConfig) -> int:
    """Largest batch whose KV cache fits beside the weights (0 when the weights alone do not fit)."""
    fit = memory_fit(config.with_batch(1.0))
    free_gb = fit.capacity_gb - fit.weights_gb
    per_seq_gb = config.context_tokens * config.model.kv_bytes_per_token / 1e9
    if free_gb <= 0:
        return 0
    if per_seq_gb <= 0:
        return 1 << 16
    return int(free_gb // per_seq_gb)


def min_devices(model: ModelSpec, device: DeviceSpec, max_devices: int) -> int:
    """Smallest power-of-two device count holding the weights with the catalog's overhead factor."""
    n = 1
    while n <= max_devices:
        if model.weight_bytes / 1e9 * WEIGHT_OVERHEAD <= n * device.memory_gb:
            return n
        n *= 2
    raise InvalidArgumentError.for_field(
        "n_devices",
        max_devices,
        f"{model.name} ({model.weight_bytes / 1e9:.1f} GB weights) does not fit {max_devices} x "
        f"{device.name} ({device.memory_gb:g} GB each)",
    )


# ---- vectorised physics ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DecodeStep:
    """Per-step figures of decode (arrays broadcast from the inputs)."""

    step_s: Num
    memory_s: Num
    compute_s: Num
    overhead_s: Num
    bytes_read: Num
    flops: Num
    power_w: Num
    batch: Num

    @property
    def tokens_per_s(self) -> Num:
        return self.batch / self.step_s

    @property
    def energy_per_token_j(self) -> Num:
        return self.power_w * self.step_s / self.batch


def touched_weight_share(total_b: Num, active_b: Num, batch: Num, moe_touch: float) -> Num:
    """Expected share of weights read in one decode step: 1 for dense models, grows with batch for MoE."""
    dense_share = np.asarray(active_b, dtype=float) / np.asarray(total_b, dtype=float)
    touched = 1.0 - np.power(1.0 - dense_share, moe_touch * np.asarray(batch, dtype=float))
    return np.clip(np.maximum(touched, dense_share), 0.0, 1.0)


def power_draw(eff: Efficiency, board_w: Num, n: Num, mem_busy: Num, compute_busy: Num) -> Num:
    """Replica power: idle share + dynamic share by utilisation (weighted bandwidth + compute busy shares)."""
    util = np.clip(eff.power_mem_weight * mem_busy + eff.power_compute_weight * compute_busy, 1e-9, 1.0)
    return n * board_w * (eff.idle_frac + (1.0 - eff.idle_frac) * np.power(util, eff.power_exp))


def decode_physics(
    eff: Efficiency,
    *,
    total_b: Num,
    active_b: Num,
    bytes_per_param: Num,
    kv_bytes_per_token: Num,
    bandwidth_gb_s: Num,
    peak_tflops: Num,
    board_w: Num,
    n: Num,
    batch: Num,
    context: Num,
) -> DecodeStep:
    """Decode step time, power and throughput; every argument may be an array (used by calibration)."""
    n = np.asarray(n, dtype=float)
    batch = np.asarray(batch, dtype=float)
    share = touched_weight_share(total_b, active_b, batch, eff.moe_touch)
    weight_bytes = np.asarray(total_b) * 1e9 * np.asarray(bytes_per_param) * share
    bytes_read = weight_bytes + batch * np.asarray(context) * np.asarray(kv_bytes_per_token)
    flops = 2.0 * np.asarray(active_b) * 1e9 * batch
    bw = np.asarray(bandwidth_gb_s) * 1e9 * n
    peak = np.asarray(peak_tflops) * 1e12 * n
    quant = eff.precision_factor(bytes_per_param)
    mem_s = bytes_read / (bw * eff.bw_eff * quant)
    comp_s = flops / (peak * eff.compute_eff * quant)
    p = eff.overlap
    roof = np.power(np.power(mem_s, p) + np.power(comp_s, p), 1.0 / p)
    fixed = (eff.step_overhead_s + eff.tp_overhead_s * np.log2(n)) * eff.size_scale(total_b)
    per_seq = eff.per_seq_overhead_s * batch
    step = roof + fixed + per_seq
    # memory busy: streaming share of the step; compute busy: matmul + per-sequence kernels (attention,
    # sampling); the fixed overhead and communication are counted as idle time.
    power = power_draw(eff, board_w, n, mem_s / step, (comp_s + per_seq) / step)
    return DecodeStep(step, mem_s, comp_s, fixed + per_seq, bytes_read, flops, power, batch)


def decode_step(config: DeploymentConfig, eff: Efficiency, batch: Any = None) -> DecodeStep:
    """`decode_physics` for one deployment; `batch` (a number or an array) overrides its batch size."""
    m, d = config.model, config.device
    return decode_physics(
        eff,
        total_b=m.total_params_b,
        active_b=m.active_params_b,
        bytes_per_param=m.bytes_per_param,
        kv_bytes_per_token=m.kv_bytes_per_token,
        bandwidth_gb_s=d.bandwidth_gb_s,
        peak_tflops=d.peak_flops(m.precision) / 1e12,
        board_w=d.board_power_w,
        n=config.n_devices,
        batch=config.batch_size if batch is None else batch,
        context=config.context_tokens,
    )


@dataclass(frozen=True)
class Prefill:
    """Prefill of a request alone on the replica (`latency_s`) and its device cost per input token."""

    latency_s: Num
    device_s_per_token: float
    energy_j_per_token: float
    power_w: float


def prefill_physics(
    eff: Efficiency, *, active_b: Num, peak_tflops: Num, board_w: Num, n: Num
) -> tuple[Num, Num, Num]:
    """Compute-bound prefill of one input token: (replica seconds, replica power W, joules); broadcasts."""
    n = np.asarray(n, dtype=float)
    s_per_token = 2.0 * np.asarray(active_b) * 1e9 / (np.asarray(peak_tflops) * 1e12 * n * eff.prefill_eff)
    power = power_draw(eff, board_w, n, 0.0, 1.0)
    return s_per_token, power, power * s_per_token


def prefill(config: DeploymentConfig, eff: Efficiency, input_tokens: Num) -> Prefill:
    """Compute-bound prefill: 2 x active params FLOPs per token at `prefill_eff` of peak + one weight read."""
    m, d, n = config.model, config.device, config.n_devices
    s_tok, power, j_tok = prefill_physics(
        eff,
        active_b=m.active_params_b,
        peak_tflops=d.peak_flops(m.precision) / 1e12,
        board_w=d.board_power_w,
        n=n,
    )
    weight_read_s = m.weight_bytes / (d.bandwidth_gb_s * 1e9 * n * eff.bw_eff)
    scale = float(eff.size_scale(m.total_params_b))
    fixed = weight_read_s + (eff.step_overhead_s + eff.tp_overhead_s * math.log2(n)) * scale
    latency = np.asarray(input_tokens, dtype=float) * float(s_tok) + fixed
    return Prefill(latency, n * float(s_tok), float(j_tok), float(power))
