"""Physics sanity of the roofline hardware model: bandwidth, batch, memory fit, MoE, power, parallelism."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from planner.errors import InvalidArgumentError
from simulator.calibration import load_calibration
from simulator.hardware import (
    DeploymentConfig,
    DeviceSpec,
    ModelSpec,
    check_memory_fit,
    decode_step,
    max_batch,
    memory_fit,
    min_devices,
    prefill,
    touched_weight_share,
)
from simulator.replica import request_service

EFF = load_calibration().efficiency
H100 = DeviceSpec("H100-SXM5-80GB", 80, 3350, 989, 1979, 1979, 700)
H200 = DeviceSpec("H200-SXM-141GB", 141, 4800, 989, 1979, 1979, 700)
LLAMA8 = ModelSpec("llama-8b", 8, 8, "bf16", 131072)
LLAMA70 = ModelSpec("llama-70b", 70, 70, "bf16", 327680)
MOE = ModelSpec("moe-235b", 235, 22, "bf16", 192512)


def _cfg(model: ModelSpec = LLAMA8, device: DeviceSpec = H100, n: int = 1, b: float = 32, ctx: float = 1000):
    return DeploymentConfig(model, device, n, b, ctx)


def test_more_bandwidth_decodes_faster() -> None:
    assert decode_step(_cfg(device=H200), EFF).step_s < decode_step(_cfg(device=H100), EFF).step_s


def test_bigger_batch_more_throughput_less_energy_per_token_slower_steps() -> None:
    steps = [decode_step(_cfg(b=b), EFF) for b in (1, 8, 64, 256)]
    tput = [float(s.tokens_per_s) for s in steps]
    energy = [float(s.energy_per_token_j) for s in steps]
    step = [float(s.step_s) for s in steps]
    assert tput == sorted(tput) and energy == sorted(energy, reverse=True) and step == sorted(step)


def test_bigger_model_slower_and_more_energy() -> None:
    small, big = decode_step(_cfg(n=4), EFF), decode_step(_cfg(LLAMA70, n=4), EFF)
    assert big.step_s > small.step_s and big.energy_per_token_j > small.energy_per_token_j


def test_longer_context_reads_more_kv() -> None:
    assert decode_step(_cfg(ctx=8000), EFF).step_s > decode_step(_cfg(ctx=500), EFF).step_s


def test_fp8_halves_weight_bytes() -> None:
    fp8 = ModelSpec("llama-70b-fp8", 70, 70, "fp8", 327680)
    assert fp8.weight_bytes == pytest.approx(LLAMA70.weight_bytes / 2)


def test_moe_reads_active_share_at_batch_one_and_more_with_batch() -> None:
    share = touched_weight_share(235.0, 22.0, np.array([1.0, 8.0, 64.0, 1024.0]), 1.0)
    assert share[0] == pytest.approx(22 / 235, rel=1e-9)
    assert np.all(np.diff(share) > 0) and share[-1] <= 1.0
    assert touched_weight_share(8.0, 8.0, 1.0, 1.0) == pytest.approx(1.0)


def test_moe_decodes_faster_than_dense_of_same_total_size() -> None:
    dense = ModelSpec("dense-235b", 235, 235, "bf16", 192512)
    assert decode_step(_cfg(MOE, n=8), EFF).step_s < decode_step(_cfg(dense, n=8), EFF).step_s


def test_tensor_parallel_speeds_up_a_memory_bound_model() -> None:
    assert decode_step(_cfg(LLAMA70, n=4, b=8), EFF).step_s < decode_step(_cfg(LLAMA70, n=2, b=8), EFF).step_s


def test_power_between_idle_and_board() -> None:
    for b in (1, 16, 256, 2048):
        for n in (1, 8):
            p = float(decode_step(_cfg(LLAMA70, n=n, b=b), EFF).power_w)
            assert n * 700 * EFF.idle_frac <= p <= n * 700 + 1e-9


def test_memory_fit_and_error_names_values() -> None:
    ok = memory_fit(_cfg(b=8, ctx=1000))
    assert ok.fits and ok.weights_gb == pytest.approx(16.0)
    with pytest.raises(InvalidArgumentError) as info:
        check_memory_fit(_cfg(LLAMA70, n=1))
    msg = str(info.value)
    assert "llama-70b" in msg and "140.0 GB weights" in msg and "72.0 GB usable" in msg
    with pytest.raises(InvalidArgumentError, match="KV cache"):
        check_memory_fit(_cfg(b=4096, ctx=32000))


def test_max_batch_and_min_devices() -> None:
    cap = max_batch(_cfg(ctx=1000))
    assert memory_fit(_cfg(b=cap, ctx=1000)).fits and not memory_fit(_cfg(b=cap + 1, ctx=1000)).fits
    assert min_devices(LLAMA8, H100, 8) == 1
    assert min_devices(LLAMA70, H100, 8) == 4
    with pytest.raises(InvalidArgumentError, match="does not fit 2 x"):
        min_devices(LLAMA70, H100, 2)


def test_constructors_reject_bad_values_naming_them() -> None:
    with pytest.raises(InvalidArgumentError, match="active_params_b"):
        ModelSpec("x", 8, 9)
    with pytest.raises(InvalidArgumentError, match="fp7"):
        ModelSpec("x", 8, 8, "fp7")
    with pytest.raises(InvalidArgumentError, match="bandwidth_gb_s"):
        DeviceSpec("x", 80, 0, 1)
    with pytest.raises(InvalidArgumentError, match="batch_size"):
        DeploymentConfig(LLAMA8, H100, 1, 0.5)


def test_prefill_is_compute_bound_and_linear() -> None:
    cfg = _cfg()
    p1, p2 = prefill(cfg, EFF, 1000.0), prefill(cfg, EFF, 2000.0)
    per_token = float(p2.latency_s) - float(p1.latency_s)
    assert per_token / 1000 == pytest.approx(2 * 8e9 / (989e12 * EFF.prefill_eff), rel=1e-9)
    fp8 = ModelSpec("llama-8b-fp8", 8, 8, "fp8", 131072)
    assert prefill(_cfg(fp8), EFF, 1000.0).latency_s < p1.latency_s


def test_vectorised_decode_physics_matches_scalar_configs() -> None:
    batches = np.array([1.0, 7.0, 64.0, 300.0])
    from simulator.hardware import decode_physics

    vec = decode_physics(
        EFF,
        total_b=70.0,
        active_b=70.0,
        bytes_per_param=2.0,
        kv_bytes_per_token=327680.0,
        bandwidth_gb_s=3350.0,
        peak_tflops=989.0,
        board_w=700.0,
        n=4,
        batch=batches,
        context=1000.0,
    )
    for i, b in enumerate(batches):
        one = decode_step(_cfg(LLAMA70, n=4, b=float(b)), EFF)
        assert float(one.step_s) == pytest.approx(vec.step_s[i], rel=1e-12)
        assert float(one.power_w) == pytest.approx(vec.power_w[i], rel=1e-12)


@settings(max_examples=50, deadline=None)
@given(
    tin=st.lists(st.floats(0, 1e5), min_size=1, max_size=10),
    extra=st.floats(1, 1e4),
    b=st.floats(1, 512),
)
def test_request_service_non_negative_and_monotone(tin: list[float], extra: float, b: float) -> None:
    cfg = _cfg(b=b)
    x = np.array(tin)
    base = request_service(cfg, EFF, x, x)
    more = request_service(cfg, EFF, x + extra, x + extra)
    for name in ("ttft_s", "decode_s", "device_s", "energy_j"):
        assert np.all(getattr(base, name) >= 0)
        assert np.all(getattr(more, name) > getattr(base, name))


def test_config_from_catalog_entries() -> None:
    from hw_catalog import small_catalog

    cat = small_catalog()
    cfg = DeploymentConfig.for_catalog(cat.tier("llama-70b"), cat.target("h100"), 4, 32)
    assert cfg.model.weight_bytes == pytest.approx(140e9) and cfg.device.bandwidth_gb_s == 3350
    assert check_memory_fit(cfg).fits
    with pytest.raises(InvalidArgumentError, match="openai"):
        DeploymentConfig.for_catalog(cat.tier("gpt-4o"), cat.target("openai"))
    jetson = DeviceSpec.from_target(cat.target("jetson"))
    assert jetson.peak_flops("bf16") == pytest.approx(275e12 / 2)


def test_idle_replica_uses_the_device_idle_figure_when_given() -> None:
    from simulator.replica import ReplicaService

    with_idle = DeviceSpec("H100-SXM5-80GB", 80, 3350, 989, 1979, 1979, 700, idle_power_w=100)
    svc = ReplicaService(_cfg(LLAMA70, with_idle, n=4), EFF)
    assert svc.power_w(np.array([0.0]))[0] == pytest.approx(400.0)
    plain = ReplicaService(_cfg(LLAMA70, H100, n=4), EFF)
    assert plain.power_w(np.array([0.0]))[0] == pytest.approx(4 * 700 * EFF.idle_frac)
